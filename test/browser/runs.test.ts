/**
 * Nothing is lost: a fine-tuning run of a person's own model, paused at step N, survives a real
 * reload of the page and resumes to exactly the losses of an uninterrupted run.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { importFixture, launch, studioForTests, until, watchErrors } from './harness';

const { skip, server } = studioForTests();

const ROWS = ['sea', 'ship', 'whale', 'sail', 'rope', 'deck', 'mast', 'wind', 'rain', 'salt']
  .map((w) => JSON.stringify({ prompt: `say ${w}:`, completion: ` ${w} ${w}` }))
  .join('\n');

const points = (page: Page) => page.evaluate(() => (globalThis as any).tabtune.models.tunePoints as { step: number; loss: number }[]);
const status = (page: Page) => page.getAttribute('[data-testid=tune-status]', 'data-state').catch(() => null);

test('a fine-tuning run paused at step N survives a real reload and resumes to the losses of an uninterrupted run', { skip, timeout: 120_000 }, async () => {
  const log = (...a: unknown[]) => process.env.TABTUNE_DEBUG && console.error(...a);
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  // Leaving mid-run asks first (beforeunload); the test says yes.
  page.on('dialog', (d) => void d.accept());
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  await importFixture(page, 'tiny-gpt2');
  await page.fill('[data-testid=tune-text]', ROWS);
  await page.fill('[data-testid=tune-steps]', '200');
  await page.fill('[data-testid=tune-validation]', '0');
  await page.fill('[data-testid=tune-batch]', '4');
  await page.fill('[data-testid=tune-block]', '16');

  // Uninterrupted.
  await page.click('[data-testid=tune-start]');
  await until('the straight run', () => status(page), (s) => s === 'done');
  const straight = (await points(page)).map((p) => p.loss);
  log('straight', straight.length);
  assert.equal(straight.length, 200);

  // The same run, paused after step 10 or so (a checkpoint is written on pause), then the page reloads.
  await page.click('[data-testid=tune-start]');
  await until('ten steps', async () => (await points(page)).length, (n) => n >= 10);
  await page.click('[data-testid=tune-pause]');
  await until('the pause', () => status(page), (s) => s === 'paused');
  const pausedAt = (await points(page)).length;
  assert.ok(pausedAt < 200, `paused before the end (at ${pausedAt})`);
  log('paused at', pausedAt);
  const before = (await points(page)).map((p) => p.loss);
  await page.reload();
  log('reloaded');
  await page.waitForSelector('[data-testid=run]');
  const runs = page.locator('[data-testid=run]');
  assert.equal(await runs.count(), 2);
  const interrupted = page.locator('[data-testid=run][data-status=interrupted]');
  assert.equal(await interrupted.count(), 1, 'the paused run was interrupted by the reload');
  assert.match((await interrupted.textContent()) ?? '', new RegExp(`step ${pausedAt} of 200`));
  await interrupted.locator('[data-testid=run-resume]').click();
  log('resume clicked');
  await until('the resumed run', () => status(page), (s) => s === 'done');
  const resumed = (await points(page)).map((p) => p.loss);
  assert.equal(resumed.length, 200, 'the curve holds the steps before the reload and after');
  resumed.forEach((l, i) => assert.ok(Math.abs(l - straight[i]) < 1e-5, `step ${i + 1}: ${l} vs ${straight[i]}`));
  before.forEach((l, i) => assert.equal(l, resumed[i], 'the steps before the reload come back from storage as they were'));
  await until('the run list', () => page.locator('[data-testid=run][data-status=done]').count(), (n) => n === 2);
  assert.deepEqual(errors, []);
  await context.close();
});

/**
 * A disk that can really fill: a small tmpfs for the browser profile (root can mount one). The
 * DevTools protocol's Storage.overrideQuotaForOrigin is accepted but has no effect in the
 * Chromium here (156), so a real full disk is the honest way to hit QuotaExceededError.
 */
function smallDisk(): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-disk-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', dir], { encoding: 'utf8' });
  return r.status === 0 ? dir : null;
}

const disk = skip ? null : smallDisk();

test('a full disk: a big dataset is refused with a plain message, nothing saved before is harmed, and old checkpoints can go to make room', { skip: skip || (!disk && 'cannot mount a small tmpfs here (needs root with mount rights) to fill a disk for real'), timeout: 180_000 }, async () => {
  const { context } = await launch(join(disk!, 'profile'));
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  await importFixture(page, 'tiny-gpt2');
  await page.setInputFiles('[data-testid=tune-data]', { name: 'small.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(ROWS) });
  await until('the small dataset kept', () => page.$$eval('[data-testid=dataset-use]', (b) => b.length), (n) => n === 1);
  await page.waitForSelector('[data-testid=storage-usage]');
  // A short run: it keeps checkpoints (every 10 steps) that a finished run no longer needs.
  await page.fill('[data-testid=tune-steps]', '12');
  await page.fill('[data-testid=tune-validation]', '0');
  await page.fill('[data-testid=tune-block]', '16');
  await page.click('[data-testid=tune-start]');
  await until('the short run', () => status(page), (s) => s === 'done');

  // Fill the disk but for about 2 MB, then bring an 8 MB dataset.
  const filler = join(disk!, 'filler');
  const free = () => Number(spawnSync('df', ['--output=avail', '-B1', disk!], { encoding: 'utf8' }).stdout.trim().split('\n').pop());
  writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 2_000_000)));
  const big = Array.from({ length: 80000 }, (_, i) => JSON.stringify({ prompt: `row ${i} ${Math.random().toString(36).repeat(6)}`, completion: ` ${i}` })).join('\n');
  await page.setInputFiles('[data-testid=tune-data]', { name: 'big.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(big) });
  await page.waitForSelector('[data-testid=data-keep-warning]', { timeout: 60_000 });
  assert.match((await page.textContent('[data-testid=data-keep-warning]')) ?? '', /big\.jsonl could not be kept in this browser: this browser's storage for tabtune is full; nothing saved before was changed/);
  assert.deepEqual(await page.$$eval('[data-testid=dataset-use]', (b) => b.map((x) => x.textContent)), ['small.jsonl'], 'the big one is not listed');

  // The page offers what can go, biggest first; the finished run's checkpoints go, the run stays.
  await page.waitForSelector('[data-testid=storage-full]');
  const offered = page.locator('[data-testid=storage-item]');
  await until('the offer', () => offered.count(), (n) => n === 3);
  assert.deepEqual(await offered.evaluateAll((rows) => rows.map((r) => r.getAttribute('data-kind')).sort()), ['checkpoints', 'dataset', 'model']);
  const ckpt = page.locator('[data-testid=storage-item][data-kind=checkpoints]');
  assert.match((await ckpt.textContent()) ?? '', /the run is done; its metrics and adapter stay/);
  // Deleting asks twice.
  await ckpt.locator('[data-testid=storage-delete]').click();
  assert.equal(await ckpt.locator('[data-testid=storage-delete]').textContent(), 'Really delete?');
  assert.equal(await offered.count(), 3, 'one click deletes nothing');
  await ckpt.locator('[data-testid=storage-delete]').click();
  await until('the checkpoints gone', () => offered.count(), (n) => n === 2);
  assert.equal(await page.locator('[data-testid=storage-full]').count(), 0, 'the alert goes once room was made');
  assert.equal(await page.locator('[data-testid=run][data-status=done]').count(), 1, 'the run is still listed');

  // Room again, and a reload: the model and the small dataset are whole, and no chunk of the big one is left.
  rmSync(filler);
  await page.reload();
  await page.waitForSelector('[data-testid=model-load]');
  await page.click('[data-testid=model-load]');
  await page.waitForSelector('[data-testid=model-loaded]');
  await until('the kept dataset', () => page.$$eval('[data-testid=dataset-use]', (b) => b.map((x) => x.textContent)), (d) => d.length === 1 && d[0] === 'small.jsonl');
  await page.click('[data-testid=dataset-use]');
  await until('its report', () => page.textContent('[data-testid=data-report]').catch(() => ''), (t) => /small\.jsonl: prompt_completion · 10 rows kept/.test((t ?? '').replace(/\s+/g, ' ')));
  const leftovers = await page.evaluate(async () => {
    const db: IDBDatabase = await new Promise((res, rej) => {
      const r = indexedDB.open('tabtune');
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
    const keys: IDBValidKey[] = await new Promise((res) => {
      const r = db.transaction('kv').objectStore('kv').getAllKeys();
      r.onsuccess = () => res(r.result);
    });
    return keys.map(String).filter((k) => k.startsWith('dataset') || k.startsWith('tuneckpt') || k.startsWith('tunebest'));
  });
  assert.equal(leftovers.filter((k) => k.includes('big')).length, 0, 'no chunk of the refused dataset is left behind');
  assert.deepEqual(leftovers.filter((k) => k.startsWith('tune')), [], 'the deleted checkpoints are gone from storage');
  assert.deepEqual(errors, []);
  await context.close();
  spawnSync('umount', [disk!]);
});

test('two tabs: the run belongs to the tab that trains it; the other sees it live and read-only', { skip, timeout: 180_000 }, async () => {
  const { context } = await launch();
  const a = await context.newPage();
  const errors = watchErrors(a);
  await a.goto(`${server.url}?backend=wasm`);
  await a.waitForSelector('[data-testid=backend-name]');
  await importFixture(a, 'tiny-gpt2');
  await a.fill('[data-testid=tune-text]', ROWS);
  await a.fill('[data-testid=tune-steps]', '3000');
  await a.fill('[data-testid=tune-validation]', '0');
  const b = await context.newPage();
  const errorsB = watchErrors(b);
  await b.goto(`${server.url}?backend=wasm`);
  await b.waitForSelector('[data-testid=backend-name]');
  await a.click('[data-testid=tune-start]');
  await until('steps in tab A', async () => (await points(a)).length, (n) => n >= 5, 30_000);
  // Tab B hears the steps: its row moves while A trains, and offers neither resume nor delete.
  const live = () => b.textContent('[data-testid=run-live]').catch(() => null);
  const first = await until('a live row in tab B', live, (t) => !!t, 30_000);
  const step = (t: string | null) => Number(/step (\d+)/.exec(t ?? '')?.[1] ?? 0);
  await until('the live row moving', live, (t) => step(t) > step(first), 30_000);
  const row = b.locator('[data-testid=run]');
  assert.equal(await row.getAttribute('data-status'), 'elsewhere');
  assert.equal(await row.locator('[data-testid=run-resume]').count(), 0, 'no resume: the run is trained elsewhere');
  assert.equal(await row.locator('[data-testid=run-delete]').getAttribute('aria-disabled'), 'true');
  await a.click('[data-testid=tune-stop]');
  await until('the stop', () => status(a), (s) => s === 'done', 30_000);
  // Once A lets go, B may resume it.
  await until('the run free in tab B', () => row.getAttribute('data-status'), (s) => s === 'stopped', 30_000);
  assert.equal(await row.locator('[data-testid=run-resume]').count(), 1);
  assert.deepEqual([...errors, ...errorsB], []);
  await context.close();
});

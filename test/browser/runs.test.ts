/**
 * Nothing is lost: a fine-tuning run of a person's own model, paused at step N, survives a real
 * reload of the page and resumes to exactly the losses of an uninterrupted run.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { launch, studioForTests, until, watchErrors } from './harness';

const { skip, server } = studioForTests();
const fixture = fileURLToPath(new URL('../fixtures/tiny-gpt2/', import.meta.url));

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
  await page.setInputFiles('[data-testid=model-files]', readdirSync(fixture).filter((f) => !f.startsWith('golden')).map((f) => join(fixture, f)));
  await page.waitForSelector('[data-testid=model-summary]');
  await page.click('[data-testid=model-import]');
  await page.waitForSelector('[data-testid=model-loaded]');
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

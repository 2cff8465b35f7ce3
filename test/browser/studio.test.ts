/**
 * The studio as a person uses it, in Debian's Chromium with real WebGPU (SwiftShader), a real
 * module Web Worker and real IndexedDB. Nothing is mocked: the page is the production build.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import type { Diagnostics, RunInfo } from '../../src/api/protocol';
import { GPT2 } from '../../src/core/model/gpt2';
import { Trainer } from '../../src/core/train/trainer';
import { SAMPLE_TOKENS, mean, tinyConfigs } from '../support/fixtures';
import { tf, useBackend } from '../support/tf-node';
import { launch, studioForTests, until, watchErrors } from './harness';

const { skip, server } = studioForTests();

/** The same run on tfjs's CPU backend in this process: what every browser backend must reproduce. */
async function reference(steps: number): Promise<number[]> {
  await useBackend('cpu');
  const { model: mc, train: tc } = tinyConfigs({ steps });
  const model = GPT2.random(mc, tc.seed);
  const trainer = new Trainer(model, tc);
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) losses.push((await trainer.trainStep(SAMPLE_TOKENS)).loss);
  trainer.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, 0);
  return losses;
}

// Calls into the worker through the page's comlink client: the answers come from inside the worker.
const diagnostics = (page: Page) => page.evaluate(() => (globalThis as any).tabtune.client.diagnostics() as Promise<Diagnostics>);
const getRun = (page: Page) => page.evaluate(() => (globalThis as any).tabtune.client.getRun('tiny') as Promise<RunInfo | null>);
const runStatus = (page: Page) => page.getAttribute('[data-testid=run-status]', 'data-run-status');
const phase = (page: Page) => page.getAttribute('[data-testid=run-status]', 'data-phase');


function assertMatches(got: number[], want: number[], tol: number, label: string) {
  assert.equal(got.length, want.length, `${label}: number of steps`);
  got.forEach((l, i) => assert.ok(Math.abs(l - want[i]) < tol, `${label}: step ${i + 1} loss ${l}, reference ${want[i]}`));
}

test('WebGPU in the worker: the loss falls live, checkpoints reach IndexedDB, a reload resumes exactly', { skip, timeout: 600_000 }, async () => {
  const STEPS = 32;
  const want = await reference(STEPS);
  const { context, profileDir } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=webgpu&preset=tiny&steps=${STEPS}`);
  await page.waitForSelector('[data-testid=backend-name]');

  // From inside the worker: the backend really is WebGPU, and the page thread is not where it runs.
  const d0 = await diagnostics(page);
  assert.equal(d0.backend, 'webgpu');
  assert.equal(d0.inWorker, true);
  assert.deepEqual(d0.checkpoints, []);
  assert.equal(await page.textContent('[data-testid=backend-name]'), 'webgpu');
  assert.match((await page.textContent('[data-testid=backend-adapter]')) ?? '', /WebGPU/);

  await page.click('[data-testid=train-button]');
  // The chart grows while training runs: progress reaches the page step by step.
  const pathAt = (step: number) =>
    until(`step ${step} on screen`, async () => Number(await page.textContent('[data-testid=step]').catch(() => '0')), (s) => s >= step);
  // The chart (uPlot, a canvas) takes each step as it comes: what it draws, and that it draws.
  const drawn = () =>
    page.$eval('[data-testid=pretrain-demo] [data-testid=loss-chart]', (f) => {
      const canvas = f.querySelector('canvas')!;
      const px = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let inked = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) inked++;
      return { points: Number(f.getAttribute('data-train-points')), inked };
    });
  await pathAt(2);
  const early = await drawn();
  await pathAt(5);
  const later = await drawn();
  assert.ok(early.points >= 2 && later.points > early.points, `the loss line grows during training: ${early.points} then ${later.points} points`);
  assert.ok(later.inked > early.inked, `and more of the canvas is drawn: ${early.inked} then ${later.inked} pixels`);

  const d1 = await until('a checkpoint at step 8 or later in IndexedDB', () => diagnostics(page), (d) =>
    d.checkpoints.some((k) => Number(k.split('/').pop()) >= 8),
  );
  assert.equal(d1.backend, 'webgpu');

  // Reload mid-run: the worker dies with the page; the checkpoint must not.
  await page.reload();
  const label = await until('the resume button', () => page.textContent('[data-testid=train-button]'), (t) => /Resume from step \d+/.test(t ?? ''));
  const resumeStep = Number(/Resume from step (\d+)/.exec(label!)![1]);
  assert.ok(resumeStep >= 8 && resumeStep < STEPS, `resume from ${resumeStep}`);
  const interrupted = await getRun(page);
  assert.equal(interrupted?.status, 'interrupted');
  assert.equal(interrupted?.history.length, resumeStep);
  assert.equal((await diagnostics(page)).backend, 'webgpu');

  await page.click('[data-testid=train-button]');
  await until('the run to finish', () => runStatus(page), (s) => s === 'done');
  await until('the page to be ready again', () => phase(page), (p) => p === 'ready');
  const run = (await getRun(page))!;
  assert.equal(run.step, STEPS);
  assert.equal(run.backend, 'webgpu');
  assert.deepEqual(run.history.map((h) => h.step), Array.from({ length: STEPS }, (_, i) => i + 1));
  const losses = run.history.map((h) => h.loss);
  // Same numbers as an uninterrupted CPU run: weights, optimizer moments and data order all came back.
  assertMatches(losses, want, 5e-3, 'webgpu with a reload');
  assert.ok(mean(losses.slice(-5)) < mean(losses.slice(0, 3)) - 1, `loss fell: ${losses[0]} -> ${losses.at(-1)}`);
  const d2 = await diagnostics(page);
  assert.equal(d2.numTensors, 0, 'the worker released every tensor after the run');
  assert.ok(d2.checkpoints.some((k) => k.endsWith(String(STEPS).padStart(9, '0'))));
  assert.deepEqual(errors, []);
  await context.close();

  // A browser restart on the same profile still has the run.
  const again = await launch(profileDir);
  const page2 = await again.context.newPage();
  await page2.goto(`${server.url}?backend=webgpu&preset=tiny&steps=${STEPS}`);
  await page2.waitForSelector('[data-testid=backend-name]');
  const kept = (await getRun(page2))!;
  assert.equal(kept.status, 'done');
  assert.deepEqual(kept.history.map((h) => h.loss), losses);
  await again.context.close();
});

test('auto passes over the software WebGPU adapter, says why, and trains on WASM to the same numbers', { skip, timeout: 300_000 }, async () => {
  const STEPS = 6;
  const want = await reference(STEPS);
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?preset=tiny&steps=${STEPS}`);
  await page.waitForSelector('[data-testid=backend-name]');
  assert.equal(await page.textContent('[data-testid=backend-name]'), 'wasm');
  assert.equal((await diagnostics(page)).backend, 'wasm');
  const reasons = (await page.textContent('[data-testid=backend-fallbacks]')) ?? '';
  assert.match(reasons, /webgpu: .*software/i, reasons);
  await page.click('[data-testid=train-button]');
  await until('the run to finish', () => runStatus(page), (s) => s === 'done');
  const run = (await getRun(page))!;
  assertMatches(run.history.map((h) => h.loss), want, 1e-3, 'wasm');

  // Bad input is refused by the worker with a named error that still says where the problem is.
  const refused = await page.evaluate(() =>
    (globalThis as any).tabtune.client
      .train({ preset: 'tiny', text: 'too short', dataset: 'notes.txt' }, () => undefined)
      .then(() => null, (e: Error & { file?: string }) => ({ name: e.name, file: e.file, message: e.message })),
  );
  assert.deepEqual({ name: refused?.name, file: refused?.file }, { name: 'DataError', file: 'notes.txt' });
  assert.match(refused!.message, /notes\.txt has 9 tokens/);
  assert.equal((await getRun(page))?.status, 'done', 'the refused request lost nothing');
  assert.deepEqual(errors, []);
  await context.close();
});

test('two tabs: the tab that trains owns the run; the other sees it training elsewhere and cannot touch it', { skip, timeout: 300_000 }, async () => {
  const { context } = await launch();
  const url = `${server.url}?backend=wasm&preset=tiny&steps=5000`;
  const a = await context.newPage();
  const b = await context.newPage();
  const errors = [...watchErrors(a), ...watchErrors(b)];
  await a.goto(url);
  await a.waitForSelector('[data-testid=backend-name]');
  await a.click('[data-testid=train-button]');
  await until('tab A training', async () => Number(await a.textContent('[data-testid=step]').catch(() => '0')), (n) => n >= 5);

  await b.goto(url);
  await until('tab B ready', () => phase(b), (p) => p === 'ready');
  assert.equal((await getRun(b))?.status, 'elsewhere');
  assert.equal((await b.textContent('[data-testid=train-button]'))?.trim(), 'Training in another tab');
  const refused = await b.evaluate(() =>
    (globalThis as any).tabtune.client
      .train({ preset: 'tiny', text: 'x'.repeat(100), dataset: 'x.txt' }, () => undefined)
      .then(() => 'trained', (e: Error) => e.message),
  );
  assert.match(refused, /training in another tab/);
  const notDeleted = await b.evaluate(() => (globalThis as any).tabtune.client.deleteRun('tiny').then(() => 'deleted', (e: Error) => e.message));
  assert.match(notDeleted, /pause it before deleting/);

  await a.click('[data-testid=stop-button]');
  await until('tab A paused', () => runStatus(a), (st) => st === 'stopped');
  const pausedAt = (await getRun(a))!.step;
  // Tab B looks again when it gets focus; here it is asked directly.
  await b.evaluate(() => (globalThis as any).tabtune.studio.refreshRun());
  assert.equal((await b.textContent('[data-testid=train-button]'))?.trim(), `Resume from step ${pausedAt}`);

  // Delete asks twice.
  await b.click('[data-testid=reset-button]');
  assert.notEqual(await getRun(b), null, 'one click does not delete');
  assert.equal((await b.textContent('[data-testid=reset-button]'))?.trim(), 'Click again to delete');
  await b.click('[data-testid=reset-button]');
  await until('the run to be deleted', () => getRun(b), (r) => r === null);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the page thread carries no tfjs: kernels ship only in the worker bundle', { skip }, () => {
  const dist = fileURLToPath(new URL('../../dist/', import.meta.url));
  const html = readFileSync(join(dist, 'index.html'), 'utf8');
  const entry = /src="\/(assets\/index-[^"]+\.js)"/.exec(html)?.[1];
  assert.ok(entry, 'entry script in index.html');
  const worker = readdirSync(join(dist, 'assets')).find((f) => f.startsWith('studio.worker-') && f.endsWith('.js'));
  assert.ok(worker, 'worker bundle exists');
  // Kernel names are string constants in tfjs-core that survive minification. Every script the
  // page loads (the entry and any chunk it imports) must be free of them.
  const pageChunks = readdirSync(join(dist, 'assets')).filter((f) => f.endsWith('.js') && !f.startsWith('studio.worker-'));
  assert.ok(pageChunks.includes(entry.replace('assets/', '')));
  for (const chunk of pageChunks) assert.ok(!readFileSync(join(dist, 'assets', chunk), 'utf8').includes('BatchMatMul'), `${chunk} has tfjs`);
  assert.ok(readFileSync(join(dist, 'assets', worker), 'utf8').includes('BatchMatMul'), 'worker bundle has tfjs');
});

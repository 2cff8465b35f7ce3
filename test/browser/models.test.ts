/**
 * Bringing a Hugging Face model to the studio in a real browser: files picked in the page, read in
 * the worker on WebGPU (SwiftShader), checked against PyTorch's logits there, kept in IndexedDB,
 * and loaded again after a reload without the files.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { launch, studioForTests, until, watchErrors } from './harness';

const { skip, server } = studioForTests();

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));


/** Logits computed in the worker, compared with PyTorch's there and then. */
async function maxLogitError(page: Page, modelId: string, name: string): Promise<number> {
  const golden = JSON.parse(readFileSync(join(fixture(name), 'golden.json'), 'utf8')) as { ids: number[]; logits: number[][] };
  const got = await page.evaluate(
    async ([id, ids]) => Array.from((await (globalThis as any).tabtune.client.logits(id, { ids })).logits as Float32Array),
    [modelId, golden.ids] as const,
  );
  const want = golden.logits.flat();
  assert.equal(got.length, want.length);
  return got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
}

test('a BF16, sharded Llama folder: summary first, import, PyTorch logits on WebGPU, generation, kept across a reload', { skip, timeout: 300_000 }, async () => {
  const name = 'tiny-llama-bf16-sharded';
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=webgpu`);
  await page.waitForSelector('[data-testid=backend-name]');
  assert.equal(await page.textContent('[data-testid=backend-name]'), 'webgpu');

  const paths = readdirSync(fixture(name)).filter((f) => !f.startsWith('golden')).map((f) => join(fixture(name), f));
  await page.setInputFiles('[data-testid=model-files]', paths);
  const summary = (await (await page.waitForSelector('[data-testid=model-summary]')).textContent()) ?? '';
  assert.match(summary, /llama · 17,568 parameters · 2 layers × 32 wide, 4 heads \(2 key\/value\)/);
  assert.match(summary, /BF16 in 2 files/);
  assert.match(summary, /vocabulary 64 · context 64/);

  await page.click('[data-testid=model-import]');
  await page.waitForSelector('[data-testid=model-loaded]');
  const models = await page.evaluate(() => (globalThis as any).tabtune.client.listModels());
  assert.equal(models.length, 1);
  const id = models[0].id as string;
  const err = await maxLogitError(page, id, name);
  assert.ok(err < 1e-4, `max abs logit error ${err} in the browser on WebGPU`);
  assert.equal((await page.evaluate(() => (globalThis as any).tabtune.client.diagnostics())).backend, 'webgpu');

  await page.fill('[data-testid=prompt]', 'the whale');
  await page.click('[data-testid=generate]');
  await until('generation to finish', () => page.getAttribute('[data-testid=generation]', 'data-state'), (s) => s === 'done');
  const shown = (await page.textContent('[data-testid=generation]')) ?? '';
  assert.ok(shown.startsWith('the whale') && shown.length > 'the whale'.length, `generated: ${JSON.stringify(shown)}`);

  // The next visit: no files, the model comes from IndexedDB.
  await page.reload();
  await page.waitForSelector('[data-testid=model-load]');
  await page.click('[data-testid=model-load]');
  await page.waitForSelector('[data-testid=model-loaded]');
  const again = await maxLogitError(page, id, name);
  assert.ok(again < 1e-4, `after reload: max abs logit error ${again}`);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a broken weight file is named in the page and nothing is stored', { skip, timeout: 120_000 }, async () => {
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  const cut = readFileSync(join(fixture('tiny-gpt2'), 'model.safetensors')).subarray(0, 300);
  await page.setInputFiles('[data-testid=model-files]', [
    { name: 'config.json', mimeType: 'application/json', buffer: readFileSync(join(fixture('tiny-gpt2'), 'config.json')) },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from(cut) },
  ]);
  const message = (await (await page.waitForSelector('[data-testid=model-error]')).textContent()) ?? '';
  assert.match(message, /SafetensorsError: model\.safetensors/);
  assert.deepEqual(await page.evaluate(() => (globalThis as any).tabtune.client.listModels()), []);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a Hugging Face repository name: looked up, downloaded from the hub (a local stand-in), PyTorch logits', { skip, timeout: 120_000 }, async () => {
  const { startHub } = await import('../support/hub-server');
  const hub = await startHub();
  try {
    const { context } = await launch();
    const page = await context.newPage();
    const errors = watchErrors(page);
    await page.goto(`${server.url}?backend=wasm&hub=${encodeURIComponent(hub.url)}`);
    await page.waitForSelector('[data-testid=backend-name]');
    await page.fill('[data-testid=hub-repo]', 'tabtune-test/tiny-gpt2');
    await page.click('[data-testid=hub-lookup]');
    const summary = (await (await page.waitForSelector('[data-testid=model-summary]')).textContent()) ?? '';
    assert.match(summary, /tiny-gpt2/);
    assert.match(summary, /gpt2 · /);
    await page.click('[data-testid=model-import]');
    await page.waitForSelector('[data-testid=model-loaded]');
    const [model] = await page.evaluate(() => (globalThis as any).tabtune.client.listModels());
    const err = await maxLogitError(page, model.id, 'tiny-gpt2');
    assert.ok(err < 1e-4, `max abs logit error ${err}`);
    await page.fill('[data-testid=hub-repo]', 'not a repo');
    await page.click('[data-testid=hub-lookup]');
    assert.match((await (await page.waitForSelector('[data-testid=model-error]')).textContent()) ?? '', /HubError: "not a repo" is not a Hugging Face repository/);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await hub.close();
  }
});

/**
 * `npm run bench` at its tiny size, every part (Node WASM and CPU, the browser's WebGPU and WASM
 * through the studio's worker, PyTorch and nanogpt where present), so the harness cannot rot.
 * Figures are not judged here (speed is the bench's to report, never a test's): only that every
 * path ran, counted what it should, and left no tensor behind.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { browserMissing } from './harness';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('npm run bench -- --size tiny measures every path and writes its JSON', { skip: browserMissing(), timeout: 600_000 }, () => {
  const out = join(mkdtempSync(join(tmpdir(), 'tabtune-bench-')), 'bench.json');
  const r = spawnSync('npm', ['run', '--silent', 'bench', '--', '--size', 'tiny', '--out', out], { cwd: ROOT, encoding: 'utf8', env: process.env });
  assert.equal(r.status, 0, r.stderr);
  const results = JSON.parse(readFileSync(out, 'utf8'));
  // The table names every measurement.
  for (const words of ['train lora tiny', 'train qlora tiny', 'train full tiny', 'matmul 128^3', 'generate 8', 'load tiny from IndexedDB']) {
    assert.ok(r.stdout.includes(words), `the table has "${words}":\n${r.stdout}`);
  }
  const node = results.node as Record<string, any>[];
  for (const row of node) assert.equal(row.error, undefined, `node ${row.backend} ${row.kind}: ${row.error}`);
  for (const backend of ['wasm', 'cpu']) {
    const train = node.filter((x) => x.kind === 'train' && x.backend === backend);
    assert.deepEqual(train.map((x) => x.method).sort(), ['full', 'lora', 'qlora']);
    for (const t of train) {
      assert.ok(t.medianMs > 0 && t.tokensPerSec > 0 && t.flops > 0 && t.peakBytes > 0 && t.peakRssBytes > 0, JSON.stringify(t));
      assert.equal(t.stepsMs.length, 2);
      assert.equal(t.tensors[0], t.tensors[1], `${backend} ${t.method}: tensors before and after the timed steps`);
    }
    const lora = train.find((x) => x.method === 'lora')!;
    const full = train.find((x) => x.method === 'full')!;
    const qlora = train.find((x) => x.method === 'qlora')!;
    assert.ok(lora.trainable < full.trainable && full.trainable === full.params, 'LoRA trains fewer parameters than full fine-tuning');
    assert.ok(qlora.baseBytes < lora.baseBytes, 'the 8-bit base takes less memory than the float32 one');
  }
  // WebGPU in Node through Dawn (Chromium's SwiftShader here).
  const dawn = node.find((x) => x.kind === 'train' && x.backend === 'webgpu');
  assert.ok(dawn && dawn.medianMs > 0 && dawn.tensors[0] === dawn.tensors[1], JSON.stringify(dawn));
  const gen = node.find((x) => x.kind === 'generate');
  assert.ok(gen, 'a generation row');
  assert.equal(gen.newTokens, 8);
  assert.ok(gen.cached.tokensPerSec > 0 && gen.uncached.tokensPerSec > 0 && gen.cached.firstTokenMs > 0);
  const browser = results.browser as Record<string, any>[];
  assert.ok(Array.isArray(browser), JSON.stringify(results.browser));
  for (const row of browser) assert.equal(row.error, undefined, `browser ${row.backend} ${row.kind}: ${row.error}`);
  assert.deepEqual([...new Set(browser.filter((x) => x.kind === 'train').map((x) => x.backend))].sort(), ['wasm', 'webgpu']);
  for (const t of browser.filter((x) => x.kind === 'train')) assert.equal(t.tensors[0], t.tensors[1], `browser ${t.backend}: no tensor left behind`);
  assert.deepEqual(browser.filter((x) => x.kind === 'train').map((x) => x.method), ['lora', 'lora'], 'LoRA on each browser backend');
  const load = browser.find((x) => x.kind === 'load');
  assert.ok(load, 'a load-from-IndexedDB row');
  assert.ok(load.loadMs > 0 && load.bytes > 0, JSON.stringify(load));
  // The peers: measured, or skipped with the reason said (PyTorch is not installed in CI).
  assert.ok(typeof results.torch.skipped === 'string' || results.torch.cases?.[0]?.medianMs > 0, JSON.stringify(results.torch));
  assert.equal(results.nanogpt.length, 1, 'one nanogpt row');
  // nanogpt is a dev dependency: installed by npm ci, so it must have run.
  assert.ok(results.nanogpt[0].result.medianMs > 0, JSON.stringify(results.nanogpt[0]));
  assert.ok(results.nanogpt[0].result.shims.length > 0, 'the shims it needed are listed');
});

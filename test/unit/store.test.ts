import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveGPT2Config, resolveTrainConfig } from '../../src/core/config';
import type { TrainerCheckpoint } from '../../src/core/train/trainer';
import { fsKV } from '../../src/store/fs';
import { memoryKV, type KV } from '../../src/store/kv';
import { KEEP_CHECKPOINTS, SCHEMA_VERSION, deleteRun, listCheckpoints, loadCheckpoint, loadRun, saveCheckpoint, saveRun, type RunRecord } from '../../src/store/runs';

function newRun(): RunRecord {
  const model = resolveGPT2Config();
  return {
    schema: SCHEMA_VERSION, id: 'r1', preset: 'demo', dataset: 'x.txt', dataFingerprint: '0:0', model, train: resolveTrainConfig({}, model),
    numParams: 1, status: 'running', step: 0, latestCheckpoint: null, history: [], backend: 'cpu', error: null, createdAt: 0, updatedAt: 0,
  };
}

function ckpt(step: number): TrainerCheckpoint {
  return { step, rngState: step * 7, weights: { w: { shape: [2], data: Float32Array.of(step, -step) } }, optimizer: { t: step, m: {}, v: {} } };
}

const report = (step: number) => ({ step, totalSteps: 40, loss: 5 - step / 10, lr: 0, gradNorm: 1, stepMs: 1, tokensPerSec: 1, numTensors: 0, numBytes: 0 });

for (const [name, make] of [['memory', () => memoryKV()], ['folder', () => fsKV(mkdtempSync(join(tmpdir(), 'tabtune-kv-')))]] as const) {
  test(`${name} store: checkpoints are kept, pointed to, pruned and deleted`, async () => {
    const kv: KV = make();
    let run = newRun();
    await saveRun(kv, run);
    const history = Array.from({ length: 15 }, (_, i) => report(i + 1));
    for (const step of [5, 10, 15]) run = await saveCheckpoint(kv, run, ckpt(step), history);
    assert.equal(run.step, 15);
    assert.equal(run.history.length, 15);
    assert.equal((await listCheckpoints(kv, 'r1')).length, KEEP_CHECKPOINTS);
    const stored = (await loadRun(kv, 'r1'))!;
    assert.equal(stored.step, 15);
    const c = (await loadCheckpoint(kv, stored.latestCheckpoint!))!;
    assert.deepEqual(Array.from(c.weights.w.data), [15, -15]);
    assert.ok(c.weights.w.data instanceof Float32Array, 'typed arrays survive storage as typed arrays');
    await deleteRun(kv, 'r1');
    assert.deepEqual(await kv.keys(), []);
  });
}

test('a crash while a checkpoint is written leaves the previous one as the latest', async () => {
  const inner = memoryKV();
  let failRunWrites = false;
  const kv: KV = {
    ...inner,
    async set(key, value) {
      if (failRunWrites && key.startsWith('run/')) throw new Error('simulated crash');
      return inner.set(key, value);
    },
  };
  let run = newRun();
  run = await saveCheckpoint(kv, run, ckpt(5), [report(5)]);
  failRunWrites = true;
  await assert.rejects(saveCheckpoint(kv, run, ckpt(10), [report(10)]), /simulated crash/);
  const stored = (await loadRun(kv, 'r1'))!;
  assert.equal(stored.step, 5);
  assert.deepEqual(Array.from((await loadCheckpoint(kv, stored.latestCheckpoint!))!.weights.w.data), [5, -5]);
});

test('pruning follows the run\'s pointers, so orphans of a crashed write never cost the new checkpoint', async () => {
  const kv = memoryKV();
  let run = newRun();
  run = await saveCheckpoint(kv, run, ckpt(5), [report(5)]);
  // Orphans from writes whose run record never landed, at later steps than the next save.
  await kv.set('ckpt/r1/000000020', ckpt(20));
  await kv.set('ckpt/r1/000000030', ckpt(30));
  run = await saveCheckpoint(kv, run, ckpt(10), [report(5), report(10)]);
  assert.deepEqual(await listCheckpoints(kv, 'r1'), ['ckpt/r1/000000005', 'ckpt/r1/000000010']);
  assert.equal(run.latestCheckpoint, 'ckpt/r1/000000010');
});

test('a record from another schema version is refused, not misread', async () => {
  const kv = memoryKV();
  await kv.set('run/r1', { ...newRun(), schema: SCHEMA_VERSION + 1 });
  await assert.rejects(loadRun(kv, 'r1'), /schema/);
});

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

test('each best is kept under its step: a best found after the latest checkpoint never replaces the one that checkpoint resumes with', async () => {
  const { deleteTuneCheckpoints, isTuneResumable, loadTuneBest, saveTuneBest, saveTuneCheckpoint, saveTuneRun, tuneCheckpointBytes } = await import('../../src/store/tunes');
  const { SCHEMA } = await import('../../src/store/schema');
  const kv = memoryKV();
  let run = await saveTuneRun(kv, {
    schema: SCHEMA.tune, id: 't1', modelId: 'm', datasetId: 'd', modelName: 'm', request: { method: 'lora' }, datasetName: 'd.jsonl', totalSteps: 40, status: 'running', step: 0,
    latestCheckpoint: null, best: null, history: [], evals: [], samples: [], report: null, outcome: null, error: null, createdAt: 0, updatedAt: 0,
  });
  const weights = (v: number) => ({ w: { shape: [2], data: Float32Array.of(v, v) } });
  const point = (step: number) => ({ step, valLoss: 5 - step / 100, trainLoss: 5 });
  const fc = (step: number, bestStep: number) => ({
    trainer: ckpt(step),
    watch: { history: [], best: point(bestStep), sinceBest: 0, recent: [], perplexityBefore: null },
  });
  run = await saveTuneBest(kv, run, weights(8), point(8));
  run = await saveTuneCheckpoint(kv, run, fc(10, 8), [], [], [{ step: 0, prompt: 'p', text: 'a' }, { step: 12, prompt: 'p', text: 'b' }]);
  assert.deepEqual(run.samples.map((x) => x.step), [0], 'samples after the checkpoint are not in it');
  // A better loss at step 12, then the tab dies before the next checkpoint.
  run = await saveTuneBest(kv, run, weights(12), point(12));
  assert.deepEqual(Array.from((await loadTuneBest(kv, 't1', 8))!.w.data), [8, 8], 'the checkpoint at 10 still finds its best, of step 8');
  assert.deepEqual(Array.from((await loadTuneBest(kv, 't1', 12))!.w.data), [12, 12]);
  // Later checkpoints that know only the best of step 12: the best of step 8 is no longer needed.
  run = await saveTuneCheckpoint(kv, run, fc(15, 12), [], []);
  assert.ok(await loadTuneBest(kv, 't1', 8), 'the checkpoint at 10 is still kept, and with it its best');
  run = await saveTuneCheckpoint(kv, run, fc(20, 12), [], []);
  assert.equal(await loadTuneBest(kv, 't1', 8), null, 'no kept checkpoint knows the best of step 8: it went');
  assert.deepEqual((await kv.keys()).filter((k) => k.startsWith('tunebest/')), ['tunebest/t1/000000012']);
  // A run of schema 2 kept one best under the run's own key: it is still found.
  await kv.set('tunebest/old', { weights: weights(3), step: 3, valLoss: 1 });
  assert.deepEqual(Array.from((await loadTuneBest(kv, 'old', 3))!.w.data), [3, 3]);
  assert.equal(await loadTuneBest(kv, 'old', 4), null, 'but only for the step it is of');

  // A resume from step 20 replays a timeline: a best found now at a lower step than one of the
  // abandoned timeline is kept (it is the run's best), and the abandoned one goes.
  run = await saveTuneBest(kv, { ...run, best: point(12) }, weights(19), point(19));
  run = await saveTuneBest(kv, run, weights(16), { step: 16, valLoss: 1 });
  assert.deepEqual(Array.from((await loadTuneBest(kv, 't1', 16))!.w.data), [16, 16], 'the best just written is kept, whatever came before it');
  assert.deepEqual((await kv.keys()).filter((k) => k.startsWith('tunebest/t1')).sort(), ['tunebest/t1/000000012', 'tunebest/t1/000000016'], 'the checkpoints\' best and the run\'s');
  const size = await tuneCheckpointBytes(kv, 't1');
  assert.equal(size.count, 4, 'two checkpoints and two bests');
  assert.ok(size.bytes >= 3 * 8 && size.bytes < 1000, `their weights and a little more: ${size.bytes}`);
  assert.ok(isTuneResumable(run));
  const after = await deleteTuneCheckpoints(kv, 't1');
  assert.deepEqual([after!.latestCheckpoint, after!.status, isTuneResumable(after!)], [null, 'failed', false]);
  assert.match(after!.error ?? '', /its checkpoints were deleted to make room at step 20, before it finished: nothing of it can be resumed or downloaded/);
  assert.deepEqual((await kv.keys()).filter((k) => k.includes('t1')), ['tune/t1'], 'the run record stays, its checkpoints and bests go');
});

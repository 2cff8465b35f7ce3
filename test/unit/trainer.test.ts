import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { exampleBatch, type Batch } from '../../src/core/data/batch';
import { GPT2 } from '../../src/core/model/gpt2';
import { heldOutLoss } from '../../src/core/train/evaluate';
import { Trainer } from '../../src/core/train/trainer';
import { SAMPLE_TOKENS, mean, tinyConfigs } from '../support/fixtures';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

test('training lowers the loss on the sample text, and leaks no tensors', async () => {
  const { model: mc, train: tc } = tinyConfigs({ steps: 30 });
  const baseline = tf.memory().numTensors;
  const model = GPT2.random(mc, tc.seed);
  const trainer = new Trainer(model, tc);
  const startTensors = tf.memory().numTensors;
  const losses: number[] = [];
  for (let i = 0; i < 30; i++) {
    const r = await trainer.trainStep(SAMPLE_TOKENS);
    losses.push(r.loss);
    assert.ok(Number.isFinite(r.loss) && Number.isFinite(r.gradNorm) && r.gradNorm > 0, `step ${r.step}`);
    assert.equal(r.numTensors, startTensors, `tensor count changed at step ${r.step}`);
  }
  assert.equal(tf.memory().numTensors, startTensors);
  const first = mean(losses.slice(0, 3));
  const last = mean(losses.slice(-5));
  assert.ok(first > 5.3, `starts near ln(256): ${first}`);
  assert.ok(last < first - 1.5, `loss fell from ${first.toFixed(3)} to ${last.toFixed(3)}`);
  const evalLoss = await heldOutLoss(model, SAMPLE_TOKENS, tc.block_size, 8);
  assert.ok(evalLoss < first - 1.5, `held-out batches agree: ${evalLoss}`);
  assert.equal(tf.memory().numTensors, startTensors, 'evaluate leaks nothing');
  trainer.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, baseline, 'model and optimizer release everything');
});

/** Losses of `steps` straight steps, and of steps/2 + a structured-cloned checkpoint + steps/2. */
async function straightAndResumed(train: Parameters<typeof tinyConfigs>[0], steps: number): Promise<{ straight: number[]; resumed: number[] }> {
  const { model: mc, train: tc } = tinyConfigs({ ...train, steps });
  const straight: number[] = [];
  {
    const m = GPT2.random(mc, tc.seed);
    const t = new Trainer(m, tc);
    for (let i = 0; i < steps; i++) straight.push((await t.trainStep(SAMPLE_TOKENS)).loss);
    t.dispose();
    m.dispose();
  }
  const half = steps / 2;
  const resumed: number[] = [];
  const m1 = GPT2.random(mc, tc.seed);
  const t1 = new Trainer(m1, tc);
  for (let i = 0; i < half; i++) resumed.push((await t1.trainStep(SAMPLE_TOKENS)).loss);
  // Structured clone is what IndexedDB does to a stored checkpoint.
  const ckpt = structuredClone(await t1.checkpoint());
  t1.dispose();
  m1.dispose();
  const m2 = new GPT2(mc, ckpt.weights);
  const t2 = new Trainer(m2, tc);
  t2.restore(ckpt);
  assert.equal(t2.step, half);
  for (let i = 0; i < half; i++) resumed.push((await t2.trainStep(SAMPLE_TOKENS)).loss);
  t2.dispose();
  m2.dispose();
  return { straight, resumed };
}

test('a run restored from a checkpoint continues exactly as an uninterrupted one', async () => {
  const { straight, resumed } = await straightAndResumed({}, 12);
  assert.deepEqual(resumed, straight);
});

test('gradient accumulation: 2 micro-batches of 4 make the same step as one batch of 8', async () => {
  const run = async (batch: number, accum: number) => {
    const { model: mc, train: tc } = tinyConfigs({ steps: 3, batch_size: batch, grad_accum_steps: accum, grad_clip: 1 });
    const m = GPT2.random(mc, tc.seed);
    const t = new Trainer(m, tc);
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) losses.push((await t.trainStep(SAMPLE_TOKENS)).loss);
    const w = await m.exportWeights();
    t.dispose();
    m.dispose();
    return { losses, w };
  };
  const start = tf.memory().numTensors;
  const one = await run(8, 1);
  const two = await run(4, 2);
  assert.equal(tf.memory().numTensors, start, 'accumulation leaks nothing');
  one.losses.forEach((l, i) => assert.ok(Math.abs(l - two.losses[i]) < 1e-5, `step ${i + 1}: ${l} vs ${two.losses[i]}`));
  for (const k of Object.keys(one.w)) {
    let err = 0;
    one.w[k].data.forEach((v, i) => (err = Math.max(err, Math.abs(v - two.w[k].data[i]))));
    assert.ok(err < 1e-5, `${k} differs by ${err}`);
  }
});

test('accumulation weighs micro-batches by counted positions: uneven example batches make the step of one batch', async () => {
  // Two micro-batches with very different numbers of counted (completion) positions.
  const short = [{ prompt: [10, 11, 12, 13, 14], completion: [20] }, { prompt: [30, 31, 32], completion: [40] }];
  const long = [{ prompt: [50], completion: [60, 61, 62, 63, 64] }, { prompt: [70], completion: [80, 81, 82, 83] }];
  const run = async (batches: Batch[], accum: number) => {
    const { model: mc, train: tc } = tinyConfigs({ steps: 2, batch_size: batches[0].batchSize, grad_accum_steps: accum, grad_clip: 0, block_size: 8 });
    const m = GPT2.random(mc, tc.seed);
    const t = new Trainer(m, tc);
    let k = 0;
    const losses: number[] = [];
    for (let i = 0; i < 2; i++) losses.push((await t.trainOn(() => batches[k++ % batches.length])).loss);
    const w = await m.exportWeights();
    t.dispose();
    m.dispose();
    return { losses, w };
  };
  const one = await run([exampleBatch([...short, ...long], 8, 0, true)], 1);
  const two = await run([exampleBatch(short, 8, 0, true), exampleBatch(long, 8, 0, true)], 2);
  one.losses.forEach((l, i) => assert.ok(Math.abs(l - two.losses[i]) < 1e-5, `step ${i + 1}: ${l} vs ${two.losses[i]}`));
  for (const k of Object.keys(one.w)) {
    let err = 0;
    one.w[k].data.forEach((v, i) => (err = Math.max(err, Math.abs(v - two.w[k].data[i]))));
    assert.ok(err < 1e-5, `${k} differs by ${err}`);
  }
});

test('SGD trains too, and a resumed SGD run continues exactly', async () => {
  const { straight, resumed } = await straightAndResumed({ optimizer: 'sgd', learning_rate: 0.5, min_lr: 0.05, momentum: 0.9 }, 10);
  assert.ok(mean(straight.slice(-3)) < straight[0] - 1, `loss fell: ${straight[0]} -> ${straight.at(-1)}`);
  assert.deepEqual(resumed, straight);
});

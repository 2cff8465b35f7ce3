import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { GPT2 } from '../../src/core/model/gpt2';
import { EarlyStopping, heldOutLoss } from '../../src/core/train/evaluate';
import { SAMPLE_TOKENS, tinyConfigs } from '../support/fixtures';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

test('held-out loss: a fresh model is near ln(vocab), and every window is counted once', async () => {
  const { model: mc } = tinyConfigs();
  const model = GPT2.random(mc, 3);
  const start = tf.memory().numTensors;
  const loss = await heldOutLoss(model, SAMPLE_TOKENS, 16, 20, 8);
  assert.ok(Math.abs(loss - Math.log(256)) < 0.1, `loss ${loss}`);
  assert.equal(tf.memory().numTensors, start);
  // The mean over 20 windows in batches of 8 equals the mean over single windows.
  let sum = 0;
  for (let w = 0; w < 20; w++) sum += await heldOutLoss(model, SAMPLE_TOKENS.subarray(w * 16, w * 16 + 17), 16, 1, 1);
  assert.ok(Math.abs(sum / 20 - loss) < 1e-5);
  await assert.rejects(heldOutLoss(model, SAMPLE_TOKENS.subarray(0, 10), 16), /fewer than one window/);
  model.dispose();
});

test('early stopping: patience, minimum improvement, the best kept, and the overfitting signal', () => {
  const es = new EarlyStopping(2, 0.01);
  const v = (step: number, trainLoss: number, valLoss: number) => es.update({ step, trainLoss, valLoss });
  assert.deepEqual(v(10, 3.0, 3.1), { improved: true, stop: false, overfitting: false });
  assert.deepEqual(v(20, 2.8, 3.0), { improved: true, stop: false, overfitting: false });
  assert.equal(v(30, 2.6, 2.995).improved, false, 'less than minDelta is no improvement');
  const last = v(40, 2.4, 3.2);
  assert.equal(last.stop, true, 'two evaluations without improvement');
  assert.equal(es.best?.step, 20);
  const of = new EarlyStopping(0, 0);
  of.update({ step: 1, trainLoss: 3, valLoss: 2.0 });
  of.update({ step: 2, trainLoss: 2.5, valLoss: 2.1 });
  const verdict = of.update({ step: 3, trainLoss: 2.0, valLoss: 2.3 });
  assert.equal(verdict.overfitting, true, 'validation up twice while training fell');
  assert.equal(verdict.stop, false, 'patience 0 never stops');
});

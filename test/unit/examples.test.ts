import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { exampleBatch } from '../../src/core/data/batch';
import { GPT2 } from '../../src/core/model/gpt2';
import { Trainer } from '../../src/core/train/trainer';
import type { Rng } from '../../src/core/rng';
import { tinyConfigs } from '../support/fixtures';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

const EOS = 0; // GPT-2 style: the pad token is the EOS token

test('examples: EOS is learned even when padding reuses its id; completion-only masks the prompt', () => {
  const b = exampleBatch([{ prompt: [5, 6, 7], completion: [8, 9] }], 8, EOS, true);
  // sequence 5 6 7 8 9 EOS, then padding with EOS's id
  assert.deepEqual(Array.from(b.ids), [5, 6, 7, 8, 9, EOS, EOS, EOS]);
  assert.deepEqual(Array.from(b.targets), [6, 7, 8, 9, EOS, EOS, EOS, EOS]);
  assert.deepEqual(Array.from(b.weights!), [0, 0, 1, 1, 1, 0, 0, 0], 'prompt masked; completion and its EOS count; padding masked by position');
  const all = exampleBatch([{ prompt: [5, 6, 7], completion: [8, 9] }], 8, EOS, false);
  assert.deepEqual(Array.from(all.weights!), [1, 1, 1, 1, 1, 0, 0, 0]);
  const long = exampleBatch([{ prompt: [1, 2, 3, 4, 5, 6], completion: [7, 8] }], 4, EOS, true);
  assert.deepEqual(Array.from(long.ids), [5, 6, 7, 8], 'too long: the prompt is cut from the left');
  assert.deepEqual(Array.from(long.weights!), [0, 1, 1, 1]);
});

test('the masked loss is the mean over counted positions, and a model learns to stop', async () => {
  const { model: mc, train: tc } = tinyConfigs({ steps: 60, learning_rate: 2e-2, batch_size: 4 });
  const model = GPT2.random(mc, 4);
  const ex = [
    { prompt: [65, 66], completion: [67, 68] },
    { prompt: [70, 71], completion: [72] },
    { prompt: [80, 81, 82], completion: [83, 84] },
    { prompt: [90], completion: [91, 92, 93] },
  ];
  const batch = exampleBatch(ex, 8, EOS, true);
  const T = 8;
  const ids = tf.tensor2d(batch.ids, [4, T], 'int32');
  const targets = tf.tensor2d(batch.targets, [4, T], 'int32');
  const weights = tf.tensor2d(batch.weights!, [4, T]);
  // By hand: per-position losses, averaged over the weighted ones.
  const manual = tf.tidy(() => {
    const logp = tf.logSoftmax(tf.reshape(model.forward(ids), [4 * T, 256]));
    const nll = tf.neg(tf.sum(tf.mul(logp, tf.cast(tf.oneHot(tf.reshape(targets, [4 * T]), 256), 'float32')), 1));
    return tf.div(tf.sum(tf.mul(nll, tf.reshape(weights, [4 * T]))), tf.sum(weights));
  });
  const masked = model.loss(ids, targets, weights);
  assert.ok(Math.abs((await manual.data())[0] - (await masked.data())[0]) < 1e-6);
  tf.dispose([manual, masked]);

  const trainer = new Trainer(model, tc);
  const draw = (_rng: Rng) => batch;
  for (let i = 0; i < 60; i++) await trainer.trainOn(draw);
  // After the completion, the likeliest next token is EOS: the model learned to stop.
  const logits = tf.tidy(() => model.forward(tf.tensor2d([[65, 66, 67, 68]], [1, 4], 'int32')));
  const last = (await logits.data()).slice(3 * 256, 4 * 256);
  const argmax = last.indexOf(Math.max(...last));
  assert.equal(argmax, EOS, 'EOS follows the completion');
  tf.dispose([logits, ids, targets, weights]);
  trainer.dispose();
  model.dispose();
});

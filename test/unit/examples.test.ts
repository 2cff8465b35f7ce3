import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { exampleBatch, packedSampler } from '../../src/core/data/batch';
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

test('batches pad to the longest row (a multiple of 16), and packing lays rows end to end with the prompts masked', async () => {
  const short = exampleBatch([{ prompt: [5, 6], completion: [7] }, { prompt: [8], completion: [9, 10, 11] }], 128, EOS, true);
  assert.equal(short.blockSize, 16, 'padded to 16, not to the block of 128');
  const long = exampleBatch([{ prompt: Array(20).fill(3), completion: [4] }], 128, EOS, true);
  assert.equal(long.blockSize, 32);
  const rows = [
    { prompt: [10, 11], completion: [12] },
    { prompt: [20], completion: [21, 22] },
    { prompt: [30, 31, 32], completion: [33] },
  ];
  const draw = packedSampler(rows, 2, 4, EOS, true, 1);
  const { Rng } = await import('../../src/core/rng');
  const b = draw(new Rng(3));
  assert.equal(b.blockSize, 4);
  // Every window is a slice of the packed stream, and a target counts exactly when it is a completion token or an EOS.
  const completion = new Set([12, 21, 22, 33, EOS]);
  for (let i = 0; i < b.ids.length; i++) assert.equal(b.weights![i], completion.has(b.targets[i]) ? 1 : 0, `position ${i}: target ${b.targets[i]}`);
  const all = packedSampler(rows, 2, 4, EOS, false, 1)(new Rng(3));
  assert.ok(all.weights!.every((w) => w === 1), 'without completion-only every position counts');
  assert.deepEqual(Array.from(all.ids), Array.from(b.ids), 'the same seed gives the same stream and windows');
  assert.throws(() => packedSampler(rows.slice(0, 1), 2, 8, EOS, true, 1), /packed, the examples make 4 tokens/);

  // Packed training on the examples of the test above learns them too.
  const { model: mc, train: tc } = tinyConfigs({ steps: 40, learning_rate: 2e-2, batch_size: 4, block_size: 8 });
  const model = GPT2.random(mc, 4);
  const trainer = new Trainer(model, tc);
  const packed = packedSampler(
    [{ prompt: [65, 66], completion: [67, 68] }, { prompt: [70, 71], completion: [72] }, { prompt: [80, 81, 82], completion: [83, 84] }, { prompt: [90], completion: [91, 92, 93] }],
    4, 8, EOS, true, 7,
  );
  const losses: number[] = [];
  for (let i = 0; i < 40; i++) losses.push((await trainer.trainOn(packed)).loss);
  assert.ok(losses.at(-1)! < losses[0] / 2, `packed loss falls: ${losses[0]} -> ${losses.at(-1)}`);
  trainer.dispose();
  model.dispose();
});

import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { resolveGPT2Config } from '../../src/core/config';
import { CheckpointError } from '../../src/core/errors';
import { GPT2, initGPT2Weights } from '../../src/core/model/gpt2';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

const cfg = resolveGPT2Config({ vocab_size: 256, n_positions: 16, n_embd: 16, n_layer: 2, n_head: 2 });

test('parameter count matches GPT-2 (tied lm_head)', () => {
  const m = GPT2.random(cfg, 1);
  const { vocab_size: V, n_positions: P, n_embd: C, n_layer: L } = cfg;
  // per block: 2 LayerNorms, c_attn, attn c_proj, c_fc, mlp c_proj
  const perBlock = 4 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C);
  assert.equal(m.numParams(), V * C + P * C + L * perBlock + 2 * C);
  m.dispose();
});

test('a fresh model predicts uniformly: loss is about ln(vocab)', async () => {
  const m = GPT2.random(cfg, 7);
  const ids = tf.tensor2d(Array.from({ length: 32 }, (_, i) => (i * 37) % 256), [2, 16], 'int32');
  const targets = tf.tensor2d(Array.from({ length: 32 }, (_, i) => (i * 53 + 11) % 256), [2, 16], 'int32');
  const loss = m.loss(ids, targets);
  const value = (await loss.data())[0];
  assert.ok(Math.abs(value - Math.log(256)) < 0.1, `initial loss ${value}, ln(256) = ${Math.log(256)}`);
  tf.dispose([ids, targets, loss]);
  m.dispose();
});

test('attention is causal: a later token does not change earlier logits', async () => {
  const m = GPT2.random(cfg, 3);
  const a = Array.from({ length: 16 }, (_, i) => i + 65);
  const b = a.slice();
  b[10] = 200;
  const la = m.forward(tf.tensor2d(a, [1, 16], 'int32'));
  const lb = m.forward(tf.tensor2d(b, [1, 16], 'int32'));
  const [da, db] = [await la.data(), await lb.data()];
  const V = cfg.vocab_size;
  for (let i = 0; i < 10 * V; i++) assert.ok(Math.abs(da[i] - db[i]) < 1e-5, `position ${Math.floor(i / V)} changed`);
  let changed = false;
  for (let i = 10 * V; i < 11 * V; i++) changed ||= Math.abs(da[i] - db[i]) > 1e-4;
  assert.ok(changed, 'the changed position itself must change');
  tf.dispose([la, lb]);
  m.dispose();
});

test('forward and loss leave no tensors behind', () => {
  const m = GPT2.random(cfg, 1);
  const ids = tf.tensor2d(new Int32Array(32), [2, 16], 'int32');
  const before = tf.memory().numTensors;
  const l = m.loss(ids, ids);
  l.dispose();
  assert.equal(tf.memory().numTensors, before);
  ids.dispose();
  m.dispose();
});

test('weights round-trip exactly, and a wrong shape names the tensor', async () => {
  const m = GPT2.random(cfg, 5);
  const w = await m.exportWeights();
  const m2 = new GPT2(cfg, structuredClone(w));
  const w2 = await m2.exportWeights();
  for (const k of Object.keys(w)) assert.deepEqual(w2[k].data, w[k].data, k);
  const bad = initGPT2Weights(cfg, 1);
  bad['h.1.mlp.c_fc.weight'] = { shape: [16, 16], data: new Float32Array(256) };
  assert.throws(() => new GPT2(cfg, bad), (e: unknown) => e instanceof CheckpointError && e.field === 'h.1.mlp.c_fc.weight');
  const missing = initGPT2Weights(cfg, 1);
  delete (missing as Record<string, unknown>)['ln_f.bias'];
  assert.throws(() => new GPT2(cfg, missing), /ln_f\.bias/);
  m.dispose();
  m2.dispose();
});

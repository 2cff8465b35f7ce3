/**
 * The WASM fast path of matrix products (src/core/model/matmul.ts) against tfjs's own kernel:
 * the same values and the same gradients for every transpose combination and shape the models
 * use, and only the gradients that are asked for get computed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { matMul } from '../../src/core/model/matmul';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('wasm'));
after(() => useBackend('cpu'));

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Seeded values in [-1, 1). */
function values(shape: number[], seed: number): Float32Array {
  const n = shape.reduce((x, y) => x * y, 1);
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 30) - 1);
}

/** Values and gradients (of a weighted sum, so every output counts differently) of f(a, b), read back. */
async function valueAndGrads(f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, a: Float32Array, b: Float32Array, w: Float32Array, c: (typeof cases)[number]) {
  return tf.tidy(() => {
    const [ta, tb] = [tf.tensor(a, c.a), tf.tensor(b, c.b)];
    const value = f(ta, tb);
    const grads = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(f(x, y), tf.tensor(w, value.shape))))([ta, tb]);
    return { value: value.dataSync().slice(), shape: value.shape, grads: grads.map((g) => ({ shape: g.shape, data: g.dataSync().slice() })) };
  });
}

const cases: { name: string; a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
  { name: 'a @ b (Conv1D)', a: [12, 5], b: [5, 7], ta: false, tb: false },
  { name: 'a @ b^T with widths that transpose in runs of 32 and 16', a: [40, 64], b: [48, 64], ta: false, tb: true },
  { name: 'a^T @ b with widths that transpose in runs of 8', a: [24, 40], b: [24, 8], ta: true, tb: false },
  { name: 'few rows against a large transposed weight (the tied output layer): (b a^T)^T', a: [4, 32], b: [200, 32], ta: false, tb: true },
  { name: 'a @ b^T (nn.Linear, tied output, LoRA)', a: [12, 5], b: [7, 5], ta: false, tb: true },
  { name: 'a^T @ b (embedding gradient)', a: [5, 12], b: [5, 7], ta: true, tb: false },
  { name: 'a^T @ b^T', a: [5, 12], b: [7, 5], ta: true, tb: true },
  { name: 'batched a [2, 3, 12, 5] @ weight b^T', a: [2, 3, 12, 5], b: [7, 5], ta: false, tb: true },
  { name: 'batched a @ batched b^T (attention)', a: [2, 3, 12, 5], b: [2, 3, 7, 5], ta: false, tb: true },
];

for (const c of cases) {
  test(`WASM fast path: ${c.name} gives the values and gradients of tfjs's kernel on the CPU backend`, async () => {
    const [a, b] = [values(c.a, 1), values(c.b, 2)];
    // The reference: tf.matMul on the CPU backend, whose kernel handles transposes itself.
    await useBackend('cpu');
    const probe = tf.tidy(() => tf.matMul(tf.tensor(a, c.a), tf.tensor(b, c.b), c.ta, c.tb).shape);
    const w = values(probe, 3);
    // A batched a against a 2-D b broadcasts: tfjs's own gradient of that fails, so the reference folds the rows.
    const ref = await valueAndGrads((x, y) => (c.a.length > 2 && c.b.length === 2 ? tf.reshape(tf.matMul(tf.reshape(x, [-1, c.a[c.a.length - 1]]), y, c.ta, c.tb), probe) : tf.matMul(x, y, c.ta, c.tb)), a, b, w, c);
    await useBackend('wasm');
    const start = tf.memory().numTensors;
    const fast = await valueAndGrads((x, y) => matMul(x, y, c.ta, c.tb), a, b, w, c);
    assert.equal(tf.memory().numTensors, start, 'no tensor left behind');
    assert.deepEqual(fast.shape, ref.shape);
    assert.ok(maxAbsDiff(fast.value, ref.value) < 1e-5, 'values');
    for (const i of [0, 1]) {
      assert.deepEqual(fast.grads[i].shape, [c.a, c.b][i]);
      const err = maxAbsDiff(fast.grads[i].data, ref.grads[i].data);
      assert.ok(err < 1e-4, `gradient of ${'ab'[i]}: max abs error ${err}`);
    }
  });
}

test('a frozen weight gets no gradient computed: only the trained operand\'s product runs', () => {
  const x = tf.variable(tf.randomNormal([64, 16], 0, 1, 'float32', 1), true);
  const w = tf.randomNormal([32, 16], 0, 1, 'float32', 2); // frozen: not asked for
  const before = tf.memory().numTensors;
  const kernels: string[] = [];
  const profile = tf.profile(() => {
    const { value, grads } = tf.variableGrads(() => tf.sum(matMul(x, w, false, true)), [x]);
    tf.dispose([value, ...Object.values(grads)]);
  });
  return profile.then((p) => {
    for (const k of p.kernels) kernels.push(k.name);
    // Forward: one transpose of w and one product; backward: dy @ w, one product, no transpose of x.
    assert.equal(kernels.filter((k) => k === 'BatchMatMul').length, 2, kernels.join(' '));
    tf.dispose([x, w]);
    assert.equal(tf.memory().numTensors, before - 2);
  });
});

test('block-diagonal attention (src/core/model/attention.ts) gives causalAttention\'s values and gradients', async () => {
  const { blockAttention } = await import('../../src/core/model/attention');
  const { causalAttention, causalMask } = await import('../../src/core/model/base');
  for (const [B, T, H, D] of [[2, 8, 2, 4], [1, 5, 3, 2], [3, 6, 4, 8]]) {
    const C = H * D;
    const start = tf.memory().numTensors;
    const [q, k, v, w] = [1, 2, 3, 4].map((seed) => tf.tensor2d(values([B * T, C], seed), [B * T, C]));
    const mask = causalMask(T);
    // The reference: heads split out and attended by the batched path, as before.
    const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, T, H, D]), [0, 2, 1, 3]) as tf.Tensor4D;
    const ref = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.reshape(tf.transpose(causalAttention(heads(a), heads(b), heads(c), mask), [0, 2, 1, 3]), [B * T, C]);
    const blk = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => blockAttention(a as tf.Tensor2D, b as tf.Tensor2D, c as tf.Tensor2D, B, T, H, mask);
    const run = (f: typeof ref) =>
      tf.tidy(() => [f(q, k, v), ...tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(f(a, b, c), w)))([q, k, v])].map((t) => t.dataSync().slice()));
    const [want, got] = [run(ref), run(blk)];
    want.forEach((x, i) => assert.ok(maxAbsDiff(x, got[i]) < 1e-5, `B${B} T${T} H${H} D${D}: ${['values', 'dq', 'dk', 'dv'][i]} differ by ${maxAbsDiff(x, got[i])}`));
    tf.dispose([q, k, v, w, mask]);
    assert.equal(tf.memory().numTensors, start, 'no tensor left behind');
  }
});

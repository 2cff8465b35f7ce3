import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { AdamW } from '../../src/core/train/adamw';
import { learningRate } from '../../src/core/train/schedule';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

/** torch.optim.AdamW's documented update, in plain numbers. */
function reference(p0: number[], grads: number[][], lr: number, cfg: { beta1: number; beta2: number; eps: number; weight_decay: number }, decay: boolean) {
  const p = p0.slice();
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, i) => {
    const t = i + 1;
    for (let j = 0; j < p.length; j++) {
      if (decay) p[j] *= 1 - lr * cfg.weight_decay;
      m[j] = cfg.beta1 * m[j] + (1 - cfg.beta1) * g[j];
      v[j] = cfg.beta2 * v[j] + (1 - cfg.beta2) * g[j] * g[j];
      const mh = m[j] / (1 - cfg.beta1 ** t);
      const vh = v[j] / (1 - cfg.beta2 ** t);
      p[j] -= (lr * mh) / (Math.sqrt(vh) + cfg.eps);
    }
  });
  return p;
}

test('AdamW matches the PyTorch algorithm, with decay on matrices and none on vectors', async () => {
  const cfg = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
  const matrix0 = [0.5, -1, 2, 0.25];
  const vector0 = [1, -2];
  const params = new Map<string, tf.Variable>([
    ['w', tf.variable(tf.tensor2d(matrix0, [2, 2]))],
    ['b', tf.variable(tf.tensor1d(vector0))],
  ]);
  const opt = new AdamW(params, cfg);
  const gw = [[0.1, -0.2, 0.3, 0.05], [0.2, 0.1, -0.1, 0], [-0.3, 0.4, 0.2, 0.1]];
  const gb = [[1, -1], [0.5, 0.5], [0.2, -0.3]];
  const lr = 0.01;
  for (let i = 0; i < 3; i++) {
    const grads = new Map<string, tf.Tensor>([['w', tf.tensor2d(gw[i], [2, 2])], ['b', tf.tensor1d(gb[i])]]);
    opt.apply(grads, lr);
    tf.dispose([...grads.values()]);
  }
  const w = Array.from(await params.get('w')!.data());
  const b = Array.from(await params.get('b')!.data());
  const rw = reference(matrix0, gw, lr, cfg, true);
  const rb = reference(vector0, gb, lr, cfg, false);
  rw.forEach((x, j) => assert.ok(Math.abs(x - w[j]) < 1e-6, `w[${j}] ${w[j]} vs ${x}`));
  rb.forEach((x, j) => assert.ok(Math.abs(x - b[j]) < 1e-6, `b[${j}] ${b[j]} vs ${x}`));
  assert.equal(opt.t, 3);
  const state = await opt.exportState();
  assert.deepEqual(state.m.w.shape, [2, 2]);
  opt.dispose();
  for (const p of params.values()) p.dispose();
});

test('learning rate: nanoGPT get_lr: warmup, the peak right after it, cosine decay to min_lr at the last step', () => {
  const cfg = { learning_rate: 1, min_lr: 0.1, warmup_steps: 4, steps: 23 };
  assert.equal(learningRate(1, cfg), 0.2);
  assert.equal(learningRate(4, cfg), 0.8);
  assert.equal(learningRate(5, cfg), 1, 'the peak is used');
  assert.ok(Math.abs(learningRate(14, cfg) - 0.55) < 1e-12, 'halfway through the decay is the midpoint');
  assert.equal(learningRate(23, cfg), 0.1);
  for (let s = 5; s < 23; s++) assert.ok(learningRate(s + 1, cfg) < learningRate(s, cfg), `not decreasing at ${s}`);
  // No warmup: the first step trains at the peak, as nanoGPT's first iteration does.
  assert.equal(learningRate(1, { ...cfg, warmup_steps: 0, steps: 10 }), 1);
  assert.equal(learningRate(10, { ...cfg, warmup_steps: 0, steps: 10 }), 0.1);
  assert.equal(learningRate(1, { ...cfg, warmup_steps: 0, steps: 1 }), 1, 'a one-step run uses the peak');
});

test('SGD with momentum matches torch.optim.SGD (coupled weight decay on matrices)', async () => {
  const { SGD } = await import('../../src/core/train/sgd');
  const cfg = { momentum: 0.9, weight_decay: 0.1 };
  const params = new Map<string, tf.Variable>([['w', tf.variable(tf.tensor2d([0.5, -1, 2, 0.25], [2, 2]))]]);
  const opt = new SGD(params, cfg);
  const gs = [[0.1, -0.2, 0.3, 0.05], [0.2, 0.1, -0.1, 0], [-0.3, 0.4, 0.2, 0.1]];
  const p = [0.5, -1, 2, 0.25];
  const buf = [0, 0, 0, 0];
  const lr = 0.05;
  gs.forEach((g, t) => {
    for (let j = 0; j < 4; j++) {
      const d = g[j] + cfg.weight_decay * p[j];
      buf[j] = t === 0 ? d : cfg.momentum * buf[j] + d;
      p[j] -= lr * buf[j];
    }
    const grads = new Map<string, tf.Tensor>([['w', tf.tensor2d(g, [2, 2])]]);
    opt.apply(grads, lr);
    tf.dispose([...grads.values()]);
  });
  const got = Array.from(await params.get('w')!.data());
  p.forEach((x, j) => assert.ok(Math.abs(x - got[j]) < 1e-6, `w[${j}] ${got[j]} vs ${x}`));
  opt.dispose();
  params.get('w')!.dispose();
});

test('linear and constant schedules', () => {
  const base = { learning_rate: 1, min_lr: 0, warmup_steps: 2, steps: 13 };
  assert.equal(learningRate(4, { ...base, lr_scheduler: 'constant' }), 1);
  assert.equal(learningRate(13, { ...base, lr_scheduler: 'constant' }), 1);
  assert.equal(learningRate(3, { ...base, lr_scheduler: 'linear' }), 1);
  assert.ok(Math.abs(learningRate(8, { ...base, lr_scheduler: 'linear' }) - 0.5) < 1e-12, 'halfway down the line');
  assert.equal(learningRate(13, { ...base, lr_scheduler: 'linear' }), 0);
});

import * as tf from '@tensorflow/tfjs-core';
import { checkShape, readNamed } from '../model/base';
import { CheckpointError } from '../errors';
import type { AdamWState } from './adamw';

/**
 * SGD with momentum as torch.optim.SGD computes it (dampening 0, not Nesterov): the weight decay
 * term joins the gradient (g + wd * p, matrices only here as for AdamW), buf = momentum * buf + g,
 * p -= lr * buf. Its state is stored in the AdamW checkpoint shape, the buffer as `m`.
 */
export class SGD {
  t = 0;
  private readonly buf = new Map<string, tf.Variable>();

  constructor(private readonly params: Map<string, tf.Variable>, private readonly cfg: { momentum: number; weight_decay: number }) {
    for (const [name, p] of params) this.buf.set(name, tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
  }

  /** One update; gradients multiplied by `scale` when given, disposed as used with `release`. One tidy per parameter, as AdamW's. */
  apply(grads: Map<string, tf.Tensor>, lr: number, scale?: tf.Scalar, release = false): void {
    this.t += 1;
    const { momentum, weight_decay } = this.cfg;
    for (const [name, p] of [...this.params].sort((a, b) => a[1].size - b[1].size)) {
      const raw = grads.get(name);
      if (!raw) continue;
      tf.tidy(() => {
        let g = scale ? tf.mul(raw, scale) : raw;
        if (weight_decay > 0 && p.rank >= 2) g = tf.add(g, tf.mul(p, weight_decay));
        const b = this.buf.get(name)!;
        // torch starts the buffer at the first gradient itself.
        b.assign(this.t === 1 ? g : tf.add(tf.mul(b, momentum), g));
        p.assign(tf.sub(p, tf.mul(momentum > 0 ? b : g, lr)));
      });
      if (release) raw.dispose();
    }
  }

  /** Reads the buffers back to the CPU (a sync point): only for checkpoints. */
  async exportState(): Promise<AdamWState> {
    return { t: this.t, m: await readNamed(this.buf), v: {} };
  }

  loadState(s: AdamWState): void {
    for (const [name, variable] of this.buf) {
      const w = s.m[name];
      if (!w) throw new CheckpointError(`optimizer state is missing the momentum of ${name}`, { field: name });
      checkShape(`m:${name}`, w.shape, variable.shape);
      tf.tidy(() => variable.assign(tf.tensor(w.data, w.shape, 'float32')));
    }
    this.t = s.t;
  }

  dispose(): void {
    for (const v of this.buf.values()) v.dispose();
    this.buf.clear();
  }
}

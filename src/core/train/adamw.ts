import * as tf from '@tensorflow/tfjs-core';
import { checkShape, readNamed, type NamedWeights } from '../model/base';
import { CheckpointError } from '../errors';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
}

export interface AdamWState {
  t: number;
  m: NamedWeights;
  v: NamedWeights;
}

/**
 * AdamW (Loshchilov & Hutter) with decoupled weight decay, as torch.optim.AdamW computes it:
 * p <- p - lr * wd * p, then p <- p - lr * m_hat / (sqrt(v_hat) + eps).
 * tfjs ships only Adam, whose L2 term is coupled to the gradient. Decay applies to matrices only.
 */
export class AdamW {
  t = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  constructor(private readonly params: Map<string, tf.Variable>, private readonly cfg: AdamWConfig) {
    for (const [name, p] of params) {
      // tf.variable copies and keeps its input alive; tidy disposes the zeros, not the variables.
      this.m.set(name, tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
      this.v.set(name, tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
    }
  }

  /**
   * One update from gradients keyed by parameter name, each multiplied by `scale` (a scalar on
   * the device: global-norm clipping's) when given. With `release`, each gradient is disposed as
   * soon as its parameter is updated (the caller gives them up); otherwise the caller owns them.
   * Memory, which full fine-tuning's update sets: one parameter at a time, smallest first (the
   * largest, usually the embedding table, comes when the others' gradients are gone), each formula
   * in a tidy of its own (about 4 copies of the parameter at once, not 12). Updating the model in
   * one tidy held some 16 float32 copies of it: 698 MB against 240, then 240 against 170, on the
   * weights-dominated shape of test/unit/memory.test.ts.
   */
  apply(grads: Map<string, tf.Tensor>, lr: number, scale?: tf.Scalar, release = false): void {
    this.t += 1;
    const { beta1, beta2, eps, weight_decay } = this.cfg;
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    for (const [name, p] of [...this.params].sort((a, b) => a[1].size - b[1].size)) {
      const raw = grads.get(name);
      if (!raw) continue;
      const g = scale ? tf.mul(raw, scale) : raw;
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      tf.tidy(() => m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1))));
      tf.tidy(() => v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2))));
      if (g !== raw) g.dispose();
      if (release) raw.dispose();
      const update = tf.tidy(() => tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), eps)));
      tf.tidy(() => p.assign(tf.sub(p.rank >= 2 && weight_decay > 0 ? tf.mul(p, 1 - lr * weight_decay) : p, tf.mul(update, lr))));
      update.dispose();
    }
  }

  /** Reads the moments back to the CPU (a sync point): only for checkpoints. */
  async exportState(): Promise<AdamWState> {
    return { t: this.t, m: await readNamed(this.m), v: await readNamed(this.v) };
  }

  loadState(s: AdamWState): void {
    for (const [which, moments] of [['m', this.m], ['v', this.v]] as const) {
      for (const [name, variable] of moments) {
        const w = s[which][name];
        if (!w) throw new CheckpointError(`optimizer state is missing ${which} for ${name}`, { field: name });
        checkShape(`${which}:${name}`, w.shape, variable.shape);
        tf.tidy(() => variable.assign(tf.tensor(w.data, w.shape, 'float32')));
      }
    }
    this.t = s.t;
  }

  dispose(): void {
    for (const v of [...this.m.values(), ...this.v.values()]) v.dispose();
    this.m.clear();
    this.v.clear();
  }
}

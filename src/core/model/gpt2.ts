import * as tf from '@tensorflow/tfjs-core';
import type { GPT2Config } from '../config';
import { CheckpointError } from '../errors';
import { Rng } from '../rng';

/** Plain, transferable weights keyed by Hugging Face tensor name. */
export type NamedWeights = Record<string, { shape: number[]; data: Float32Array }>;

let instances = 0;

/** The names and shapes of every GPT-2 parameter, in Hugging Face's order and layout (Conv1D is [in, out]). */
export function gpt2ParamShapes(c: GPT2Config): [string, number[]][] {
  const C = c.n_embd;
  const out: [string, number[]][] = [
    ['wte.weight', [c.vocab_size, C]],
    ['wpe.weight', [c.n_positions, C]],
  ];
  for (let i = 0; i < c.n_layer; i++) {
    const p = `h.${i}.`;
    out.push(
      [p + 'ln_1.weight', [C]], [p + 'ln_1.bias', [C]],
      [p + 'attn.c_attn.weight', [C, 3 * C]], [p + 'attn.c_attn.bias', [3 * C]],
      [p + 'attn.c_proj.weight', [C, C]], [p + 'attn.c_proj.bias', [C]],
      [p + 'ln_2.weight', [C]], [p + 'ln_2.bias', [C]],
      [p + 'mlp.c_fc.weight', [C, 4 * C]], [p + 'mlp.c_fc.bias', [4 * C]],
      [p + 'mlp.c_proj.weight', [4 * C, C]], [p + 'mlp.c_proj.bias', [C]],
    );
  }
  out.push(['ln_f.weight', [C]], ['ln_f.bias', [C]]);
  return out;
}

/** GPT-2's initialisation: N(0, 0.02) matrices, residual projections scaled by 1/sqrt(2 n_layer), zero biases, unit LayerNorm gains. */
export function initGPT2Weights(c: GPT2Config, seed: number): NamedWeights {
  const rng = new Rng(seed);
  const w: NamedWeights = {};
  for (const [name, shape] of gpt2ParamShapes(c)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    if (name.includes('ln_') && name.endsWith('.weight')) data.fill(1);
    else if (name.endsWith('.weight')) {
      const std = name.endsWith('c_proj.weight') ? 0.02 / Math.sqrt(2 * c.n_layer) : 0.02;
      for (let i = 0; i < size; i++) data[i] = rng.normal() * std;
    }
    w[name] = { shape, data };
  }
  return w;
}

/**
 * A GPT-2 causal language model on tfjs-core, in the spirit of nanoGPT's model.py.
 * The token embedding is a one-hot matmul rather than a gather: the gather's gradient needs
 * UnsortedSegmentSum, which the WASM backend lacks, and at small vocabularies the matmul is cheap.
 */
export class GPT2 {
  readonly params = new Map<string, tf.Variable>();
  private readonly prefix = `gpt2_${++instances}/`;

  constructor(readonly config: GPT2Config, weights: NamedWeights) {
    validateWeights(config, weights);
    for (const [name, shape] of gpt2ParamShapes(config)) {
      // tf.variable copies its input and does not dispose it, so the temporary tensor is disposed here.
      const t = tf.tensor(weights[name].data, shape, 'float32');
      this.params.set(name, tf.variable(t, true, this.prefix + name));
      t.dispose();
    }
  }

  static random(config: GPT2Config, seed: number): GPT2 {
    return new GPT2(config, initGPT2Weights(config, seed));
  }

  /** The tfjs variable name back to the Hugging Face name. */
  hfName(variableName: string): string {
    return variableName.startsWith(this.prefix) ? variableName.slice(this.prefix.length) : variableName;
  }

  numParams(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    return n;
  }

  private p(name: string): tf.Variable {
    return this.params.get(name)!;
  }

  /** Logits for every position: ids [B, T] int32 -> [B, T, V]. */
  forward(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const { n_embd: C, vocab_size: V, n_layer } = this.config;
      const [B, T] = ids.shape;
      const oneHot = tf.cast(tf.oneHot(tf.reshape(ids, [B * T]), V), 'float32'); // [B*T, V]
      const tok = tf.matMul(oneHot, this.p('wte.weight')); // [B*T, C]
      const pos = tf.slice(this.p('wpe.weight'), [0, 0], [T, C]); // [T, C]
      let x = tf.add(tf.reshape(tok, [B, T, C]), pos) as tf.Tensor3D; // [B, T, C]
      for (let i = 0; i < n_layer; i++) {
        const h = `h.${i}.`;
        x = tf.add(x, this.attention(this.layerNorm(x, h + 'ln_1'), h));
        x = tf.add(x, this.mlp(this.layerNorm(x, h + 'ln_2'), h));
      }
      x = this.layerNorm(x, 'ln_f');
      // GPT-2 ties the output projection to the token embedding.
      const logits = tf.matMul(tf.reshape(x, [B * T, C]), this.p('wte.weight'), false, true); // [B*T, V]
      return tf.reshape(logits, [B, T, V]);
    });
  }

  /** Mean next-token cross-entropy: ids and targets [B, T] int32. */
  loss(ids: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar {
    return tf.tidy(() => {
      const V = this.config.vocab_size;
      const N = targets.size;
      const logits = tf.reshape(this.forward(ids), [N, V]); // [N, V]
      const logp = tf.logSoftmax(logits); // [N, V]
      const onehot = tf.cast(tf.oneHot(tf.reshape(targets, [N]), V), 'float32'); // [N, V]
      return tf.div(tf.neg(tf.sum(tf.mul(logp, onehot))), N) as tf.Scalar;
    });
  }

  private layerNorm(x: tf.Tensor3D, name: string): tf.Tensor3D {
    const { mean, variance } = tf.moments(x, -1, true); // [B, T, 1]
    const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.config.layer_norm_epsilon)));
    return tf.add(tf.mul(normed, this.p(name + '.weight')), this.p(name + '.bias'));
  }

  /** Conv1D: x [N, in] @ weight [in, out] + bias [out]. */
  private linear(x: tf.Tensor2D, name: string): tf.Tensor2D {
    return tf.add(tf.matMul(x, this.p(name + '.weight')), this.p(name + '.bias'));
  }

  private attention(x: tf.Tensor3D, h: string): tf.Tensor3D {
    const [B, T, C] = x.shape;
    const H = this.config.n_head;
    const D = C / H;
    const qkv = this.linear(tf.reshape(x, [B * T, C]), h + 'attn.c_attn'); // [B*T, 3C]
    const [q, k, v] = tf.split(qkv, 3, 1).map(
      (t) => tf.transpose(tf.reshape(t, [B, T, H, D]), [0, 2, 1, 3]), // [B, H, T, D]
    );
    let att = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(D)); // [B, H, T, T]
    att = tf.add(att, this.causalMask(T));
    att = tf.softmax(att);
    const y = tf.transpose(tf.matMul(att, v), [0, 2, 1, 3]); // [B, T, H, D]
    return tf.reshape(this.linear(tf.reshape(y, [B * T, C]), h + 'attn.c_proj'), [B, T, C]);
  }

  /** Additive causal mask [T, T]: 0 where key j <= query i, -1e9 above the diagonal. Built on the device per call. */
  private causalMask(T: number): tf.Tensor2D {
    const i = tf.reshape(tf.range(0, T, 1, 'int32'), [T, 1]); // [T, 1]
    const j = tf.reshape(tf.range(0, T, 1, 'int32'), [1, T]); // [1, T]
    return tf.mul(tf.cast(tf.greater(j, i), 'float32'), -1e9) as tf.Tensor2D; // [T, T]
  }

  private mlp(x: tf.Tensor3D, h: string): tf.Tensor3D {
    const [B, T, C] = x.shape;
    const a = this.linear(tf.reshape(x, [B * T, C]), h + 'mlp.c_fc'); // [B*T, 4C]
    return tf.reshape(this.linear(geluNew(a), h + 'mlp.c_proj'), [B, T, C]);
  }

  /** Reads every weight back to the CPU: a sync point, used only for checkpoints and export. */
  async exportWeights(): Promise<NamedWeights> {
    return readNamed(this.params);
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}

/** GPT-2's tanh approximation of GELU ("gelu_new" in transformers). */
export function geluNew<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(x, tf.mul(x, x)))));
    return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner))) as T;
  });
}

export function checkShape(name: string, got: number[], want: number[]): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new CheckpointError(`tensor ${name} has shape [${got}], expected [${want}]`, { field: name });
  }
}

/** Checks names, shapes and value counts before anything is created from the weights. */
export function validateWeights(config: GPT2Config, weights: NamedWeights): void {
  for (const [name, shape] of gpt2ParamShapes(config)) {
    const w = weights[name];
    if (!w) throw new CheckpointError(`weights are missing tensor ${name}`, { field: name });
    checkShape(name, w.shape, shape);
    const size = shape.reduce((a, b) => a * b, 1);
    if (!(w.data instanceof Float32Array) || w.data.length !== size) {
      throw new CheckpointError(`tensor ${name} has ${w.data?.length ?? 0} values, expected ${size}`, { field: name });
    }
  }
}

/** Reads a map of tensors back to the CPU, keyed by the map's keys (all reads in flight at once). */
export async function readNamed(tensors: Map<string, tf.Tensor>): Promise<NamedWeights> {
  const entries = [...tensors];
  const values = await Promise.all(entries.map(([, t]) => t.data()));
  const out: NamedWeights = {};
  entries.forEach(([name, t], i) => {
    // Copied: some backends hand back their own storage.
    out[name] = { shape: t.shape.slice(), data: new Float32Array(values[i] as Float32Array) };
  });
  return out;
}

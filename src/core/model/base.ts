import * as tf from '@tensorflow/tfjs-core';
// Gradients are registered by a side-effect module of tfjs-core; every model needs them for training.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { CheckpointError } from '../errors';

/** Plain, transferable weights keyed by Hugging Face tensor name. */
export type NamedWeights = Record<string, { shape: number[]; data: Float32Array }>;

let instances = 0;

/**
 * What every architecture shares: parameters as tfjs variables keyed by their Hugging Face
 * names, the causal-LM loss, weight export and disposal. Subclasses give the forward pass.
 */
export abstract class CausalLM {
  readonly params = new Map<string, tf.Variable>();
  private readonly prefix: string;

  /** `shapes` lists every parameter in order; all are checked before any variable is made. */
  protected constructor(kind: string, shapes: [string, number[]][], weights: NamedWeights) {
    this.prefix = `${kind}_${++instances}/`;
    validateWeights(shapes, weights);
    for (const [name, shape] of shapes) {
      // tf.variable copies its input and does not dispose it, so the temporary tensor is disposed here.
      const t = tf.tensor(weights[name].data, shape, 'float32');
      this.params.set(name, tf.variable(t, true, this.prefix + name));
      t.dispose();
    }
  }

  abstract readonly vocabSize: number;

  /** Logits for every position: ids [B, T] int32 -> [B, T, V]. */
  abstract forward(ids: tf.Tensor2D): tf.Tensor3D;

  /** The tfjs variable name back to the Hugging Face name. */
  hfName(variableName: string): string {
    return variableName.startsWith(this.prefix) ? variableName.slice(this.prefix.length) : variableName;
  }

  numParams(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    return n;
  }

  protected p(name: string): tf.Variable {
    const v = this.params.get(name);
    if (!v) throw new Error(`no parameter ${name}`);
    return v;
  }

  /** Mean next-token cross-entropy: ids and targets [B, T] int32. */
  loss(ids: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar {
    return tf.tidy(() => {
      const V = this.vocabSize;
      const N = targets.size;
      const logits = tf.reshape(this.forward(ids), [N, V]); // [N, V]
      const logp = tf.logSoftmax(logits); // [N, V]
      const onehot = tf.cast(tf.oneHot(tf.reshape(targets, [N]), V), 'float32'); // [N, V]
      return tf.div(tf.neg(tf.sum(tf.mul(logp, onehot))), N) as tf.Scalar;
    });
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

/**
 * Token embedding as a one-hot matmul rather than a gather: the gather's gradient needs
 * UnsortedSegmentSum, which the WASM backend lacks. ids [B, T] -> [B*T, C].
 */
export function embed(ids: tf.Tensor2D, table: tf.Tensor2D): tf.Tensor2D {
  const [B, T] = ids.shape;
  const oneHot = tf.cast(tf.oneHot(tf.reshape(ids, [B * T]), table.shape[0]), 'float32'); // [B*T, V]
  return tf.matMul(oneHot, table); // [B*T, C]
}

/** Additive causal mask [T, T]: 0 where key j <= query i, -1e9 above the diagonal. Built on the device. */
export function causalMask(T: number): tf.Tensor2D {
  const i = tf.reshape(tf.range(0, T, 1, 'int32'), [T, 1]); // [T, 1]
  const j = tf.reshape(tf.range(0, T, 1, 'int32'), [1, T]); // [1, T]
  return tf.mul(tf.cast(tf.greater(j, i), 'float32'), -1e9) as tf.Tensor2D; // [T, T]
}

/** Softmax attention with a causal mask: q, k, v [B, H, T, D] -> [B, H, T, D]. */
export function causalAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
  const [, , T, D] = q.shape;
  let att = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(D)); // [B, H, T, T]
  att = tf.add(att, causalMask(T));
  return tf.matMul(tf.softmax(att), v); // [B, H, T, D]
}

export function checkShape(name: string, got: number[], want: number[]): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new CheckpointError(`tensor ${name} has shape [${got}], expected [${want}]`, { field: name });
  }
}

/** Checks names, shapes and value counts before anything is created from the weights. */
export function validateWeights(shapes: [string, number[]][], weights: NamedWeights): void {
  for (const [name, shape] of shapes) {
    const w = weights[name];
    if (!w) throw new CheckpointError(`weights are missing tensor ${name}`, { field: name });
    checkShape(name, w.shape, shape);
    const size = shape.reduce((a, b) => a * b, 1);
    if (!(w.data instanceof Float32Array) || w.data.length !== size) {
      throw new CheckpointError(`tensor ${name} has ${w.data?.length ?? 0} values, expected ${size}`, { field: name });
    }
  }
}

export function countParams(shapes: [string, number[]][]): number {
  return shapes.reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
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

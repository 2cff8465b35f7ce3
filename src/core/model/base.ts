import * as tf from '@tensorflow/tfjs-core';
// Gradients are registered by a side-effect module of tfjs-core; every model needs them for training.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { CheckpointError, ConfigError } from '../errors';
import { dequantize, dequantizeRows, type QuantizedTensor } from '../peft/quant';
import { frozenProduct, matMul } from './matmul';

/** Plain, transferable weights keyed by Hugging Face tensor name. */
export type NamedWeights = Record<string, { shape: number[]; data: Float32Array }>;

let instances = 0;

export interface ModelOptions {
  /**
   * The largest tensor the device can hold in one buffer (WebGPU's maxStorageBufferBindingSize).
   * Embedding and output tables larger than this are kept as several row blocks.
   */
  maxTensorBytes?: number;
}

/** A linear layer of a model: its module path (Hugging Face's), sizes, and weight layout. */
export interface LinearModule {
  path: string;
  in: number;
  out: number;
  /** GPT-2's Conv1D keeps its weight as [in, out]; nn.Linear as [out, in]. */
  conv1d: boolean;
}

/** A LoRA adapter on one linear layer: out += dropout(x) A^T B^T * scaling, A [r, in], B [out, r]. */
export interface AdapterLayer {
  A: tf.Variable;
  B: tf.Variable;
  scaling: number;
  dropout: number;
  /** Folded into the base weight (PEFT's merge_adapter): the forward pass then skips it. */
  merged?: boolean;
}

/** A [rows, C] table kept as row blocks: the variables' names and the first row of each. */
interface SplitTable {
  parts: string[];
  offsets: number[];
  rows: number;
}

/**
 * What every architecture shares: parameters as tfjs variables keyed by their Hugging Face
 * names, the causal-LM loss, weight export and disposal. Subclasses give the forward pass.
 */
export abstract class CausalLM {
  /** Variables by name: the Hugging Face name, or "name#i" for the i-th row block of a split table. */
  readonly params = new Map<string, tf.Variable>();
  /** Frozen weights held in 8 bits (QLoRA-style), by name; not in `params`. */
  readonly quantized = new Map<string, QuantizedTensor>();
  /** LoRA adapters by module path (src/core/peft/lora.ts attaches them). */
  readonly adapters = new Map<string, AdapterLayer>();
  /** Set by the trainer around training steps: adapter dropout applies only then. */
  training = false;
  private dropoutCalls = 0;
  private dropoutSeed = 0;

  /** Seeds the adapter dropout masks of the next pass; the trainer does so per step, so a resumed run draws the same masks. */
  seedDropout(seed: number): void {
    this.dropoutSeed = seed;
    this.dropoutCalls = 0;
  }
  private readonly prefix: string;
  private readonly splits = new Map<string, SplitTable>();

  /**
   * `shapes` lists every parameter in order; all are checked before any variable is made.
   * `tables` names the [vocab, C] tables that may be split when they exceed opts.maxTensorBytes.
   */
  /** The [vocab, C] tables (token embedding, output layer) held whole, by name: what QLoRA may quantize besides the linear layers. */
  readonly tableNames: string[];

  protected constructor(kind: string, shapes: [string, number[]][], weights: NamedWeights, tables: string[] = [], opts: ModelOptions = {}) {
    this.prefix = `${kind}_${++instances}/`;
    validateWeights(shapes, weights);
    const max = opts.maxTensorBytes ?? Infinity;
    for (const [name, shape] of shapes) {
      const data = weights[name].data;
      if (tables.includes(name) && data.byteLength > max) {
        const [rows, C] = shape;
        // As few blocks as fit, with the rows spread evenly over them.
        const blocks = Math.ceil(rows / Math.max(1, Math.floor(max / (C * 4))));
        const per = Math.ceil(rows / blocks);
        const split: SplitTable = { parts: [], offsets: [], rows };
        for (let r = 0, i = 0; r < rows; r += per, i++) {
          const n = Math.min(per, rows - r);
          this.addVariable(`${name}#${i}`, data.subarray(r * C, (r + n) * C), [n, C]);
          split.parts.push(`${name}#${i}`);
          split.offsets.push(r);
        }
        this.splits.set(name, split);
      } else {
        this.addVariable(name, data, shape);
      }
    }
    this.tableNames = tables.filter((name) => this.params.has(name));
  }

  private addVariable(name: string, data: Float32Array, shape: number[]): void {
    // tf.variable copies its input and does not dispose it, so the temporary tensor is disposed here.
    const t = tf.tensor(data, shape, 'float32');
    this.params.set(name, tf.variable(t, true, this.prefix + name));
    t.dispose();
  }

  /** Every linear layer, in order: what LoRA can target. */
  abstract linearModules(): LinearModule[];

  /** A module path as PEFT writes it after "base_model.model.". */
  abstract peftPath(path: string): string;

  /** A linear layer's output plus its adapter's update, if it has one. x [N, in], out [N, out]. */
  protected adapt(path: string, x: tf.Tensor2D, out: tf.Tensor2D): tf.Tensor2D {
    const a = this.adapters.get(path);
    if (!a || a.merged) return out;
    const xin = this.training && a.dropout > 0 ? (tf.dropout(x, a.dropout, undefined, this.dropoutSeed * 1_000_003 + ++this.dropoutCalls) as tf.Tensor2D) : x;
    const update = matMul(matMul(xin, a.A, false, true), a.B, false, true); // [N, r] -> [N, out]
    return tf.add(out, tf.mul(update, a.scaling));
  }

  /** Prompt tuning's virtual tokens [N, C], put before the input at the start of a sequence. */
  softPrompt: tf.Variable | null = null;

  /**
   * The input vectors of a pass: the token embeddings, after the soft prompt's N virtual tokens
   * when the pass starts a sequence. `T` counts them all; `skip` is N, or 0.
   */
  protected inputs(ids: tf.Tensor2D, start: number): { x: tf.Tensor2D; T: number; skip: number } {
    const [B, T] = ids.shape;
    const tok = this.tokenEmbeddings(ids); // [B*T, C]
    if (!this.softPrompt || start > 0) return { x: tok, T, skip: 0 };
    const [N, C] = this.softPrompt.shape;
    if (N + T > this.contextLength) {
      throw new ConfigError(`${N} virtual tokens and ${T} input tokens exceed the model's context of ${this.contextLength}`, { field: 'block_size' });
    }
    const prompt = tf.tile(tf.expandDims(this.softPrompt, 0), [B, 1, 1]); // [B, N, C]
    const x = tf.concat([prompt, tf.reshape(tok, [B, T, C])], 1); // [B, N+T, C]
    return { x: tf.reshape(x, [B * (N + T), C]) as tf.Tensor2D, T: N + T, skip: N };
  }

  /** Logits [B, T, V] of the real tokens: the virtual tokens' positions dropped. */
  protected dropVirtual(logits: tf.Tensor3D, skip: number): tf.Tensor3D {
    if (skip === 0) return logits;
    const [B, T, V] = logits.shape;
    return tf.slice(logits, [0, skip, 0], [B, T - skip, V]);
  }

  /**
   * Which parameters train when there are no adapters (BitFit sets "biases only"); null: all.
   * Frozen parameters get no gradient and no optimizer state.
   */
  trainableFilter: ((name: string) => boolean) | null = null;

  /** A fine-tuning method is attached: adapters, a soft prompt, a trainable subset or a quantized base. */
  get tuned(): boolean {
    return this.adapters.size > 0 || !!this.softPrompt || !!this.trainableFilter || this.quantized.size > 0;
  }

  /** Whether training updates this parameter (of `params`): one question of trainableParams(), without building its map. */
  isTrained(name: string): boolean {
    if (this.softPrompt || this.adapters.size > 0) return false;
    return this.trainableFilter ? this.trainableFilter(name) : this.params.has(name);
  }

  /** What training updates: the adapters' A and B when there are any, else the parameters the filter keeps. */
  trainableParams(): Map<string, tf.Variable> {
    if (this.softPrompt) return new Map([['prompt_embeddings', this.softPrompt]]);
    if (this.adapters.size === 0) {
      const keep = this.trainableFilter;
      return keep ? new Map([...this.params].filter(([name]) => keep(name))) : this.params;
    }
    const out = new Map<string, tf.Variable>();
    for (const [path, a] of this.adapters) {
      out.set(`${path}.lora_A.weight`, a.A);
      out.set(`${path}.lora_B.weight`, a.B);
    }
    return out;
  }

  /** The Hugging Face name of the token embedding table. */
  abstract readonly embeddingName: string;

  /** Width of the token vectors. */
  abstract readonly hiddenSize: number;

  /** The token embeddings of ids [B, T]: [B*T, C]. */
  tokenEmbeddings(ids: tf.Tensor2D): tf.Tensor2D {
    return this.embedTokens(ids, this.embeddingName);
  }

  /** Token embedding: ids [B, T] -> [B*T, C], whether the table is whole or in row blocks. */
  protected embedTokens(ids: tf.Tensor2D, name: string): tf.Tensor2D {
    const split = this.splits.get(name);
    const q = this.quantized.get(name);
    if (q) {
      // A quantized table (QLoRA, frozen) gives just the rows asked for, unpacked from their codes;
      // ids outside the table embed to zeros, as with a float32 table.
      const [rows, C] = q.shape;
      const { idx, inRange } = rowsOf(tf.reshape(ids, [-1]) as tf.Tensor1D, rows);
      // WebGPU and WebGL compute int32 sums and products in float32, exact only below 2^24: the
      // positions of a bigger table's codes are not exact there, so the table is unpacked whole.
      const exact = rows * C < 2 ** 24 || ['cpu', 'wasm'].includes(tf.getBackend());
      const found = exact ? dequantizeRows(q, idx) : tf.gather(dequantize(q), idx);
      return tf.mul(found, inRange) as tf.Tensor2D;
    }
    if (!split) return embed(ids, this.p(name) as tf.Tensor2D);
    // Each block embeds the ids in its row range; ids outside it embed to zeros.
    const parts = split.parts.map((part, i) => embed(tf.sub(ids, tf.scalar(split.offsets[i], 'int32')) as tf.Tensor2D, this.p(part) as tf.Tensor2D));
    return parts.reduce((a, b) => tf.add(a, b));
  }

  /** x [N, C] against a [V, C] table, transposed: [N, V], block by block when it is split. */
  protected projectOut(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const split = this.splits.get(name);
    if (!split) return this.weightProduct(x, name, true);
    return tf.concat(split.parts.map((part) => this.weightProduct(x, part, true)), 1) as tf.Tensor2D; // [N, V]
  }

  abstract readonly vocabSize: number;

  /**
   * Logits for every given position: ids [B, T] int32 -> [B, T, V]. With a cache, ids are the
   * positions after the cached ones, and their keys and values are appended to it.
   */
  abstract forward(ids: tf.Tensor2D, cache?: KVCache): tf.Tensor3D;

  /** The longest sequence the model's positions allow. */
  abstract readonly contextLength: number;

  /** The tfjs variable name for a key of this model (unique across models in one tfjs engine). */
  variableName(key: string): string {
    return this.prefix + key;
  }

  /** The tfjs variable name back to the Hugging Face name. */
  hfName(variableName: string): string {
    return variableName.startsWith(this.prefix) ? variableName.slice(this.prefix.length) : variableName;
  }

  numParams(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    for (const q of this.quantized.values()) n += q.shape.reduce((a, b) => a * b, 1);
    return n;
  }

  /** A parameter's value: its variable, or the float32 of its 8-bit copy (dequantized where it is used). */
  protected p(name: string): tf.Tensor {
    const v = this.params.get(name);
    if (v) return v;
    const q = this.quantized.get(name);
    if (q) return dequantize(q);
    throw new Error(`no parameter ${name}`);
  }

  /**
   * x [N, in] times a weight matrix (transposed for nn.Linear's [out, in]). A weight that is not
   * trained (isTrained) goes through frozenProduct: a quantized one is unpacked for
   * each pass and never kept, a float32 one not kept between the passes either. Such a weight has
   * no gradient: asking tf.grads for one gets none (the trainer asks only for trainableParams()).
   */
  protected weightProduct(x: tf.Tensor2D, name: string, transposeB = false): tf.Tensor2D {
    const q = this.quantized.get(name);
    if (q) return frozenProduct(x, () => dequantize(q), transposeB);
    const w = this.p(name);
    if (!this.isTrained(name)) return frozenProduct(x, () => w, transposeB);
    return matMul(x, w, false, transposeB);
  }

  /**
   * Mean next-token cross-entropy: ids and targets [B, T] int32. With weights [B, T] (1 where a
   * position counts, 0 where it does not: a prompt, padding), the mean over counted positions.
   * Masking is by position, never by token id, so an EOS that is also the pad token still counts.
   */
  loss(ids: tf.Tensor2D, targets: tf.Tensor2D, weights?: tf.Tensor2D): tf.Scalar {
    return tf.tidy(() => {
      const N = targets.size;
      const logits = tf.reshape(this.forward(ids), [N, this.vocabSize]) as tf.Tensor2D; // [N, V]
      return crossEntropy(logits, tf.reshape(targets, [N]) as tf.Tensor1D, weights && (tf.reshape(weights, [N]) as tf.Tensor1D));
    });
  }

  /** Reads every weight back to the CPU under its Hugging Face name: a sync point, for checkpoints and export. */
  async exportWeights(): Promise<NamedWeights> {
    const out = await readNamed(this.params);
    for (const [name, q] of this.quantized) {
      const t = dequantize(q);
      // Read back: export of a quantized base gives its dequantized float32 values.
      out[name] = { shape: q.shape.slice(), data: new Float32Array(await t.data()) };
      t.dispose();
    }
    for (const [name, split] of this.splits) {
      const blocks = split.parts.map((part) => out[part]);
      const C = blocks[0].shape[1];
      const data = new Float32Array(split.rows * C);
      blocks.forEach((b, i) => data.set(b.data, split.offsets[i] * C));
      for (const part of split.parts) delete out[part];
      out[name] = { shape: [split.rows, C], data };
    }
    return out;
  }

  dispose(): void {
    for (const q of this.quantized.values()) tf.dispose([q.packed, q.scales]);
    this.quantized.clear();
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
    for (const a of this.adapters.values()) tf.dispose([a.A, a.B]);
    this.adapters.clear();
    this.softPrompt?.dispose();
    this.softPrompt = null;
  }
}

/**
 * Softmax cross-entropy of logits [N, V] against targets [N], averaged over the positions that
 * count (weights [N], 1 or 0; all when absent). One differentiable step, as the fused losses of
 * PyTorch: forward logsumexp - the target's logit, backward (softmax - one-hot) x the position's
 * share, each made inside and let go. Only the logits are kept between the two passes, where the
 * separate ops kept their log-softmax, one-hot and products too (several [N, V] tensors, the
 * largest of a step at GPT-2's 50,257 words).
 */
export function crossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, weights?: tf.Tensor1D): tf.Scalar {
  const [N, V] = logits.shape;
  // Each position's share of the mean: 1/N, or its weight over the counted positions. (An input of
  // the step below, so the backward pass has it: it lives as long as the loss's graph.)
  const share = tf.tidy(() => (weights ? tf.div(weights, tf.maximum(tf.sum(weights), 1)) : tf.fill([N], 1 / N))); // [N]
  // The targets and shares go in as inputs, so the backward pass, after the caller's tidy, still has them.
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, t, s, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    save([x, t, s]);
    const oneHot = (ids: tf.Tensor1D) => tf.cast(tf.oneHot(ids, V), 'float32'); // [N, V]
    return {
      value: tf.tidy(() => tf.sum(tf.mul(tf.sub(tf.logSumExp(x, 1), tf.sum(tf.mul(x, oneHot(t)), 1)), s))) as tf.Scalar,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, st, ss] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
        const dx = tf.tidy(() => tf.mul(tf.mul(tf.sub(tf.softmax(sx), oneHot(st)), tf.reshape(ss, [N, 1])), dy));
        // Targets and shares are data, not trained: their gradients are never asked for.
        return [dx, tf.zerosLike(st), tf.zerosLike(ss)];
      },
    };
  });
  return f(logits, targets, share) as tf.Scalar;
}

/**
 * Token embedding: ids [B, T] -> [B*T, C]. The forward pass is a gather, cheap at any vocabulary;
 * the gradient is written by hand as a one-hot matmul, because tfjs's gather gradient needs
 * UnsortedSegmentSum, which the WASM backend lacks. Ids outside the table's rows (those of another
 * row block of a split table) embed to zeros.
 */
export function embed(ids: tf.Tensor2D, table: tf.Tensor2D): tf.Tensor2D {
  const [B, T] = ids.shape;
  const lookup = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [t, flat, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    save([flat]);
    const { idx, inRange } = rowsOf(flat as tf.Tensor1D, t.shape[0]);
    return {
      value: tf.mul(tf.gather(t, idx), inRange), // [N, C]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const rows = rowsOf(saved[0] as tf.Tensor1D, t.shape[0]);
        const V = t.shape[0];
        // [N, V] one-hot of the rows this table holds; a one-row block compares instead (oneHot needs depth 2).
        const hot = V === 1 ? tf.reshape(tf.cast(tf.equal(rows.idx, 0), 'float32'), [-1, 1]) : tf.cast(tf.oneHot(rows.idx, V), 'float32');
        return [matMul(tf.mul(hot, rows.inRange), dy, true, false), tf.zerosLike(saved[0])]; // [V, C]
      },
    };
  });
  return lookup(table, tf.reshape(ids, [B * T])) as tf.Tensor2D;
}

/** Row index per id, clipped into [0, V), and a [N, 1] mask of the ids that are really in range. */
function rowsOf(flat: tf.Tensor1D, V: number): { idx: tf.Tensor1D; inRange: tf.Tensor2D } {
  const ok = tf.logicalAnd(tf.greaterEqual(flat, tf.scalar(0, 'int32')), tf.less(flat, tf.scalar(V, 'int32')));
  const idx = tf.where(ok, flat, tf.zerosLike(flat)) as tf.Tensor1D;
  return { idx, inRange: tf.reshape(tf.cast(ok, 'float32'), [-1, 1]) as tf.Tensor2D };
}

/**
 * Additive causal mask [Tq, Tk] for queries at positions offset .. offset+Tq-1 over keys at
 * 0 .. Tk-1: 0 where the key is not after the query, -1e9 where it is. Built on the device.
 */
export function causalMask(Tq: number, Tk = Tq, offset = 0): tf.Tensor2D {
  return tf.tidy(() => {
    const i = tf.reshape(tf.range(offset, offset + Tq, 1, 'int32'), [Tq, 1]); // [Tq, 1]
    const j = tf.reshape(tf.range(0, Tk, 1, 'int32'), [1, Tk]); // [1, Tk]
    return tf.mul(tf.cast(tf.greater(j, i), 'float32'), -1e9) as tf.Tensor2D; // [Tq, Tk]
  });
}

/**
 * Softmax attention with a causal mask: q [B, H, Tq, D] over k, v [B, H, Tk, D] -> [B, H, Tq, D].
 * With a KV cache the queries are the last Tq positions of Tk.
 */
export function causalAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask?: tf.Tensor2D): tf.Tensor4D {
  const [, , Tq, D] = q.shape;
  const Tk = k.shape[2];
  let att = tf.mul(matMul(q, k, false, true), 1 / Math.sqrt(D)); // [B, H, Tq, Tk]
  // A forward pass builds the mask once and hands it to every layer.
  att = tf.add(att, mask ?? causalMask(Tq, Tk, Tk - Tq));
  return matMul(tf.softmax(att) as tf.Tensor4D, v); // [B, H, Tq, D]
}

/**
 * Keys and values of the positions seen so far, per layer ([B, heads, T, D], heads being the
 * key/value heads). A forward pass given a cache computes only the new positions and appends
 * theirs, so generating a token costs one position, not the whole prefix. The caller owns it.
 */
export class KVCache {
  layers: { k: tf.Tensor4D; v: tf.Tensor4D }[] = [];

  /** Positions cached so far. */
  get length(): number {
    return this.layers[0]?.k.shape[2] ?? 0;
  }

  /**
   * The layer's keys and values with the new ones appended. Called inside a forward pass's tidy;
   * the result is kept, and the previous tensors are released when the pass ends (commit()).
   */
  extend(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): { k: tf.Tensor4D; v: tf.Tensor4D } {
    const old = this.layers[layer];
    const next = old ? { k: tf.concat([old.k, k], 2) as tf.Tensor4D, v: tf.concat([old.v, v], 2) as tf.Tensor4D } : { k, v };
    this.pending.push({ layer, next: { k: tf.keep(next.k), v: tf.keep(next.v) } });
    return next;
  }

  private pending: { layer: number; next: { k: tf.Tensor4D; v: tf.Tensor4D } }[] = [];

  /** Swaps in what the pass appended and disposes what it replaced. */
  commit(): void {
    for (const { layer, next } of this.pending) {
      const old = this.layers[layer];
      if (old) tf.dispose([old.k, old.v]);
      this.layers[layer] = next;
    }
    this.pending = [];
  }

  dispose(): void {
    for (const l of this.layers) tf.dispose([l.k, l.v]);
    for (const { next } of this.pending) tf.dispose([next.k, next.v]);
    this.layers = [];
    this.pending = [];
  }
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

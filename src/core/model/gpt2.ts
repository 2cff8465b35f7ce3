import * as tf from '@tensorflow/tfjs-core';
import type { GPT2Config } from '../config';
import { Rng } from '../rng';
import { blockAttention, useBlockAttention } from './attention';
import { CausalLM, causalAttention, causalMask, validateWeights, type KVCache, type LinearModule, type ModelOptions, type NamedWeights } from './base';

export type { NamedWeights } from './base';

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
 * A GPT-2 causal language model on tfjs-core, in the spirit of nanoGPT's model.py, with Hugging
 * Face's parameter names and layouts, so a GPT-2 checkpoint loads key for key.
 */
export class GPT2 extends CausalLM {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly embeddingName = 'wte.weight';
  readonly hiddenSize: number;

  constructor(readonly config: GPT2Config, weights: NamedWeights, opts: ModelOptions = {}) {
    super('gpt2', gpt2ParamShapes(config), weights, ['wte.weight'], opts);
    this.vocabSize = config.vocab_size;
    this.contextLength = config.n_positions;
    this.hiddenSize = config.n_embd;
  }

  static random(config: GPT2Config, seed: number): GPT2 {
    return new GPT2(config, initGPT2Weights(config, seed));
  }

  forward(ids: tf.Tensor2D, cache?: KVCache): tf.Tensor3D {
    const out = tf.tidy(() => {
      const { n_embd: C, vocab_size: V, n_layer } = this.config;
      const B = ids.shape[0];
      const start = cache?.length ?? 0;
      const { x: tok, T, skip } = this.inputs(ids, start); // [B*T, C]
      const pos = tf.slice(this.p('wpe.weight'), [start, 0], [T, C]); // [T, C]
      let x = tf.add(tf.reshape(tok, [B, T, C]), pos) as tf.Tensor3D; // [B, T, C]
      const mask = causalMask(T, start + T, start); // [T, start+T]
      for (let i = 0; i < n_layer; i++) {
        const h = `h.${i}.`;
        x = tf.add(x, this.attention(this.layerNorm(x, h + 'ln_1'), h, i, mask, cache));
        x = tf.add(x, this.mlp(this.layerNorm(x, h + 'ln_2'), h));
      }
      x = this.layerNorm(x, 'ln_f');
      // GPT-2 ties the output projection to the token embedding.
      const logits = this.projectOut(tf.reshape(x, [B * T, C]), 'wte.weight'); // [B*T, V]
      return this.dropVirtual(tf.reshape(logits, [B, T, V]) as tf.Tensor3D, skip);
    });
    cache?.commit();
    return out;
  }

  private layerNorm(x: tf.Tensor3D, name: string): tf.Tensor3D {
    const { mean, variance } = tf.moments(x, -1, true); // [B, T, 1]
    const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.config.layer_norm_epsilon)));
    return tf.add(tf.mul(normed, this.p(name + '.weight')), this.p(name + '.bias'));
  }

  /** Conv1D: x [N, in] @ weight [in, out] + bias [out]. */
  private linear(x: tf.Tensor2D, path: string): tf.Tensor2D {
    return this.adapt(path, x, tf.add(this.weightProduct(x, path + '.weight'), this.p(path + '.bias')));
  }

  linearModules(): LinearModule[] {
    const C = this.config.n_embd;
    const out: LinearModule[] = [];
    for (let i = 0; i < this.config.n_layer; i++) {
      const h = `h.${i}.`;
      out.push(
        { path: h + 'attn.c_attn', in: C, out: 3 * C, conv1d: true },
        { path: h + 'attn.c_proj', in: C, out: C, conv1d: true },
        { path: h + 'mlp.c_fc', in: C, out: 4 * C, conv1d: true },
        { path: h + 'mlp.c_proj', in: 4 * C, out: C, conv1d: true },
      );
    }
    return out;
  }

  /** GPT2LMHeadModel keeps the transformer under "transformer.", as PEFT's keys do. */
  peftPath(path: string): string {
    return `transformer.${path}`;
  }

  private attention(x: tf.Tensor3D, h: string, layer: number, mask: tf.Tensor2D, cache?: KVCache): tf.Tensor3D {
    const [B, T, C] = x.shape;
    const H = this.config.n_head;
    const D = C / H;
    const qkv = this.linear(tf.reshape(x, [B * T, C]), h + 'attn.c_attn'); // [B*T, 3C]
    if (!cache && useBlockAttention(H)) {
      const [q, k, v] = tf.split(qkv, 3, 1) as tf.Tensor2D[]; // [B*T, C] each
      return tf.reshape(this.linear(blockAttention(q, k, v, B, T, H, mask), h + 'attn.c_proj'), [B, T, C]);
    }
    const [q, k, v] = tf.split(qkv, 3, 1).map(
      (t) => tf.transpose(tf.reshape(t, [B, T, H, D]), [0, 2, 1, 3]), // [B, H, T, D]
    );
    const kv = cache ? cache.extend(layer, k as tf.Tensor4D, v as tf.Tensor4D) : { k: k as tf.Tensor4D, v: v as tf.Tensor4D };
    const y = tf.transpose(causalAttention(q as tf.Tensor4D, kv.k, kv.v, mask), [0, 2, 1, 3]); // [B, T, H, D]
    return tf.reshape(this.linear(tf.reshape(y, [B * T, C]), h + 'attn.c_proj'), [B, T, C]);
  }

  private mlp(x: tf.Tensor3D, h: string): tf.Tensor3D {
    const [B, T, C] = x.shape;
    const a = this.linear(tf.reshape(x, [B * T, C]), h + 'mlp.c_fc'); // [B*T, 4C]
    return tf.reshape(this.linear(geluNew(a), h + 'mlp.c_proj'), [B, T, C]);
  }
}

/**
 * GPT-2's tanh approximation of GELU ("gelu_new" in transformers): 0.5 x (1 + tanh(u)), written as
 * x sigmoid(2u), the same function (1 + tanh(u) = 2 sigmoid(2u)) in fewer ops, and on tfjs's WASM
 * backend half the time forward and backward (8.6 against 16.1 ms for [1024, 512]; tanh is slow there).
 */
export function geluNew<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(x, tf.mul(x, x)))));
    return tf.mul(x, tf.sigmoid(tf.mul(2, inner))) as T;
  });
}

/** Checks a GPT-2 checkpoint's names, shapes and value counts. */
export function validateGPT2Weights(config: GPT2Config, weights: NamedWeights): void {
  validateWeights(gpt2ParamShapes(config), weights);
}

import * as tf from '@tensorflow/tfjs-core';
import { CausalLM, causalAttention, causalMask, type KVCache, type LinearModule, type ModelOptions, type NamedWeights } from './base';

/** Llama architecture; keys are Hugging Face `config.json` names (SmolLM, TinyLlama use the same). */
export interface LlamaConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
}

/** Names and shapes in Hugging Face's layout: nn.Linear weights are [out, in]. */
export function llamaParamShapes(c: LlamaConfig): [string, number[]][] {
  const C = c.hidden_size;
  const Q = c.num_attention_heads * c.head_dim;
  const KV = c.num_key_value_heads * c.head_dim;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocab_size, C]]];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    out.push(
      [p + 'input_layernorm.weight', [C]],
      [p + 'self_attn.q_proj.weight', [Q, C]],
      [p + 'self_attn.k_proj.weight', [KV, C]],
      [p + 'self_attn.v_proj.weight', [KV, C]],
      [p + 'self_attn.o_proj.weight', [C, Q]],
      [p + 'post_attention_layernorm.weight', [C]],
      [p + 'mlp.gate_proj.weight', [c.intermediate_size, C]],
      [p + 'mlp.up_proj.weight', [c.intermediate_size, C]],
      [p + 'mlp.down_proj.weight', [C, c.intermediate_size]],
    );
  }
  out.push(['model.norm.weight', [C]]);
  if (!c.tie_word_embeddings) out.push(['lm_head.weight', [c.vocab_size, C]]);
  return out;
}

/**
 * Llama as transformers' modeling_llama.py computes it: RMSNorm, rotary position embedding
 * with rotate-half, grouped-query attention, a SwiGLU MLP, and a tied or separate lm_head.
 */
export class Llama extends CausalLM {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly embeddingName = 'model.embed_tokens.weight';
  readonly hiddenSize: number;

  constructor(readonly config: LlamaConfig, weights: NamedWeights, opts: ModelOptions = {}) {
    super('llama', llamaParamShapes(config), weights, ['model.embed_tokens.weight', 'lm_head.weight'], opts);
    this.vocabSize = config.vocab_size;
    this.contextLength = config.max_position_embeddings;
    this.hiddenSize = config.hidden_size;
  }

  forward(ids: tf.Tensor2D, cache?: KVCache): tf.Tensor3D {
    const out = tf.tidy(() => {
      const c = this.config;
      const B = ids.shape[0];
      const start = cache?.length ?? 0;
      const input = this.inputs(ids, start); // [B*T, C]
      const T = input.T;
      let x = input.x;
      const { cos, sin } = ropeTables(T, c.head_dim, c.rope_theta, start);
      const mask = causalMask(T, start + T, start); // [T, start+T]
      for (let i = 0; i < c.num_hidden_layers; i++) {
        const p = `model.layers.${i}.`;
        x = tf.add(x, this.attention(this.rmsNorm(x, p + 'input_layernorm.weight'), p, B, T, cos, sin, mask, i, cache));
        x = tf.add(x, this.mlp(this.rmsNorm(x, p + 'post_attention_layernorm.weight'), p));
      }
      x = this.rmsNorm(x, 'model.norm.weight');
      const head = c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
      return this.dropVirtual(tf.reshape(this.projectOut(x, head), [B, T, c.vocab_size]) as tf.Tensor3D, input.skip); // [B, T, V]
    });
    cache?.commit();
    return out;
  }

  /** x * rsqrt(mean(x^2) + eps) * weight, over the last axis. x [N, C]. */
  private rmsNorm(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const ms = tf.mean(tf.square(x), -1, true); // [N, 1]
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, this.config.rms_norm_eps))), this.p(name));
  }

  /** nn.Linear without bias: x [N, in] @ weight[out, in]^T, plus a LoRA adapter's update if one is attached. */
  private linear(x: tf.Tensor2D, path: string): tf.Tensor2D {
    return this.adapt(path, x, this.weightProduct(x, path + '.weight', true));
  }

  linearModules(): LinearModule[] {
    const c = this.config;
    const C = c.hidden_size;
    const Q = c.num_attention_heads * c.head_dim;
    const KV = c.num_key_value_heads * c.head_dim;
    const I = c.intermediate_size;
    const out: LinearModule[] = [];
    for (let i = 0; i < c.num_hidden_layers; i++) {
      const p = `model.layers.${i}.`;
      out.push(
        { path: p + 'self_attn.q_proj', in: C, out: Q, conv1d: false },
        { path: p + 'self_attn.k_proj', in: C, out: KV, conv1d: false },
        { path: p + 'self_attn.v_proj', in: C, out: KV, conv1d: false },
        { path: p + 'self_attn.o_proj', in: Q, out: C, conv1d: false },
        { path: p + 'mlp.gate_proj', in: C, out: I, conv1d: false },
        { path: p + 'mlp.up_proj', in: C, out: I, conv1d: false },
        { path: p + 'mlp.down_proj', in: I, out: C, conv1d: false },
      );
    }
    return out;
  }

  /** LlamaForCausalLM's own module names already start at the model. */
  peftPath(path: string): string {
    return path;
  }

  private attention(
    x: tf.Tensor2D, p: string, B: number, T: number, cos: tf.Tensor2D, sin: tf.Tensor2D, mask: tf.Tensor2D, layer: number, cache?: KVCache,
  ): tf.Tensor2D {
    const { num_attention_heads: H, num_key_value_heads: KV, head_dim: D } = this.config;
    const heads = (t: tf.Tensor2D, n: number) => tf.transpose(tf.reshape(t, [B, T, n, D]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, n, T, D]
    const q = rope(heads(this.linear(x, p + 'self_attn.q_proj'), H), cos, sin);
    let k = rope(heads(this.linear(x, p + 'self_attn.k_proj'), KV), cos, sin);
    let v = heads(this.linear(x, p + 'self_attn.v_proj'), KV);
    // The cache keeps the KV heads un-repeated; the repeat happens per pass.
    if (cache) ({ k, v } = cache.extend(layer, k, v));
    if (KV !== H) {
      // Grouped-query attention: each key/value head serves H / KV query heads (repeat_interleave).
      k = repeatKV(k, H / KV);
      v = repeatKV(v, H / KV);
    }
    const y = tf.transpose(causalAttention(q, k, v, mask), [0, 2, 1, 3]); // [B, T, H, D]
    return this.linear(tf.reshape(y, [B * T, H * D]), p + 'self_attn.o_proj'); // [B*T, C]
  }

  private mlp(x: tf.Tensor2D, p: string): tf.Tensor2D {
    const gate = this.linear(x, p + 'mlp.gate_proj'); // [N, I]
    const silu = tf.mul(gate, tf.sigmoid(gate));
    return this.linear(tf.mul(silu, this.linear(x, p + 'mlp.up_proj')), p + 'mlp.down_proj'); // [N, C]
  }
}

/** cos and sin of position * inv_freq for positions offset .. offset+T-1, repeated for both halves: [T, D] each. */
export function ropeTables(T: number, D: number, theta: number, offset = 0): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const half = D / 2;
  const cos = new Float32Array(T * D);
  const sin = new Float32Array(T * D);
  for (let j = 0; j < half; j++) {
    // As torch computes it, in float32: 1 / theta^(2j / D).
    const invFreq = Math.fround(1 / Math.fround(theta ** Math.fround((2 * j) / D)));
    for (let t = 0; t < T; t++) {
      const a = Math.fround((offset + t) * invFreq);
      cos[t * D + j] = cos[t * D + j + half] = Math.cos(a);
      sin[t * D + j] = sin[t * D + j + half] = Math.sin(a);
    }
  }
  return { cos: tf.tensor2d(cos, [T, D]), sin: tf.tensor2d(sin, [T, D]) };
}

/** x * cos + rotate_half(x) * sin, where rotate_half(x) = [-x2, x1]. x [B, H, T, D]. */
function rope(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor4D {
  const [x1, x2] = tf.split(x, 2, 3);
  const rotated = tf.concat([tf.neg(x2), x1], 3);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
}

/** [B, KV, T, D] -> [B, KV * n, T, D], each head repeated n times in place. */
function repeatKV(x: tf.Tensor4D, n: number): tf.Tensor4D {
  const [B, KV, T, D] = x.shape;
  // Rank 4 throughout: tfjs has no gradient for a rank-5 tile.
  const tiled = tf.tile(tf.reshape(x, [B * KV, 1, T, D]), [1, n, 1, 1]); // [B*KV, n, T, D]
  return tf.reshape(tiled, [B, KV * n, T, D]);
}

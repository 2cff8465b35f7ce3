/**
 * Causal self-attention as plain 2-D products, for TensorFlow.js's WASM backend.
 *
 * tfjs's WASM kernel runs a batched product (one [T, D] @ [D, T] per sequence and head) at about
 * 3.6 GFLOP/s against 46 GFLOP/s for one plain 2-D product (measured, `npm run bench`), and
 * splitting the batch into single products costs more in slices than it saves. So each sequence's
 * heads go through together, as one 2-D product against a block-diagonal matrix:
 *
 *   S[t, (h, t')] = q[t, (h, d)] @ Kbd[(h, d), (h', t')]     where Kbd holds k_h^T on its diagonal
 *   y[t, (h', d)] = P[t, (h, t')] @ Vbd[(h, t'), (h', d)]     where Vbd holds v_h on its diagonal
 *
 * which computes H times the products needed (the off-diagonal blocks are zeros) at some 12 times
 * the speed: a gain while the heads are few (measured in the bench; GPT-2's 12 heads would lose).
 * Queries, keys and values stay in the rows layout [B*T, C] the linear layers give and take, so
 * no transposes are needed either. The result equals causalAttention's (tested, values and gradients).
 */
import * as tf from '@tensorflow/tfjs-core';
import { matMul } from './matmul';

/** Heads up to this many go block-diagonal on WASM; more would cost more than the batched kernel. */
export const BLOCK_ATTENTION_MAX_HEADS = 4;

export function useBlockAttention(heads: number): boolean {
  return tf.getBackend() === 'wasm' && heads <= BLOCK_ATTENTION_MAX_HEADS;
}

/** [1, C] masks, one per head: 1 on head h's D columns. Made on the CPU: a handful of numbers. */
function headMasks(H: number, D: number): tf.Tensor2D[] {
  return Array.from({ length: H }, (_, h) => tf.tensor2d(Array.from({ length: H * D }, (_, c) => (Math.floor(c / D) === h ? 1 : 0)), [1, H * D]));
}

/**
 * The block-diagonal [H*T, C] of x [T, C]: block h (rows h*T ..) holds x's head-h columns, zeros
 * elsewhere. Stacked by rows (a contiguous concat): tf.tile took 2.4 ms where this takes a fraction.
 */
function blockDiagonal(x: tf.Tensor2D, masks: tf.Tensor2D[]): tf.Tensor2D {
  return tf.concat(masks.map((m) => tf.mul(x, m)), 0) as tf.Tensor2D;
}

/**
 * Causal attention of B sequences of T positions: q, k, v [B*T, C] (C = H*D, head h in columns
 * h*D .. h*D+D-1), mask [T, T] additive. Returns y [B*T, C] in the same layout.
 */
export function blockAttention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, B: number, T: number, H: number, mask: tf.Tensor2D): tf.Tensor2D {
  const C = q.shape[1];
  const D = C / H;
  const masks = headMasks(H, D);
  const seq = (t: tf.Tensor2D) => (B === 1 ? [t] : tf.split(t, B, 0)) as tf.Tensor2D[]; // B x [T, C]
  const [qs, ks, vs] = [seq(q), seq(k), seq(v)];
  const causal = tf.reshape(mask, [T, 1, T]); // [T, 1, T]
  const ys = qs.map((qb, b) => {
    const kbd = blockDiagonal(ks[b], masks); // [H*T, C]: k_h in block h
    const vbd = blockDiagonal(vs[b], masks); // [H*T, C]: v_h in block h
    const scores = tf.mul(matMul(qb, kbd, false, true), 1 / Math.sqrt(D)); // [T, H*T]
    const p = tf.softmax(tf.add(tf.reshape(scores, [T, H, T]), causal)); // [T, H, T]
    return matMul(tf.reshape(p, [T, H * T]) as tf.Tensor2D, vbd); // [T, C]
  });
  return (B === 1 ? ys[0] : tf.concat(ys, 0)) as tf.Tensor2D; // [B*T, C]
}

/**
 * The frozen base of QLoRA-style training, held on the device in 8 or 4 bits per weight and
 * dequantized as it is used. Each weight matrix is split into blocks of 64 values with one
 * float32 absmax scale per block.
 * - 8 bits: linear absmax int8 (bitsandbytes' blockwise 8-bit uses a non-linear dynamic map).
 * - 4 bits: the NF4 code of the QLoRA paper (Dettmers et al., 2023): 16 levels placed at the
 *   quantiles of a normal distribution, scaled to [-1, 1], with an exact zero.
 * tfjs has no 8- or 4-bit tensors, so codes are packed into int32s, 24 bits to each (three bytes
 * or six nibbles): WebGPU's integer division goes through float32, exact only below 2^24.
 * Memory per weight: 8 bits, 4/3 byte; 4 bits, 2/3 byte; plus 4 bytes per block of 64; instead of 4 bytes.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors';
import type { CausalLM } from '../model/base';

export const QUANT_BLOCK = 64;

export type QuantBits = 8 | 4;

/** NF4 levels, as published with QLoRA (and used by bitsandbytes). */
export const NF4 = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** Codes packed per int32: 24 bits' worth, where float32 arithmetic on them is exact. */
export const codesPerInt = (bits: QuantBits) => 24 / bits;

export interface QuantizedTensor {
  bits: QuantBits;
  /** Codes, 24 bits to an int32, planar (int j holds codes j, j + P, ...; P ints): [P = ceil(blocks * 64 / codesPerInt)]. */
  packed: tf.Tensor1D;
  /** Per block: absmax / 127 (8 bits) or absmax (4 bits, NF4 spans [-1, 1]): [blocks]. */
  scales: tf.Tensor1D;
  shape: number[];
}

/** The NF4 level nearest to x (x in [-1, 1]). */
function nearestNF4(x: number): number {
  let best = 0;
  for (let k = 1; k < 16; k++) if (Math.abs(NF4[k] - x) < Math.abs(NF4[best] - x)) best = k;
  return best;
}

/** Blockwise absmax codes of a float32 array, packed 24 bits to an int32 (on the CPU, once). */
export function quantizeBlockwise(data: Float32Array, bits: QuantBits = 8, block = QUANT_BLOCK): { packed: Int32Array; scales: Float32Array } {
  const n = data.length;
  const blocks = Math.ceil(n / block);
  const scales = new Float32Array(blocks);
  const codes = new Uint8Array(blocks * block);
  for (let b = 0; b < blocks; b++) {
    let max = 0;
    for (let i = b * block; i < Math.min(n, (b + 1) * block); i++) max = Math.max(max, Math.abs(data[i]));
    const scale = (bits === 8 ? max / 127 : max) || 1;
    scales[b] = scale;
    for (let i = b * block; i < Math.min(n, (b + 1) * block); i++) {
      // 8 bits: offset binary, -127..127 stored as 1..255, so the way back is one subtraction.
      // (A weight that is not a number becomes 0, as before: the code of zero.)
      codes[i] = bits === 8 ? (Number.isFinite(data[i]) ? Math.round(data[i] / scale) + 128 : 128) : nearestNF4(data[i] / scale);
    }
    // Padding past n: the zero of each code (128, or NF4's 7); sliced off on the way back.
    for (let i = n; i < (b + 1) * block; i++) codes[i] = bits === 8 ? 128 : 7;
  }
  // Planar: int j holds codes j, j + P, j + 2P, ... (P ints), so unpacking is `per` whole-array
  // passes joined end to end. (Interleaved codes needed a stack on axis 1, which took 85% of a
  // dequantization on WASM: 115 of 135 ms for a 768 x 3072 matrix.)
  const per = codesPerInt(bits);
  const base = 2 ** bits;
  const P = Math.ceil(codes.length / per);
  const packed = new Int32Array(P);
  for (let i = 0; i < codes.length; i++) packed[i % P] += codes[i] * base ** Math.floor(i / P);
  return { packed, scales };
}

/** float32 values of a quantized tensor, on the device. */
export function dequantize(q: QuantizedTensor, block = QUANT_BLOCK): tf.Tensor {
  const n = q.shape.reduce((a, b) => a * b, 1);
  const per = codesPerInt(q.bits);
  const base = 2 ** q.bits;
  const blocks = q.scales.shape[0];
  // Step by step, each step letting go of what it read: at most about two arrays of the matrix's
  // size live at once (in one tidy, all six did: for GPT-2 small's 50,257 x 768 table, 0.9 GB).
  const then = (t: tf.Tensor, next: (x: tf.Tensor) => tf.Tensor): tf.Tensor => {
    const out = next(t);
    if (out !== t) t.dispose();
    return out;
  };
  // Digit k of every int (the lowest needs no division, the highest no remainder), end to end.
  let x = tf.tidy(() =>
    tf.concat(
      Array.from({ length: per }, (_, k) => {
        const shifted = k === 0 ? q.packed : tf.floorDiv(q.packed, tf.scalar(base ** k, 'int32'));
        return k === per - 1 ? shifted : tf.mod(shifted, tf.scalar(base, 'int32'));
      }),
      0,
    ),
  ); // [per * P], codes 0..base-1
  if (x.size !== blocks * block) x = then(x, (c) => tf.slice(c, [0], [blocks * block]));
  if (q.bits === 8) {
    x = then(x, (c) => tf.cast(c, 'float32'));
    x = then(x, (c) => tf.sub(c, 128)); // offset binary
  } else {
    x = then(x, (c) => tf.tidy(() => tf.gather(tf.tensor1d(NF4), c)));
  }
  x = then(x, (levels) => tf.tidy(() => tf.mul(tf.reshape(levels, [blocks, block]), tf.reshape(q.scales, [blocks, 1])))); // [blocks, 64]
  if (n !== blocks * block) x = then(x, (v) => tf.tidy(() => tf.slice(tf.reshape(v, [-1]), [0], [n])));
  return then(x, (v) => tf.reshape(v, q.shape));
}

/**
 * Rows of a quantized [rows, C] table, unpacked from the codes without unpacking the table: ids [N]
 * -> [N, C] float32 (an embedding lookup); ids must be in [0, rows). C must be a multiple of the
 * block (64), so each row's scales are whole blocks. The positions computed reach rows x C: exact
 * on the CPU and WASM backends, and on WebGPU and WebGL (whose int32 arithmetic is float32's) only
 * below 2^24, which the caller checks (CausalLM.embedTokens).
 */
export function dequantizeRows(q: QuantizedTensor, ids: tf.Tensor1D, block = QUANT_BLOCK): tf.Tensor2D {
  return tf.tidy(() => {
    const C = q.shape[1];
    const per = codesPerInt(q.bits);
    const base = 2 ** q.bits;
    const P = q.packed.shape[0];
    const col = tf.reshape(tf.range(0, C, 1, 'int32'), [1, C]); // [1, C]
    const row = tf.reshape(ids, [-1, 1]); // [N, 1]
    const flat = tf.add(tf.mul(row, tf.scalar(C, 'int32')), col); // [N, C]: where each value sits in the table
    // Planar packing: value i is digit floor(i / P) of int i mod P.
    let digit = tf.zerosLike(flat);
    for (let k = 1; k < per; k++) digit = tf.add(digit, tf.cast(tf.greaterEqual(flat, tf.scalar(k * P, 'int32')), 'int32'));
    const word = tf.gather(q.packed, tf.sub(flat, tf.mul(digit, tf.scalar(P, 'int32')))); // [N, C]
    const powers = tf.tensor1d(Int32Array.from({ length: per }, (_, k) => base ** k), 'int32');
    const code = tf.mod(tf.floorDiv(word, tf.gather(powers, digit)), tf.scalar(base, 'int32')); // [N, C]
    const levels = q.bits === 8 ? tf.sub(tf.cast(code, 'float32'), 128) : tf.gather(tf.tensor1d(NF4), code);
    const blockOf = tf.add(tf.mul(row, tf.scalar(C / block, 'int32')), tf.floorDiv(col, tf.scalar(block, 'int32'))); // [N, C]
    return tf.mul(levels, tf.gather(q.scales, blockOf)) as tf.Tensor2D;
  });
}

/**
 * Replaces the weight matrices of the model's linear layers, and its token embedding and output
 * tables, with blockwise 8- or 4-bit copies (the position embeddings and norms stay float32; a
 * table stays float32 when its width is not a multiple of 64, or when it is kept in row blocks
 * for a GPU's buffer limit). Returns the device bytes before and after.
 */
export async function quantizeBase(model: CausalLM, bits: QuantBits = 8): Promise<{ bytesBefore: number; bytesAfter: number }> {
  if (bits !== 8 && bits !== 4) throw new ConfigError(`the base can be held in 8 or 4 bits, not ${bits}`, { field: 'bits' });
  if (model.quantized.size) throw new ConfigError('the base is already quantized', { field: 'method' });
  const bytesBefore = tf.memory().numBytes;
  const tables = model.tableNames.filter((name) => (model.params.get(name)?.shape[1] ?? 1) % QUANT_BLOCK === 0);
  for (const name of [...model.linearModules().map((m) => `${m.path}.weight`), ...tables]) {
    const v = model.params.get(name);
    if (!v) continue;
    // Read back once, to quantize on the CPU.
    const { packed, scales } = quantizeBlockwise((await v.data()) as Float32Array, bits);
    model.quantized.set(name, { bits, packed: tf.tensor1d(packed, 'int32'), scales: tf.tensor1d(scales), shape: v.shape.slice() });
    model.params.delete(name);
    v.dispose();
  }
  return { bytesBefore, bytesAfter: tf.memory().numBytes };
}

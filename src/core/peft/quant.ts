/**
 * The frozen base of QLoRA-style training, held on the device in 8 bits: each weight matrix is
 * split into blocks of 64 values, each block stored as signed 8-bit integers with one float32
 * absmax scale (linear absmax int8; bitsandbytes' blockwise 8-bit uses a non-linear dynamic map
 * and larger blocks), and dequantized as it is used. tfjs has no
 * 8-bit tensors, so bytes are packed into int32s, three to each: WebGPU's integer division goes
 * through float32, exact only below 2^24, so a fourth byte would come back wrong. Memory is
 * 4/3 byte per weight plus 4 bytes per block of 64, instead of 4 bytes per weight.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors';
import type { CausalLM } from '../model/base';

export const QUANT_BLOCK = 64;

/** Bytes packed per int32: below 2^24, where float32 arithmetic on them is exact. */
export const BYTES_PER_INT = 3;

export interface QuantizedTensor {
  /** Three bytes (two's-complement int8) per int32, low byte first: [ceil(n / 3)]. */
  packed: tf.Tensor1D;
  /** absmax / 127 per block: [blocks]. */
  scales: tf.Tensor1D;
  shape: number[];
}

/** Blockwise absmax int8 of a float32 array, packed three to an int32 (on the CPU, once). */
export function quantizeBlockwise(data: Float32Array, block = QUANT_BLOCK): { packed: Int32Array; scales: Float32Array } {
  const n = data.length;
  const blocks = Math.ceil(n / block);
  const scales = new Float32Array(blocks);
  const bytes = new Uint8Array(blocks * block);
  for (let b = 0; b < blocks; b++) {
    let max = 0;
    for (let i = b * block; i < Math.min(n, (b + 1) * block); i++) max = Math.max(max, Math.abs(data[i]));
    const scale = max / 127 || 1;
    scales[b] = scale;
    for (let i = b * block; i < Math.min(n, (b + 1) * block); i++) bytes[i] = Math.round(data[i] / scale) & 0xff;
  }
  const packed = new Int32Array(Math.ceil(bytes.length / BYTES_PER_INT));
  for (let i = 0; i < bytes.length; i++) packed[Math.floor(i / BYTES_PER_INT)] += bytes[i] * 256 ** (i % BYTES_PER_INT);
  return { packed, scales };
}

/** float32 values of a quantized tensor, on the device. */
export function dequantize(q: QuantizedTensor, block = QUANT_BLOCK): tf.Tensor {
  return tf.tidy(() => {
    const n = q.shape.reduce((a, b) => a * b, 1);
    const parts = [0, 1, 2].map((k) => tf.mod(tf.floorDiv(q.packed, tf.scalar(256 ** k, 'int32')), tf.scalar(256, 'int32'))); // 3 x [P]
    const blocks = q.scales.shape[0];
    const unsigned = tf.slice(tf.reshape(tf.stack(parts, 1), [-1]), [0], [blocks * block]); // [blocks*64], 0..255
    const signed = tf.sub(unsigned, tf.mul(tf.cast(tf.greaterEqual(unsigned, tf.scalar(128, 'int32')), 'int32'), tf.scalar(256, 'int32')));
    const values = tf.mul(tf.reshape(tf.cast(signed, 'float32'), [blocks, block]), tf.reshape(q.scales, [blocks, 1])); // [blocks, 64]
    return tf.reshape(tf.slice(tf.reshape(values, [-1]), [0], [n]), q.shape);
  });
}

/**
 * Replaces the weight matrices of the model's linear layers with 8-bit blockwise copies (the
 * embeddings and norms stay float32). Returns the device bytes before and after.
 */
export async function quantizeBase(model: CausalLM): Promise<{ bytesBefore: number; bytesAfter: number }> {
  if (model.quantized.size) throw new ConfigError('the base is already quantized', { field: 'method' });
  const bytesBefore = tf.memory().numBytes;
  for (const m of model.linearModules()) {
    const name = `${m.path}.weight`;
    const v = model.params.get(name);
    if (!v) continue;
    // Read back once, to quantize on the CPU.
    const { packed, scales } = quantizeBlockwise((await v.data()) as Float32Array);
    model.quantized.set(name, { packed: tf.tensor1d(packed, 'int32'), scales: tf.tensor1d(scales), shape: v.shape.slice() });
    model.params.delete(name);
    v.dispose();
  }
  return { bytesBefore, bytesAfter: tf.memory().numBytes };
}

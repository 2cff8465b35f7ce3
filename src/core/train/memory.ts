/**
 * How much device memory a fine-tuning run needs, before it starts: the frozen or trained weights,
 * what is trained with its gradient and AdamW's two moments, and the activations one step keeps for
 * its backward pass. A sum of shapes, checked against TensorFlow.js's own peak (tf.profile) in the
 * tests, on a shape where activations take the memory and one where the weights do.
 */
import type { LinearModule } from '../model/base';

export type EstimateMethod = 'lora' | 'qlora' | 'full' | 'bitfit' | 'prompt';

export interface TuneShape {
  numParams: number;
  /** Parameters that are biases (what BitFit trains). */
  biasParams: number;
  /** Parameters of the linear layers (what QLoRA quantizes, with the embedding table when its width is whole blocks of 64). */
  linearParams: number;
  layers: number;
  hidden: number;
  heads: number;
  vocabSize: number;
  /** The widest inner layer of the MLP (4 x hidden in GPT-2, intermediate_size in Llama). */
  intermediate: number;
}

export interface TuneEstimateOptions {
  method: EstimateMethod;
  /** The linear layers LoRA adapts (its target_modules), with their shapes. */
  targets: LinearModule[];
  r: number;
  /** QLoRA's base precision. */
  bits: 8 | 4;
  virtualTokens: number;
  batch: number;
  block: number;
  /**
   * GPT-2's attention goes block-diagonal (src/core/model/attention.ts: WebAssembly, 4 heads or
   * fewer): faster there, and it keeps its heads' stacked keys and values for the backward pass.
   */
  blockAttention?: boolean;
}

export interface MemoryEstimate {
  /** The model's own weights as held on the device (quantized for QLoRA). */
  weights: number;
  trainable: number;
  /** Trained values' gradients and AdamW's two moments (and, for adapters, the values themselves). */
  training: number;
  activations: number;
  total: number;
  /** The largest activation of a step, in bytes: a GPU refuses buffers above its limit (weight tables are split to fit). */
  largest: { bytes: number; what: string };
}

const F32 = 4;
/** QLoRA's blocks of 64 values share one float32 scale. */
const QUANT_BLOCK = 64;

export function estimateTuneMemory(shape: TuneShape, o: TuneEstimateOptions): MemoryEstimate {
  const { numParams, layers, hidden, heads, vocabSize, intermediate } = shape;
  const { linearParams } = shape;
  // QLoRA holds the linear layers in 8 or 4 bits, and the token embedding table too when its width
  // is whole blocks (src/core/peft/quant.ts; an untied output table as well, not counted here).
  const quantized = linearParams + (hidden % QUANT_BLOCK === 0 ? vocabSize * hidden : 0);
  const weights = o.method === 'qlora' ? quantized * (o.bits / 8) + (quantized / QUANT_BLOCK) * F32 + (numParams - quantized) * F32 : numParams * F32;
  const trainable =
    o.method === 'full' ? numParams
    : o.method === 'bitfit' ? shape.biasParams
    : o.method === 'prompt' ? o.virtualTokens * hidden
    : o.targets.reduce((n, m) => n + o.r * (m.in + m.out), 0);
  // Full fine-tuning and BitFit train the weights already counted; adapters and prompts are new values too.
  const own = o.method === 'full' || o.method === 'bitfit' ? 0 : trainable * F32;
  const training = own + trainable * F32 * 3;
  const T = o.block + (o.method === 'prompt' ? o.virtualTokens : 0);
  const tokens = o.batch * T;
  // What TensorFlow.js holds at the peak of a step, per token: each op's output is a tensor of its
  // own (no fused kernels) and the backward pass adds the gradients. Fitted to tf.profile's peak on
  // nine GPT-2 shapes (layers 2-4, width 32-128, heads 2-8, vocabulary 256-2048, context 32-128;
  // within 1%): 238 x hidden per layer (here 38 x hidden + 50 x the MLP's width of 4 x hidden), 9 x
  // heads x T per layer for the attention scores and their softmax, and 2 x the vocabulary for the
  // logits and their gradient (the cross-entropy is one step: crossEntropy in src/core/model/base.ts;
  // as separate ops it kept 14). test/unit/memory.test.ts checks it against the real peak.
  // The block-diagonal attention keeps about 18 x heads x hidden more per token and layer (its
  // heads' stacked keys and values and their pieces; measured as above, on WebAssembly).
  const perLayer = 38 * hidden + 50 * intermediate + 9 * heads * T + (o.blockAttention ? 18 * heads * hidden : 0);
  const head = 2 * vocabSize;
  // A frozen weight is not kept from the forward pass to the backward (frozenProduct in
  // src/core/model/matmul.ts): QLoRA unpacks each of its weights for the product and again for the
  // backward pass, one at a time, never keeping it (kept from one pass to the other, they took 8.5
  // float32 copies of the base: 367 against 43 MB on the weights-dominated shape of the test).
  // Full fine-tuning: while the gradients are made, about 1.3 float32 copies of the model more (the
  // tied embedding's two gradients and their sum). The update goes one weight at a time.
  const gradients = o.method === 'full' ? 1.3 * numParams * F32 : 0;
  // Unpacking a quantized matrix holds about 3 float32-sized arrays of it at once (dequantize lets
  // each step's input go): the largest one (the embedding table, or the MLP's widest layer) sets that peak.
  const unpacking = o.method === 'qlora' ? 3 * Math.max(quantized - linearParams, intermediate * hidden) * F32 : 0;
  const activations = tokens * (layers * perLayer + head) * F32 + gradients + unpacking;
  const candidates: [number, string][] = [
    [tokens * vocabSize * F32, `the logits of one batch (${o.batch} × ${T} tokens × ${vocabSize.toLocaleString('en')} words)`],
    [o.batch * heads * T * T * F32, `the attention scores of one layer (${o.batch} × ${heads} heads × ${T} × ${T})`],
  ];
  const [bytes, what] = candidates.reduce((a, b) => (b[0] > a[0] ? b : a));
  return { weights, trainable, training, activations, total: weights + training + activations, largest: { bytes, what } };
}

/**
 * What `npm run bench` measures, on whichever backend is in use (chosen elsewhere): training steps
 * of LoRA, QLoRA and full fine-tuning on a random GPT-2 of a given shape, their FLOPs, the largest
 * plain matrix product the backend does (its peak), and generation with and without the KV cache.
 * Wall-clock figures for a report, never asserted by tests.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors';
import { resolveGPT2Config, resolveTrainConfig, type GPT2Config } from './config';
import { generate, SAMPLE_DEFAULTS, sampleToken } from './generate';
import { Rng } from './rng';
import { GPT2, initGPT2Weights } from './model/gpt2';
import { attachLora, resolveLoraConfig } from './peft/lora';
import { quantizeBase } from './peft/quant';
import { Trainer } from './train/trainer';

export type BenchMethod = 'lora' | 'qlora' | 'full';

export interface BenchShape {
  name: string;
  model: Pick<GPT2Config, 'vocab_size' | 'n_positions' | 'n_embd' | 'n_layer' | 'n_head'>;
  batch: number;
  block: number;
}

/** The shapes the bench knows: the reference (the bundled model's kind), GPT-2 small, and a tiny one for tests. */
export const BENCH_SHAPES: Record<string, BenchShape> = {
  default: { name: 'default', model: { vocab_size: 256, n_positions: 128, n_embd: 128, n_layer: 4, n_head: 4 }, batch: 8, block: 128 },
  small: { name: 'small', model: { vocab_size: 256, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 2 }, batch: 4, block: 64 },
  'gpt2-small': { name: 'gpt2-small', model: { vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12 }, batch: 1, block: 128 },
  tiny: { name: 'tiny', model: { vocab_size: 64, n_positions: 16, n_embd: 16, n_layer: 1, n_head: 2 }, batch: 2, block: 16 },
};

/** LoRA as the studio's defaults have it: r 8, alpha 16, on c_attn, no dropout (it would not change the work). */
export const BENCH_LORA = { r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: ['c_attn'] };

export interface TrainBenchOptions {
  shape: BenchShape;
  method: BenchMethod;
  warmup: number;
  steps: number;
  seed?: number;
}

export interface TrainBenchResult {
  shape: string;
  method: BenchMethod;
  backend: string;
  batch: number;
  block: number;
  params: number;
  trainable: number;
  warmup: number;
  stepsMs: number[];
  medianMs: number;
  tokensPerSec: number;
  /** Matrix-product FLOPs of one step (trainFlops). */
  flops: number;
  gflops: number;
  /** TensorFlow.js's peak bytes during one step (tf.profile), and what it held before it. */
  peakBytes: number;
  /** Bytes of the base model's weights as held (quantized for QLoRA), before adapters and training. */
  baseBytes: number;
  /** Tensors before the first timed step and after the last: equal when nothing leaks. */
  tensors: [number, number];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Model FLOPs of one training step of a GPT-2: its matrix products (2 per multiply-add), as the
 * model defines them (the MFU convention), not what a kernel path happens to do (the block-diagonal
 * attention on WASM does H times its products, counted once here); element-wise work is left out. Forward: every linear layer, the attention
 * scores and their weighted sum, the tied output projection. Backward: the gradient of every
 * product's input (the activations), and of the weight where it is trained: all of them for full
 * fine-tuning, the adapters' A and B for LoRA. The embedding's gather costs no product forward.
 */
export function trainFlops(model: BenchShape['model'], batch: number, block: number, method: BenchMethod, lora = BENCH_LORA): number {
  const N = batch * block;
  const C = model.n_embd;
  const L = model.n_layer;
  const linear = 2 * N * (C * 3 * C + C * C + 2 * C * 4 * C); // per layer, forward
  const attention = 2 * 2 * N * block * C; // QK^T and AV, per layer, forward
  const head = 2 * N * C * model.vocab_size;
  const full = method === 'full';
  // Backward: inputs' gradients always (the first layer's input is the embedding: counted, as its
  // gradient is needed for full fine-tuning and cheap next to the rest otherwise), weights' when trained.
  let flops = L * (linear * (full ? 3 : 2) + attention * 3) + head * (full ? 3 : 2);
  if (!full) {
    const targets = lora.target_modules;
    const widths: Record<string, [number, number]> = { c_attn: [C, 3 * C], 'attn.c_proj': [C, C], c_fc: [C, 4 * C], 'mlp.c_proj': [4 * C, C] };
    for (const [name, [i, o]] of Object.entries(widths)) {
      const hit = targets.some((t) => name === t || name.endsWith(`.${t}`) || (t === 'c_proj' && name.endsWith('c_proj')));
      // x A^T then (.) B^T forward; each has an input and a weight gradient backward.
      if (hit) flops += L * 3 * 2 * N * lora.r * (i + o);
    }
  }
  return flops;
}

/** A random GPT-2 of the shape, with the method attached: LoRA adapters, an 8-bit base for QLoRA. */
async function benchModel(shape: BenchShape, method: BenchMethod, seed: number): Promise<{ model: GPT2; baseBytes: number }> {
  const config = resolveGPT2Config(shape.model);
  const weights = initGPT2Weights(config, seed);
  const before = tf.memory().numBytes;
  const model = new GPT2(config, weights);
  if (method === 'qlora') await quantizeBase(model, 8);
  const baseBytes = tf.memory().numBytes - before;
  if (method !== 'full') {
    const lora = resolveLoraConfig('gpt2', BENCH_LORA);
    attachLora(model, lora, seed);
  }
  return { model, baseBytes };
}

/** Times `steps` training steps after `warmup`, each to completion (the trainer reads its loss back). */
export async function benchTrain(o: TrainBenchOptions): Promise<TrainBenchResult> {
  const { shape, method } = o;
  const seed = o.seed ?? 1;
  const { model, baseBytes } = await benchModel(shape, method, seed);
  const train = resolveTrainConfig(
    { steps: o.warmup + o.steps + 1, batch_size: shape.batch, block_size: shape.block, learning_rate: 1e-3, min_lr: 1e-4, warmup_steps: 0, seed },
    model.config,
  );
  const trainer = new Trainer(model, train);
  // Tokens drawn from the whole vocabulary: the work does not depend on the values.
  const tokens = new Int32Array(shape.batch * shape.block * 4 + 1).map((_, i) => (i * 7919 + 13) % shape.model.vocab_size);
  try {
    for (let i = 0; i < o.warmup; i++) await trainer.trainStep(tokens);
    const start = tf.memory().numTensors;
    const stepsMs: number[] = [];
    for (let i = 0; i < o.steps; i++) stepsMs.push((await trainer.trainStep(tokens)).stepMs);
    const end = tf.memory().numTensors;
    // One more step under tf.profile, for the peak (profiling slows it: not timed).
    const profile = await tf.profile(async () => {
      await trainer.trainStep(tokens);
    });
    const medianMs = median(stepsMs);
    const flops = trainFlops(shape.model, shape.batch, shape.block, method);
    let trainable = 0;
    for (const v of model.trainableParams().values()) trainable += v.size;
    return {
      shape: shape.name,
      method,
      backend: tf.getBackend(),
      batch: shape.batch,
      block: shape.block,
      params: model.numParams(),
      trainable,
      warmup: o.warmup,
      stepsMs,
      medianMs,
      tokensPerSec: (shape.batch * shape.block * 1000) / medianMs,
      flops,
      gflops: flops / medianMs / 1e6,
      peakBytes: profile.peakBytes,
      baseBytes,
      tensors: [start, end],
    };
  } finally {
    trainer.dispose();
    model.dispose();
  }
}

export interface MatmulBenchResult {
  n: number;
  backend: string;
  medianMs: number;
  gflops: number;
}

/** The backend's own peak: a plain float32 n x n product, median of `reps` after two warm-ups. */
export async function benchMatmul(n: number, reps = 5): Promise<MatmulBenchResult> {
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  const times: number[] = [];
  try {
    for (let i = 0; i < reps + 2; i++) {
      const t0 = performance.now();
      const c = tf.matMul(a, b);
      const corner = tf.slice(c, [0, 0], [1, 1]);
      try {
        // Read back: the product is done when its values are here (one value, so the copy is nothing).
        await corner.data();
      } finally {
        tf.dispose([c, corner]);
      }
      if (i >= 2) times.push(performance.now() - t0);
    }
  } finally {
    tf.dispose([a, b]);
  }
  const medianMs = median(times);
  return { n, backend: tf.getBackend(), medianMs, gflops: (2 * n ** 3) / medianMs / 1e6 };
}

export interface GenerateBenchResult {
  shape: string;
  backend: string;
  promptTokens: number;
  newTokens: number;
  /** With the KV cache (src/core/generate.ts): time to the first token, and new tokens per second after it. */
  cached: { firstTokenMs: number; tokensPerSec: number; totalMs: number };
  /** Without it: every token reads the whole sequence again. */
  uncached: { firstTokenMs: number; tokensPerSec: number; totalMs: number };
  speedup: number;
}

/** Greedy generation of `newTokens` after a prompt, with the KV cache and without, on a random model. */
export async function benchGenerate(shape: BenchShape, promptTokens: number, newTokens: number, seed = 1): Promise<GenerateBenchResult> {
  // Tokens per second are counted after the first: it takes two at least.
  if (!Number.isInteger(newTokens) || newTokens < 2) throw new ConfigError(`the generation bench needs 2 new tokens or more, got ${newTokens}`, { field: 'newTokens' });
  if (promptTokens + newTokens > shape.model.n_positions) {
    throw new ConfigError(`${promptTokens} + ${newTokens} tokens exceed the shape's context of ${shape.model.n_positions}`, { field: 'newTokens' });
  }
  const config = resolveGPT2Config(shape.model);
  const model = new GPT2(config, initGPT2Weights(config, seed));
  const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 31 + 7) % config.vocab_size);
  const timed = async (run: (onToken: () => void) => Promise<void>) => {
    const t0 = performance.now();
    let first = 0;
    await run(() => {
      if (!first) first = performance.now() - t0;
    });
    const totalMs = performance.now() - t0;
    return { firstTokenMs: first, totalMs, tokensPerSec: ((newTokens - 1) * 1000) / Math.max(1e-9, totalMs - first) };
  };
  // Without the cache: the whole sequence through the model for every token, the last row of
  // logits read back and the token picked on the CPU, as generate() does with the cache.
  const uncachedRun = async (count: number, onToken: () => void) => {
    const ids = [...prompt];
    for (let n = 0; n < count; n++) {
      const last = tf.tidy(() => {
        const logits = model.forward(tf.tensor2d(ids, [1, ids.length], 'int32')); // [1, T, V]
        return tf.reshape(tf.slice(logits, [0, ids.length - 1, 0], [1, 1, config.vocab_size]), [config.vocab_size]); // [V]
      });
      // Read back: the next token is needed on the CPU to build the next input.
      const row = (await last.data()) as Float32Array;
      last.dispose();
      ids.push(sampleToken(row, { ...SAMPLE_DEFAULTS, temperature: 0 }, rng));
      onToken();
    }
  };
  const rng = new Rng(seed);
  try {
    // A short warm-up of each path, so first-use costs (kernel set-up) are not counted.
    for await (const t of generate(model, prompt, { maxNewTokens: 2, temperature: 0 })) void t;
    await uncachedRun(2, () => undefined);
    const cached = await timed(async (onToken) => {
      for await (const t of generate(model, prompt, { maxNewTokens: newTokens, temperature: 0 })) {
        void t;
        onToken();
      }
    });
    const uncached = await timed((onToken) => uncachedRun(newTokens, onToken));
    return { shape: shape.name, backend: tf.getBackend(), promptTokens, newTokens, cached, uncached, speedup: cached.tokensPerSec / uncached.tokensPerSec };
  } finally {
    model.dispose();
  }
}

/** One measurement, by kind: what `npm run bench` asks of each backend (the browser's worker and Node's). */
export type MeasureRequest =
  | { kind: 'matmul'; n: number; reps?: number }
  | { kind: 'train'; shape: string; method: BenchMethod; warmup: number; steps: number }
  /** `context` widens the shape's positions (128 new tokens need more than the default's 128). */
  | { kind: 'generate'; shape: string; promptTokens: number; newTokens: number; context?: number };

/** A named bench shape, or a refusal that lists the known ones. */
export function benchShape(name: string): BenchShape {
  const shape = BENCH_SHAPES[name];
  if (!shape) throw new ConfigError(`no bench shape "${name}"; known: ${Object.keys(BENCH_SHAPES).join(', ')}`, { field: 'shape' });
  return shape;
}

export async function measure(req: MeasureRequest): Promise<Record<string, unknown> & { kind: MeasureRequest['kind'] }> {
  if (req.kind === 'matmul') return { kind: 'matmul', ...(await benchMatmul(req.n, req.reps)) };
  const shape = benchShape(req.shape);
  if (req.kind === 'train') return { kind: 'train', ...(await benchTrain({ shape, method: req.method, warmup: req.warmup, steps: req.steps })) };
  const s = req.context ? { ...shape, model: { ...shape.model, n_positions: req.context } } : shape;
  return { kind: 'generate', ...(await benchGenerate(s, req.promptTokens, req.newTokens)) };
}

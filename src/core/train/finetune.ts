/**
 * One fine-tuning run, top-down, shared by the worker and the command line: attach the method
 * to the base, measure general perplexity (the forgetting check), train with validation every N
 * steps and early stopping, keep the best weights, measure perplexity again.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TrainConfig } from '../config';
import { exampleSampler, packedSampler } from '../data/batch';
import type { TrainingData } from '../data/dataset';
import { ConfigError, DataError } from '../errors';
import type { CausalLM, NamedWeights } from '../model/base';
import { useBitFit } from '../peft/bitfit';
import { attachLora, trainableParameters, type LoraConfig } from '../peft/lora';
import { attachPromptTuning } from '../peft/prompt';
import { quantizeBase, type QuantBits } from '../peft/quant';
import { EarlyStopping, heldOutExampleLoss, heldOutLoss, type EvalPoint, type EvalVerdict } from './evaluate';
import { Trainer, type StepReport, type TrainerCheckpoint } from './trainer';

export type Method = 'lora' | 'qlora' | 'bitfit' | 'prompt' | 'full';
export const METHODS: Method[] = ['lora', 'qlora', 'bitfit', 'prompt', 'full'];

export interface MethodSpec {
  method: Method;
  /** LoRA and QLoRA. */
  lora: LoraConfig | null;
  /** Prompt tuning. */
  virtualTokens: number;
  /** QLoRA: bits of the frozen base (8, or 4 with the NF4 code). */
  bits: QuantBits;
}

export interface Attached {
  trainable: number;
  total: number;
  percent: number;
  quantized: { bits: QuantBits; bytesBefore: number; bytesAfter: number } | null;
}

/** Usual starting learning rates: adapters 2e-4, soft prompts far higher, whole models lower. */
export function defaultLearningRate(method: Method): number {
  return method === 'lora' || method === 'qlora' ? 2e-4 : method === 'prompt' ? 3e-2 : method === 'bitfit' ? 1e-3 : 5e-5;
}

/** Refuses, before any weight is read, a method that cannot fit the model's context. */
export function checkMethodFits(spec: Pick<MethodSpec, 'method' | 'virtualTokens'>, blockSize: number, contextLength: number): void {
  if (spec.method === 'prompt' && spec.virtualTokens + blockSize > contextLength) {
    throw new ConfigError(
      `${spec.virtualTokens} virtual tokens plus a block of ${blockSize} exceed the model's context of ${contextLength}; lower one of them`,
      { field: 'block_size' },
    );
  }
}

/** Attaches the method to a fresh base; what it makes trainable is counted as PEFT counts it. */
export async function attachMethod(model: CausalLM, spec: MethodSpec, blockSize: number, seed: number): Promise<Attached> {
  if (!METHODS.includes(spec.method)) throw new ConfigError(`method must be ${METHODS.join(', ')}; got "${spec.method}"`, { field: 'method' });
  if (model.tuned) {
    throw new ConfigError('this model was already fine-tuned; load the base again to start a new run from it', { field: 'model' });
  }
  checkMethodFits(spec, blockSize, model.contextLength);
  let quantized: Attached['quantized'] = null;
  if (spec.method === 'qlora') quantized = { bits: spec.bits, ...(await quantizeBase(model, spec.bits)) };
  if (spec.method === 'lora' || spec.method === 'qlora') {
    if (!spec.lora) throw new ConfigError('LoRA needs its settings (r, lora_alpha, target_modules)', { field: 'lora' });
    attachLora(model, spec.lora, seed);
  }
  if (spec.method === 'bitfit') useBitFit(model);
  if (spec.method === 'prompt') attachPromptTuning(model, spec.virtualTokens, seed);
  return { ...trainableParameters(model), quantized };
}

export interface WatchSpec {
  /** Validation every N steps (0: never). */
  evalEvery: number;
  /** Evaluations without an improvement of minDelta before stopping (0: never stop early). */
  patience: number;
  minDelta: number;
  /** General text whose perplexity is measured before and after: the cost of specialising. */
  forgetting: Int32Array | null;
  /** That perplexity on the base, measured before the method was attached (else measured here). */
  perplexityBefore?: number | null;
}

/** Perplexity of a model on general text: measure it on the base, before attachMethod. */
export async function perplexityOn(model: CausalLM, tokens: Int32Array, blockSize: number): Promise<number> {
  return Math.exp(await heldOutLoss(model, tokens, blockSize));
}

export interface EvalReport extends EvalPoint, EvalVerdict {
  best: EvalPoint;
}

export interface FinetuneHooks {
  onStep(r: StepReport): void | Promise<void>;
  onEval?(e: EvalReport): void | Promise<void>;
  shouldStop?(): boolean;
  /** Awaited before each step: a pause holds the run here (weights and optimizer state kept) until it resolves. */
  gate?(): Promise<void>;
  /** Checked before each step (and its gate): true saves a checkpoint now (a pause, a hidden tab). */
  wantsCheckpoint?(): boolean;
  /** Checkpoints: every `every` steps, when asked, and when the run ends or stops; written by the caller. */
  checkpoint?: { every: number; save(c: FinetuneCheckpoint): Promise<void> };
  /** The weights of a new best validation loss, for keeping the best checkpoint. */
  onBest?(weights: NamedWeights, point: EvalPoint): Promise<void>;
}

/** What watching the run has learned so far: restored with the trainer for an exact resume. */
export interface WatchState {
  history: EvalPoint[];
  best: EvalPoint | null;
  sinceBest: number;
  /** Training losses since the last evaluation (averaged into its point). */
  recent: number[];
  /** The forgetting check's perplexity before any training. */
  perplexityBefore: number | null;
}

export interface FinetuneCheckpoint {
  trainer: TrainerCheckpoint;
  watch: WatchState;
}

/** Where a resumed run starts: its checkpoint, and the weights of its best evaluation (if any). */
export interface FinetuneResume {
  from: FinetuneCheckpoint;
  bestWeights: NamedWeights | null;
}

export interface FinetuneOutcome {
  steps: number;
  evals: EvalPoint[];
  best: EvalPoint | null;
  /** Early stopping ended the run. */
  stoppedEarly: boolean;
  /** The caller asked it to stop. */
  cancelled: boolean;
  /** The best weights were put back (the last evaluation was not the best). */
  restoredBest: boolean;
  forgetting: { perplexityBefore: number; perplexityAfter: number } | null;
}

/** Throws, naming the part, when held-out data is missing or shorter than one block. */
export function checkHeldOut(data: TrainingData, part: 'validation' | 'test', blockSize: number): void {
  if (data.kind === 'tokens') {
    const t = data[part];
    if (!t || t.length < blockSize + 1) throw new DataError(`the ${part} part has ${t?.length ?? 0} tokens, fewer than one block of ${blockSize + 1}; hold out a larger fraction`, { field: `split.${part}` });
  } else if (!data[part]?.length) {
    throw new DataError(`there are no ${part} examples; hold out a fraction of the rows`, { field: `split.${part}` });
  }
}

/** Loss on held-out data of either kind. */
export async function dataLoss(model: CausalLM, data: TrainingData, part: 'validation' | 'test', blockSize: number, eos: number): Promise<number> {
  checkHeldOut(data, part, blockSize);
  if (data.kind === 'tokens') return heldOutLoss(model, data[part]!, blockSize, 32);
  return heldOutExampleLoss(model, data[part]!, blockSize, eos, data.completionOnly);
}

/** Trains an attached model; the trainer's state is released before it returns. */
export async function runFinetune(
  model: CausalLM,
  train: TrainConfig,
  data: TrainingData,
  eos: number,
  watch: WatchSpec,
  hooks: FinetuneHooks,
  resume: FinetuneResume | null = null,
): Promise<FinetuneOutcome> {
  if (data.kind === 'tokens' && data.train.length < train.block_size + 1) {
    throw new DataError(`the training text has ${data.train.length} tokens; training needs at least block_size + 1 = ${train.block_size + 1}`, { field: 'dataset' });
  }
  if (watch.evalEvery > 0) checkHeldOut(data, 'validation', train.block_size); // fail before training, not at the first evaluation
  const perplexity = async () => (watch.forgetting ? Math.exp(await heldOutLoss(model, watch.forgetting, train.block_size)) : null);
  // On the base, before the method was attached (the caller measures it then); a resumed run brings
  // the number measured before its first step.
  const before = resume ? resume.from.watch.perplexityBefore : (watch.perplexityBefore ?? (await perplexity()));
  const draw =
    data.kind === 'tokens'
      ? null
      : data.packing
        ? packedSampler(data.train, train.batch_size, train.block_size, eos, data.completionOnly, train.seed)
        : exampleSampler(data.train, train.batch_size, train.block_size, eos, data.completionOnly);
  const stopping = new EarlyStopping(watch.patience, watch.minDelta);
  const trainer = new Trainer(model, train);
  let best: Map<string, Float32Array> | null = null;
  let recent: number[] = [];
  if (resume) {
    try {
      trainer.restore(resume.from.trainer);
    } catch (e) {
      // A checkpoint that does not fit: the optimizer's moments must not stay on the device.
      trainer.dispose();
      throw e;
    }
    stopping.restore(resume.from.watch);
    recent = resume.from.watch.recent.slice();
    if (resume.bestWeights) best = new Map(Object.entries(resume.bestWeights).map(([k, w]) => [k, w.data]));
  }
  let savedStep = trainer.step;
  const save = async () => {
    if (!hooks.checkpoint || trainer.step === savedStep) return;
    const watchState: WatchState = { ...stopping.state(), recent: recent.slice(), perplexityBefore: before };
    await hooks.checkpoint.save({ trainer: await trainer.checkpoint(), watch: watchState });
    savedStep = trainer.step;
  };
  let stoppedEarly = false;
  let cancelled = false;
  try {
    while (trainer.step < train.steps) {
      if (hooks.wantsCheckpoint?.()) await save();
      await hooks.gate?.();
      if (hooks.shouldStop?.()) {
        cancelled = true;
        break;
      }
      const r = draw ? await trainer.trainOn(draw) : await trainer.trainStep((data as { train: Int32Array }).train);
      recent.push(r.loss);
      await hooks.onStep(r);
      if (watch.evalEvery > 0 && (r.step % watch.evalEvery === 0 || r.step === train.steps)) {
        const point: EvalPoint = { step: r.step, trainLoss: recent.reduce((a, b) => a + b, 0) / recent.length, valLoss: await dataLoss(model, data, 'validation', train.block_size, eos) };
        recent = [];
        const verdict = stopping.update(point);
        if (verdict.improved) {
          best = await snapshot(model);
          await hooks.onBest?.(named(model, best), point);
        }
        await hooks.onEval?.({ ...point, ...verdict, best: stopping.best! });
        if (verdict.stop) {
          stoppedEarly = true;
          break;
        }
      }
      if (hooks.checkpoint && r.step % hooks.checkpoint.every === 0) await save();
    }
    // The end, a stop or early stopping: what was trained is kept, before the best is put back.
    await save();
  } finally {
    trainer.dispose();
  }
  const last = stopping.history.at(-1);
  const restoredBest = !!(best && stopping.best && last && stopping.best.step !== last.step);
  if (restoredBest) restore(model, best!);
  const after = await perplexity();
  return {
    steps: trainer.step,
    evals: stopping.history,
    best: stopping.best,
    stoppedEarly,
    cancelled,
    restoredBest,
    forgetting: before !== null && after !== null ? { perplexityBefore: before, perplexityAfter: after } : null,
  };
}

/** The trainable weights read back to the CPU (a sync point, at improving evaluations only). */
async function snapshot(model: CausalLM): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, v] of model.trainableParams()) out.set(name, new Float32Array(await v.data()));
  return out;
}

function named(model: CausalLM, weights: Map<string, Float32Array>): NamedWeights {
  const out: NamedWeights = {};
  for (const [name, v] of model.trainableParams()) out[name] = { shape: v.shape.slice(), data: weights.get(name)! };
  return out;
}

function restore(model: CausalLM, weights: Map<string, Float32Array>): void {
  for (const [name, v] of model.trainableParams()) tf.tidy(() => v.assign(tf.tensor(weights.get(name)!, v.shape)));
}

import { ConfigError } from './errors';

/**
 * One typed config object per concern. Each field carries its default, its limits and the
 * help text that the UI form and the CLI show, so validation and documentation never drift.
 */
export interface FieldSpec {
  default: number;
  min: number;
  max: number;
  integer: boolean;
  help: string;
}

/** A setting that takes one of a few named values. */
export interface ChoiceSpec<C extends string = string> {
  default: C;
  choices: readonly C[];
  help: string;
}

export type Spec<T> = { [K in keyof T]: T[K] extends number ? FieldSpec : ChoiceSpec<T[K] & string> };

const isChoice = (f: FieldSpec | ChoiceSpec): f is ChoiceSpec => 'choices' in f;

/** GPT-2 architecture; keys are Hugging Face `config.json` names. */
export interface GPT2Config {
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  layer_norm_epsilon: number;
}

export const GPT2_SPEC: Spec<GPT2Config> = {
  vocab_size: { default: 256, min: 2, max: 1_000_000, integer: true, help: 'Number of tokens the model knows (256 for raw bytes).' },
  n_positions: { default: 64, min: 1, max: 32_768, integer: true, help: 'Longest context the model can see, in tokens.' },
  n_embd: { default: 32, min: 1, max: 16_384, integer: true, help: 'Width of every hidden vector; must be divisible by n_head.' },
  n_layer: { default: 2, min: 1, max: 256, integer: true, help: 'Number of transformer blocks.' },
  n_head: { default: 2, min: 1, max: 256, integer: true, help: 'Attention heads per block.' },
  layer_norm_epsilon: { default: 1e-5, min: 0, max: 1, integer: false, help: 'Added to the variance in LayerNorm to avoid division by zero.' },
};

/** The training loop's knobs (nanoGPT's names where it has them). */
export interface TrainConfig {
  optimizer: 'adamw' | 'sgd';
  lr_scheduler: 'cosine' | 'linear' | 'constant';
  momentum: number;
  grad_accum_steps: number;
  steps: number;
  batch_size: number;
  block_size: number;
  learning_rate: number;
  min_lr: number;
  warmup_steps: number;
  weight_decay: number;
  beta1: number;
  beta2: number;
  eps: number;
  grad_clip: number;
  checkpoint_every: number;
  seed: number;
}

export const TRAIN_SPEC: Spec<TrainConfig> = {
  optimizer: { default: 'adamw', choices: ['adamw', 'sgd'], help: 'AdamW (decoupled weight decay), or SGD with momentum.' },
  lr_scheduler: {
    default: 'cosine',
    choices: ['cosine', 'linear', 'constant'],
    help: 'How the learning rate moves after warmup: a cosine or a straight line down to min_lr, or constant.',
  },
  momentum: { default: 0.9, min: 0, max: 0.999_999, integer: false, help: 'SGD momentum (ignored by AdamW).' },
  grad_accum_steps: {
    default: 1, min: 1, max: 4096, integer: true,
    help: 'Micro-batches whose gradients are averaged into one step: a larger effective batch in the same memory.',
  },
  steps: { default: 40, min: 1, max: 1_000_000, integer: true, help: 'Total optimizer steps of the run; a resumed run continues until it reaches them.' },
  batch_size: { default: 8, min: 1, max: 4096, integer: true, help: 'Sequences per step.' },
  block_size: { default: 32, min: 2, max: 32_768, integer: true, help: 'Tokens per sequence; at most the model context (n_positions).' },
  learning_rate: { default: 3e-3, min: 0, max: 10, integer: false, help: 'Peak learning rate after warmup. Fine-tuning a pre-trained model wants far less than training from scratch.' },
  min_lr: { default: 3e-4, min: 0, max: 10, integer: false, help: 'Learning rate at the end of the cosine decay.' },
  warmup_steps: { default: 5, min: 0, max: 1_000_000, integer: true, help: 'Steps of linear warmup from zero to the peak learning rate.' },
  weight_decay: { default: 0.01, min: 0, max: 10, integer: false, help: 'AdamW decoupled weight decay, applied to matrices only (not biases or LayerNorm).' },
  beta1: { default: 0.9, min: 0, max: 0.999_999, integer: false, help: 'AdamW first-moment decay.' },
  beta2: { default: 0.99, min: 0, max: 0.999_999_9, integer: false, help: 'AdamW second-moment decay.' },
  eps: { default: 1e-8, min: 0, max: 1, integer: false, help: 'AdamW denominator epsilon.' },
  grad_clip: { default: 1, min: 0, max: 1e6, integer: false, help: 'Clip the global gradient norm to this value; 0 turns clipping off.' },
  checkpoint_every: { default: 5, min: 1, max: 1_000_000, integer: true, help: 'Save a checkpoint (weights, optimizer state, step) every this many steps, and at the end.' },
  seed: { default: 1337, min: 0, max: 2 ** 32 - 1, integer: true, help: 'Seed for weight init and batch order; the same seed gives the same run.' },
};

export function defaults<T>(spec: Spec<T>): T {
  const out = {} as Record<string, number | string>;
  for (const [k, f] of Object.entries(spec) as [string, FieldSpec | ChoiceSpec][]) out[k] = f.default;
  return out as T;
}

/** Fills defaults and checks every field; the error names the field and its section. */
export function resolveConfig<T>(spec: Spec<T>, section: string, partial: Partial<T> = {}): T {
  const out = defaults(spec) as Record<string, number | string>;
  for (const [k, v] of Object.entries(partial as Record<string, unknown>)) {
    if (v === undefined) continue;
    const f = (spec as Record<string, FieldSpec | ChoiceSpec>)[k];
    const field = `${section}.${k}`;
    if (!f) throw new ConfigError(`${field} is not a known setting`, { field });
    if (isChoice(f)) {
      if (typeof v !== 'string' || !f.choices.includes(v)) {
        throw new ConfigError(`${field} must be one of ${f.choices.join(', ')}, got ${JSON.stringify(v)}`, { field });
      }
      out[k] = v;
      continue;
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new ConfigError(`${field} must be a finite number, got ${JSON.stringify(v)}`, { field });
    }
    if (f.integer && !Number.isInteger(v)) throw new ConfigError(`${field} must be a whole number, got ${v}`, { field });
    if (v < f.min || v > f.max) throw new ConfigError(`${field} must be between ${f.min} and ${f.max}, got ${v}`, { field });
    out[k] = v;
  }
  return out as T;
}

export function resolveGPT2Config(partial: Partial<GPT2Config> = {}): GPT2Config {
  const c = resolveConfig(GPT2_SPEC, 'model', partial);
  if (c.n_embd % c.n_head !== 0) {
    throw new ConfigError(`model.n_embd (${c.n_embd}) must be divisible by model.n_head (${c.n_head})`, { field: 'model.n_embd' });
  }
  return c;
}

export function resolveTrainConfig(partial: Partial<TrainConfig>, model: Pick<GPT2Config, 'n_positions'>): TrainConfig {
  const c = resolveConfig(TRAIN_SPEC, 'train', partial);
  if (c.block_size > model.n_positions) {
    throw new ConfigError(
      `train.block_size (${c.block_size}) is longer than the model context model.n_positions (${model.n_positions})`,
      { field: 'train.block_size' },
    );
  }
  if (c.min_lr > c.learning_rate) {
    throw new ConfigError(`train.min_lr (${c.min_lr}) must not exceed train.learning_rate (${c.learning_rate})`, { field: 'train.min_lr' });
  }
  return c;
}

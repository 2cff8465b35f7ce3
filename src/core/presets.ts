import type { GPT2Config, TrainConfig } from './config';

export interface DemoPreset {
  label: string;
  help: string;
  model: Partial<GPT2Config>;
  train: Partial<TrainConfig>;
}

/**
 * The demo runs: a small GPT-2 with a byte vocabulary, trained from random weights on a few
 * kilobytes of public-domain text. `tiny` is sized for software WebGPU (SwiftShader) in tests.
 */
export const DEMO_PRESETS = {
  demo: {
    label: 'Demo GPT (2 layers, 32 wide)',
    help: 'About 36 thousand parameters; a few dozen steps take seconds on a GPU.',
    model: { vocab_size: 256, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 2 },
    train: { steps: 40, batch_size: 8, block_size: 32, learning_rate: 1e-2, min_lr: 1e-3, warmup_steps: 3, checkpoint_every: 5 },
  },
  tiny: {
    label: 'Tiny GPT (1 layer, 16 wide)',
    help: 'About 8 thousand parameters; for software renderers and tests.',
    model: { vocab_size: 256, n_positions: 16, n_embd: 16, n_layer: 1, n_head: 2 },
    train: { steps: 24, batch_size: 4, block_size: 16, learning_rate: 2e-2, min_lr: 2e-3, warmup_steps: 2, checkpoint_every: 4 },
  },
} satisfies Record<string, DemoPreset>;

export type PresetName = keyof typeof DEMO_PRESETS;

export function isPresetName(x: string): x is PresetName {
  return Object.prototype.hasOwnProperty.call(DEMO_PRESETS, x);
}

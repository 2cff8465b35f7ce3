/**
 * The Train form's presets, in a plain module (no runes) so that tests can read them too.
 */
import type { FinetuneMethod } from '../api/protocol';

/** The methods offered, with QLoRA's two base precisions as two choices. */
export type TuneChoice = FinetuneMethod | 'qlora4';

/**
 * Ready-made settings for the Fine-tune form. Quick demo: what the one-click demo runs;
 * Balanced: LoRA as most people run it; Careful: a low learning rate, validation and early stopping
 * to keep what the model knew.
 */
export const TUNE_PRESETS = {
  // The one-click demo's settings (public/samples/quick-demo.workshop.json; a test keeps them equal).
  quick: { label: 'Quick demo', help: 'LoRA r=16 on every linear layer, learning rate 3e-3, 600 steps of 16: what the one-click demo on Start runs', method: 'lora', targetModules: 'all-linear', steps: 600, learningRate: 3e-3, r: 16, batchSize: 16, blockSize: 32, validation: 0.05, evalEvery: 100, patience: 0 },
  balanced: { label: 'Balanced LoRA', help: 'LoRA r=16 on attention, learning rate 1e-3, 300 steps, validation every 25 steps', method: 'lora', targetModules: 'default', steps: 300, learningRate: 1e-3, r: 16, batchSize: 8, validation: 0.1, evalEvery: 25, patience: 4 },
  careful: { label: 'Careful: low learning rate, early stopping', help: 'LoRA r=8 on attention, learning rate 2e-4, up to 600 steps, stops when validation loss has not improved in 3 checks', method: 'lora', targetModules: 'default', steps: 600, learningRate: 2e-4, r: 8, batchSize: 8, validation: 0.1, evalEvery: 20, patience: 3 },
} as const satisfies Record<string, { label: string; help: string; method: TuneChoice; targetModules: 'default' | 'all-linear'; steps: number; learningRate: number; r: number; batchSize: number; blockSize?: number; validation: number; evalEvery: number; patience: number }>;
export type TunePresetName = keyof typeof TUNE_PRESETS;

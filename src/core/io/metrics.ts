/**
 * A run's metrics as CSV, one row per step, for spreadsheets and plotting tools: the step's loss,
 * learning rate, gradient norm, speed and device memory, and the validation loss where a check
 * was made at that step.
 */
export interface MetricStep {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  stepMs: number;
  numBytes: number;
}

export interface MetricEval {
  step: number;
  valLoss: number;
  trainLoss: number;
}

export const METRICS_HEADER = ['step', 'loss', 'learning_rate', 'grad_norm', 'tokens_per_sec', 'step_ms', 'device_bytes', 'val_loss', 'train_loss_since_last_check'];

export function metricsCsv(history: MetricStep[], evals: MetricEval[]): string {
  const byStep = new Map(evals.map((e) => [e.step, e]));
  const num = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '' : String(v));
  const rows = history.map((h) => {
    const e = byStep.get(h.step);
    return [h.step, h.loss, h.lr, h.gradNorm, h.tokensPerSec, h.stepMs, h.numBytes, e?.valLoss, e?.trainLoss].map((v) => num(v as number | undefined)).join(',');
  });
  return [METRICS_HEADER.join(','), ...rows].join('\n') + '\n';
}

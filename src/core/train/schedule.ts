/**
 * nanoGPT's get_lr with its 0-based iteration it = step - 1: linear warmup over warmup_steps,
 * the peak learning rate at the first step after warmup, then cosine decay reaching min_lr
 * at the last step. `step` counts from 1.
 */
export function learningRate(step: number, cfg: { learning_rate: number; min_lr: number; warmup_steps: number; steps: number }): number {
  const { learning_rate: lr, min_lr, warmup_steps, steps } = cfg;
  const it = step - 1;
  if (it < warmup_steps) return (lr * (it + 1)) / (warmup_steps + 1);
  const last = steps - 1;
  if (it >= last) return last > warmup_steps ? min_lr : lr;
  const ratio = (it - warmup_steps) / (last - warmup_steps);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio));
  return min_lr + coeff * (lr - min_lr);
}

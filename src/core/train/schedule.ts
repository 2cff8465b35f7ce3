/** nanoGPT's get_lr: linear warmup, then cosine decay to min_lr at the last step. `step` counts from 1. */
export function learningRate(step: number, cfg: { learning_rate: number; min_lr: number; warmup_steps: number; steps: number }): number {
  const { learning_rate: lr, min_lr, warmup_steps, steps } = cfg;
  if (step <= warmup_steps) return (lr * step) / (warmup_steps + 1);
  if (step >= steps) return min_lr;
  const ratio = (step - warmup_steps) / (steps - warmup_steps);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio));
  return min_lr + coeff * (lr - min_lr);
}

/**
 * The learning rate at a step (counting from 1), with nanoGPT's 0-based iteration it = step - 1:
 * linear warmup over warmup_steps, the peak right after it, then cosine (nanoGPT's get_lr) or
 * linear decay reaching min_lr at the last step, or the peak held (constant).
 */
export function learningRate(
  step: number,
  cfg: { learning_rate: number; min_lr: number; warmup_steps: number; steps: number; lr_scheduler?: 'cosine' | 'linear' | 'constant' },
): number {
  const { learning_rate: lr, min_lr, warmup_steps, steps } = cfg;
  const it = step - 1;
  if (it < warmup_steps) return (lr * (it + 1)) / (warmup_steps + 1);
  if (cfg.lr_scheduler === 'constant') return lr;
  const last = steps - 1;
  if (it >= last) return last > warmup_steps ? min_lr : lr;
  const ratio = (it - warmup_steps) / (last - warmup_steps);
  const coeff = cfg.lr_scheduler === 'linear' ? 1 - ratio : 0.5 * (1 + Math.cos(Math.PI * ratio));
  return min_lr + coeff * (lr - min_lr);
}

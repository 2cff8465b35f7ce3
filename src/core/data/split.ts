/**
 * Train / validation / test splits with a seeded shuffle: the same seed and fractions give the
 * same split on every machine, so a run can be reproduced from its saved settings. With labels,
 * each label is split on its own (stratified), so a rare class reaches every part.
 */
import { ConfigError } from '../errors';
import { Rng } from '../rng';

export interface SplitSpec {
  validation: number;
  test: number;
  seed: number;
}

export interface SplitIndices {
  train: number[];
  validation: number[];
  test: number[];
}

export function checkSplit(spec: SplitSpec): void {
  for (const k of ['validation', 'test'] as const) {
    const v = spec[k];
    if (!Number.isFinite(v) || v < 0 || v >= 1) throw new ConfigError(`the ${k} fraction must be at least 0 and below 1, got ${v}`, { field: `split.${k}` });
  }
  if (spec.validation + spec.test >= 1) throw new ConfigError(`validation ${spec.validation} + test ${spec.test} leave nothing to train on`, { field: 'split.validation' });
}

/** Indices 0..n-1 split by the spec; `labels` (one per index) stratifies. */
export function splitIndices(n: number, spec: SplitSpec, labels?: string[]): SplitIndices {
  checkSplit(spec);
  const rng = new Rng(spec.seed ^ 0x2545f491);
  const groups = new Map<string, number[]>();
  for (let i = 0; i < n; i++) {
    const k = labels ? labels[i] : '';
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(i);
  }
  const out: SplitIndices = { train: [], validation: [], test: [] };
  const keys = [...groups.keys()].sort();
  for (const key of keys) {
    const idx = groups.get(key)!;
    for (let i = idx.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
  }
  // Shares per label by largest remainder, so the parts add up to the fractions of the whole even
  // with many small labels (rounding each label alone can leave validation empty).
  const sizes = keys.map((k) => groups.get(k)!.length);
  const nVal = apportion(sizes, Math.round(n * spec.validation));
  const nTest = apportion(sizes.map((size, g) => size - nVal[g]), Math.round(n * spec.test));
  keys.forEach((key, g) => {
    const idx = groups.get(key)!;
    for (let i = 0; i < idx.length; i++) (i < nVal[g] ? out.validation : i < nVal[g] + nTest[g] ? out.test : out.train).push(idx[i]);
  });
  // Back in file order within each part: the shuffle decides membership, the trainer decides order.
  for (const part of Object.values(out)) part.sort((a: number, b: number) => a - b);
  return out;
}

/** `total` whole units shared in proportion to `sizes` (largest remainder); never more than a size. */
function apportion(sizes: number[], total: number): number[] {
  const all = sizes.reduce((a, b) => a + b, 0);
  if (all === 0) return sizes.map(() => 0);
  const exact = sizes.map((s) => (s * total) / all);
  const out = exact.map(Math.floor);
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((e, g) => [e - Math.floor(e), g] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, g] of order) {
    if (left <= 0) break;
    if (out[g] < sizes[g]) {
      out[g]++;
      left--;
    }
  }
  return out;
}

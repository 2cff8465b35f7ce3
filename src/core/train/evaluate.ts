/**
 * Watching a run from outside the training batches: loss and perplexity on held-out text,
 * early stopping with patience and a minimum improvement, and the overfitting signal
 * (validation loss rising while training loss falls).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CausalLM } from '../model/base';
import { exampleBatch, type ExampleList } from '../data/batch';

/**
 * Mean next-token loss over consecutive, non-overlapping windows of a token stream (every token
 * predicted at most once), at most `maxWindows` of them, `batch` windows per pass.
 */
export async function heldOutLoss(model: CausalLM, tokens: Int32Array, blockSize: number, maxWindows = 64, batch = 8): Promise<number> {
  const windows = Math.min(maxWindows, Math.floor((tokens.length - 1) / blockSize));
  if (windows < 1) throw new RangeError(`held-out text has ${tokens.length} tokens, fewer than one window of ${blockSize + 1}`);
  let total = 0;
  for (let w0 = 0; w0 < windows; w0 += batch) {
    const n = Math.min(batch, windows - w0);
    const ids = new Int32Array(n * blockSize);
    const targets = new Int32Array(n * blockSize);
    for (let b = 0; b < n; b++) {
      const s = (w0 + b) * blockSize;
      ids.set(tokens.subarray(s, s + blockSize), b * blockSize);
      targets.set(tokens.subarray(s + 1, s + 1 + blockSize), b * blockSize);
    }
    const loss = tf.tidy(() => model.loss(tf.tensor2d(ids, [n, blockSize], 'int32'), tf.tensor2d(targets, [n, blockSize], 'int32')));
    // Read back: the caller wants a number; one read per batch of windows.
    total += (await loss.data())[0] * n;
    loss.dispose();
  }
  return total / windows;
}

export interface EvalPoint {
  step: number;
  trainLoss: number;
  valLoss: number;
}

export interface EvalVerdict {
  /** Better than the best so far by at least minDelta. */
  improved: boolean;
  /** patience evaluations in a row without improvement. */
  stop: boolean;
  /** Validation loss rose at the last two evaluations while training loss fell. */
  overfitting: boolean;
}

export class EarlyStopping {
  best: EvalPoint | null = null;
  readonly history: EvalPoint[] = [];
  private sinceBest = 0;

  /** patience 0 never stops (the best is still tracked). */
  constructor(readonly patience: number, readonly minDelta: number) {}

  /** What a resumed run needs to stop exactly when the uninterrupted one would. */
  state(): { history: EvalPoint[]; best: EvalPoint | null; sinceBest: number } {
    return { history: this.history.slice(), best: this.best, sinceBest: this.sinceBest };
  }

  restore(s: { history: EvalPoint[]; best: EvalPoint | null; sinceBest: number }): void {
    this.history.splice(0, this.history.length, ...s.history);
    this.best = s.best;
    this.sinceBest = s.sinceBest;
  }

  update(p: EvalPoint): EvalVerdict {
    this.history.push(p);
    const improved = this.best === null || p.valLoss < this.best.valLoss - this.minDelta;
    if (improved) {
      this.best = p;
      this.sinceBest = 0;
    } else {
      this.sinceBest += 1;
    }
    const h = this.history;
    const n = h.length;
    const overfitting =
      n >= 3 && h[n - 1].valLoss > h[n - 2].valLoss && h[n - 2].valLoss > h[n - 3].valLoss && h[n - 1].trainLoss < h[n - 3].trainLoss;
    return { improved, stop: this.patience > 0 && this.sinceBest >= this.patience, overfitting };
  }
}

/**
 * Mean loss per counted position over held-out examples (at most `maxExamples`), weighted as in
 * training: completion-only masks the prompts, padding never counts.
 */
export async function heldOutExampleLoss(
  model: CausalLM,
  examples: ExampleList,
  blockSize: number,
  eos: number,
  completionOnly: boolean,
  maxExamples = 256,
  batch = 8,
): Promise<number> {
  const n = Math.min(maxExamples, examples.length);
  if (n < 1) throw new RangeError('there are no held-out examples');
  let total = 0;
  let counted = 0;
  for (let e0 = 0; e0 < n; e0 += batch) {
    const part = Array.from({ length: Math.min(n, e0 + batch) - e0 }, (_, k) => examples.get(e0 + k));
    const b = exampleBatch(part, blockSize, eos, completionOnly);
    const count = b.weights!.reduce((a, w) => a + w, 0);
    if (!count) continue;
    const loss = tf.tidy(() =>
      model.loss(tf.tensor2d(b.ids, [b.batchSize, b.blockSize], 'int32'), tf.tensor2d(b.targets, [b.batchSize, b.blockSize], 'int32'), tf.tensor2d(b.weights!, [b.batchSize, b.blockSize])),
    );
    // Read back: one per batch of examples.
    total += (await loss.data())[0] * count;
    counted += count;
    loss.dispose();
  }
  return total / counted;
}

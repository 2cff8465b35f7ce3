import { DataError } from '../errors';
import type { Rng } from '../rng';

export interface Batch {
  ids: Int32Array; // [B * T]
  targets: Int32Array; // [B * T], ids shifted by one
  /** [B * T]: 1 where the prediction counts in the loss, 0 where not; absent means all count. */
  weights?: Float32Array;
  batchSize: number;
  blockSize: number;
}

/** Token ids: an array, or a view into a larger block of them. */
export type Ids = number[] | Int32Array;

export interface Example {
  prompt: Ids;
  completion: Ids;
}

/**
 * One example per row: prompt, completion and EOS, padded to the block. The EOS is part of what
 * is learned (or the model never learns to stop); padding is masked by position, so it may reuse
 * the EOS id, as GPT-2 (which has no pad token) needs. With completionOnly, the prompt's
 * predictions are masked too. Examples longer than the block are cut from the left of the prompt.
 */
export function exampleBatch(examples: Example[], blockSize: number, eos: number, completionOnly: boolean, pad = eos): Batch {
  const B = examples.length;
  const T = blockSize;
  const ids = new Int32Array(B * T).fill(pad);
  const targets = new Int32Array(B * T).fill(pad);
  const weights = new Float32Array(B * T);
  examples.forEach((ex, b) => {
    let seq = [...ex.prompt, ...ex.completion, eos];
    let promptLen = ex.prompt.length;
    if (seq.length > T + 1) {
      const cut = seq.length - (T + 1);
      seq = seq.slice(cut);
      promptLen = Math.max(0, promptLen - cut);
    }
    for (let t = 0; t + 1 < seq.length; t++) {
      ids[b * T + t] = seq[t];
      targets[b * T + t] = seq[t + 1];
      // Predicting token t+1: it counts when it is in the completion (or the EOS), or always without completionOnly.
      weights[b * T + t] = !completionOnly || t + 1 >= promptLen ? 1 : 0;
    }
  });
  return { ids, targets, weights, batchSize: B, blockSize: T };
}

/** Checks that a token stream can give at least one training window; the message names the source. */
export function checkTokens(tokens: Int32Array, blockSize: number, source: string): void {
  if (tokens.length < blockSize + 1) {
    throw new DataError(
      `${source} has ${tokens.length} tokens; training needs at least block_size + 1 = ${blockSize + 1}`,
      { file: source },
    );
  }
}

/** Random windows of a token stream, as nanoGPT's get_batch draws them, from a seeded generator. */
export function sampleBatch(tokens: Int32Array, batchSize: number, blockSize: number, rng: Rng): Batch {
  const ids = new Int32Array(batchSize * blockSize);
  const targets = new Int32Array(batchSize * blockSize);
  const starts = tokens.length - blockSize; // window start in [0, starts)
  for (let b = 0; b < batchSize; b++) {
    const s = rng.int(starts);
    ids.set(tokens.subarray(s, s + blockSize), b * blockSize);
    targets.set(tokens.subarray(s + 1, s + 1 + blockSize), b * blockSize);
  }
  return { ids, targets, batchSize, blockSize };
}

/** An example with the line of the file it came from (for reports). */
export interface LineExample extends Example {
  line: number;
}

/**
 * Batches of examples drawn at random (with replacement) by the trainer's seeded generator, so
 * a checkpoint's generator state is all a resumed run needs to draw the same batches.
 */
export function exampleSampler(examples: Example[], batchSize: number, blockSize: number, eos: number, completionOnly: boolean): (rng: Rng) => Batch {
  if (!examples.length) throw new DataError('there are no examples to train on', { field: 'dataset' });
  return (rng) => exampleBatch(Array.from({ length: batchSize }, () => examples[rng.int(examples.length)]), blockSize, eos, completionOnly);
}

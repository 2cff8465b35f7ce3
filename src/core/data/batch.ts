import { DataError } from '../errors';
import type { Rng } from '../rng';

export interface Batch {
  ids: Int32Array; // [B * T]
  targets: Int32Array; // [B * T], ids shifted by one
  batchSize: number;
  blockSize: number;
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

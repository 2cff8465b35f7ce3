import { DataError } from '../errors';
import { Rng } from '../rng';

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

/** Examples by position: an array, or a compact store that makes each one on demand. */
export interface ExampleList {
  readonly length: number;
  get(i: number): LineExample;
}

/** An array of examples as an ExampleList. */
export function listOf(examples: LineExample[]): ExampleList {
  return { length: examples.length, get: (i) => examples[i] };
}

/** Every example of a list, as an array (for small lists: tests, reports). */
export function toArray(list: ExampleList): LineExample[] {
  return Array.from({ length: list.length }, (_, i) => list.get(i));
}

/** The examples at some positions of a list (a split's part). */
export function subset(list: ExampleList, indices: ArrayLike<number>): ExampleList {
  return { length: indices.length, get: (i) => list.get(indices[i]) };
}

/**
 * Tokenized examples kept compactly: all ids in large shared blocks, and per example four
 * numbers in typed arrays (block, offset, prompt and completion lengths, line), so a million
 * rows cost some tens of megabytes, not a million objects. Views are made when an example is read.
 */
export class ExampleStore implements ExampleList {
  private static readonly BLOCK = 1 << 22; // ids per block (16 MiB)
  private blocks: Int32Array[] = [];
  private used = ExampleStore.BLOCK;
  private meta = new Int32Array(5 * 1024); // [block, offset, promptLen, completionLen, line] per example
  length = 0;

  add(line: number, prompt: number[], completion: number[]): void {
    const n = prompt.length + completion.length;
    if (this.used + n > (this.blocks.at(-1)?.length ?? 0)) {
      this.blocks.push(new Int32Array(Math.max(ExampleStore.BLOCK, n)));
      this.used = 0;
    }
    const block = this.blocks.at(-1)!;
    block.set(prompt, this.used);
    block.set(completion, this.used + prompt.length);
    if ((this.length + 1) * 5 > this.meta.length) {
      const grown = new Int32Array(this.meta.length * 2);
      grown.set(this.meta);
      this.meta = grown;
    }
    this.meta.set([this.blocks.length - 1, this.used, prompt.length, completion.length, line], this.length * 5);
    this.used += n;
    this.length++;
  }

  get(i: number): LineExample {
    const m = this.meta.subarray(i * 5, i * 5 + 5);
    const block = this.blocks[m[0]];
    return { line: m[4], prompt: block.subarray(m[1], m[1] + m[2]), completion: block.subarray(m[1] + m[2], m[1] + m[2] + m[3]) };
  }
}

/** Padded lengths are multiples of this: few distinct shapes, so compiled GPU programs are reused. */
export const PAD_MULTIPLE = 16;

/**
 * One example per row: prompt, completion and EOS, padded to the longest in the batch (rounded
 * up to a multiple of 16, at most the block). The EOS is part of what is learned (or the model
 * never learns to stop); padding is masked by position, so it may reuse the EOS id, as GPT-2
 * (which has no pad token) needs. With completionOnly, the prompt's predictions are masked too.
 * Examples longer than the block are cut from the left of the prompt.
 */
export function exampleBatch(examples: Example[], blockSize: number, eos: number, completionOnly: boolean, pad = eos): Batch {
  const B = examples.length;
  const longest = examples.reduce((m, e) => Math.max(m, e.prompt.length + e.completion.length), 1); // positions: tokens + EOS - 1
  const T = Math.min(blockSize, Math.ceil(longest / PAD_MULTIPLE) * PAD_MULTIPLE);
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

/**
 * Random windows of a token stream, as nanoGPT's get_batch draws them, from a seeded generator;
 * with `counts` (one per token, as a target), the batch carries loss weights.
 */
export function sampleBatch(tokens: Int32Array, batchSize: number, blockSize: number, rng: Rng, counts?: Float32Array): Batch {
  const ids = new Int32Array(batchSize * blockSize);
  const targets = new Int32Array(batchSize * blockSize);
  const weights = counts ? new Float32Array(batchSize * blockSize) : undefined;
  const starts = tokens.length - blockSize; // window start in [0, starts)
  for (let b = 0; b < batchSize; b++) {
    const s = rng.int(starts);
    ids.set(tokens.subarray(s, s + blockSize), b * blockSize);
    targets.set(tokens.subarray(s + 1, s + 1 + blockSize), b * blockSize);
    if (weights) weights.set(counts!.subarray(s + 1, s + 1 + blockSize), b * blockSize);
  }
  return { ids, targets, weights, batchSize, blockSize };
}

/** An example with the line of the file it came from (for reports). */
export interface LineExample extends Example {
  line: number;
}

/**
 * Sequence packing: the examples, each followed by EOS, laid end to end in a seeded order, and
 * windows of the block drawn from that stream as from plain text, so no position is padding.
 * With completionOnly the prompts' tokens stay masked as targets. Attention is not reset at
 * example boundaries (as in TRL's packing without position-id resets).
 */
export function packedSampler(list: ExampleList | Example[], batchSize: number, blockSize: number, eos: number, completionOnly: boolean, seed: number): (rng: Rng) => Batch {
  const examples = asList(list);
  const order = Array.from({ length: examples.length }, (_, i) => i);
  const shuffle = new Rng(seed ^ 0x9e3779b9);
  for (let i = order.length - 1; i > 0; i--) {
    const j = shuffle.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  let total = 0;
  for (let i = 0; i < examples.length; i++) {
    const e = examples.get(i);
    total += e.prompt.length + e.completion.length + 1;
  }
  if (total < blockSize + 1) {
    throw new DataError(`packed, the examples make ${total} tokens; training needs at least block_size + 1 = ${blockSize + 1}`, { field: 'packing' });
  }
  const tokens = new Int32Array(total);
  // counts[k]: whether token k, as a target, counts in the loss.
  const counts = new Float32Array(total);
  let at = 0;
  for (const i of order) {
    const e = examples.get(i);
    tokens.set(e.prompt, at);
    if (!completionOnly) counts.fill(1, at, at + e.prompt.length);
    at += e.prompt.length;
    tokens.set(e.completion, at);
    counts.fill(1, at, at + e.completion.length + 1);
    at += e.completion.length;
    tokens[at++] = eos;
  }
  return (rng) => {
    // A batch whose windows all fall on prompts teaches nothing: draw again (a few times at most).
    for (let tries = 0; ; tries++) {
      const b = sampleBatch(tokens, batchSize, blockSize, rng, counts);
      if (tries >= 8 || b.weights!.some((w) => w > 0)) return b;
    }
  };
}

/**
 * Batches of examples drawn at random (with replacement) by the trainer's seeded generator, so
 * a checkpoint's generator state is all a resumed run needs to draw the same batches.
 */
export function exampleSampler(list: ExampleList | Example[], batchSize: number, blockSize: number, eos: number, completionOnly: boolean): (rng: Rng) => Batch {
  const examples = asList(list);
  if (!examples.length) throw new DataError('there are no examples to train on', { field: 'dataset' });
  return (rng) => exampleBatch(Array.from({ length: batchSize }, () => examples.get(rng.int(examples.length))), blockSize, eos, completionOnly);
}

function asList(list: ExampleList | Example[]): ExampleList {
  return Array.isArray(list) ? listOf(list.map((e, i) => ({ line: i + 1, ...e }))) : list;
}

/**
 * What the model writes, watched while it learns: greedy continuations of fixed prompts at steps of
 * a run (greedy, so a change between two steps is the model's alone), and the exact-match score of
 * generated answers against the completions of held-out examples.
 */
import type { ExampleList } from '../data/batch';
import type { TrainingData } from '../data/dataset';
import { generate } from '../generate';
import type { CausalLM } from '../model/base';

export interface SamplePrompt {
  /** As shown: the prompt's tokens decoded. */
  text: string;
  ids: number[];
}

/** The model's most likely continuation of a prompt, until a stop id or the budget. */
export async function greedyIds(model: CausalLM, prompt: number[], maxNewTokens: number, stopIds: number[]): Promise<number[]> {
  const room = model.contextLength - prompt.length - 1;
  const out: number[] = [];
  // No prompt, or no room after it: no answer (counted wrong, not an error).
  if (room < 1 || prompt.length === 0) return out;
  for await (const t of generate(model, prompt, { maxNewTokens: Math.min(maxNewTokens, room), temperature: 0, stopIds })) {
    if (t.done === 'stop') break;
    out.push(t.id);
  }
  return out;
}

/**
 * Prompts to watch when the person gave none: the prompts of the first held-out examples (or of
 * training ones), or the first tokens of the held-out text: what the run is meant to change.
 */
export function defaultSamplePrompts(data: TrainingData, decode: (ids: number[]) => string, count = 2, textTokens = 8): SamplePrompt[] {
  if (data.kind === 'tokens') {
    const from = data.validation && data.validation.length > textTokens ? data.validation : data.train;
    const ids = Array.from(from.subarray(0, textTokens));
    return ids.length ? [{ text: decode(ids), ids }] : [];
  }
  const list = data.validation && data.validation.length ? data.validation : data.train;
  const out: SamplePrompt[] = [];
  for (let i = 0; i < list.length && out.length < count; i++) {
    const ids = Array.from(list.get(i).prompt);
    if (ids.length) out.push({ text: decode(ids), ids });
  }
  return out;
}

export interface ExactMatch {
  correct: number;
  total: number;
  /** correct / total. */
  rate: number;
  /** The first few answers, right or wrong, to show. */
  examples: { prompt: string; expected: string; got: string; ok: boolean }[];
}

/**
 * Greedy answers to the prompts of `examples` (at most `limit` of them), compared with their
 * completions after trimming white space: the share the model gets exactly right.
 */
export async function exactMatch(
  model: CausalLM,
  examples: ExampleList,
  decode: (ids: number[]) => string,
  stopIds: number[],
  limit = 100,
  shown = 5,
  onProgress?: (done: number, total: number) => void,
  shouldStop: () => boolean = () => false,
): Promise<ExactMatch> {
  const out: ExactMatch = { correct: 0, total: Math.min(limit, examples.length), rate: 0, examples: [] };
  for (let i = 0; i < out.total; i++) {
    // Stopped: the score is of the rows answered so far.
    if (shouldStop()) {
      out.total = i;
      break;
    }
    const e = examples.get(i);
    const want = Array.from(e.completion).filter((id) => !stopIds.includes(id));
    const got = await greedyIds(model, Array.from(e.prompt), want.length + 4, stopIds);
    const expected = decode(want).trim();
    const answer = decode(got).trim();
    const ok = answer === expected;
    if (ok) out.correct++;
    if (out.examples.length < shown) out.examples.push({ prompt: decode(Array.from(e.prompt)), expected, got: answer, ok });
    onProgress?.(i + 1, out.total);
  }
  out.rate = out.total ? out.correct / out.total : 0;
  return out;
}

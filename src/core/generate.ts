/**
 * Sampling from a causal LM with a KV cache: the prompt is read in one pass, then each new token
 * costs one position. Temperature, top-k, top-p (nucleus), a seed, a token budget, stop tokens.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors';
import { KVCache, type CausalLM } from './model/base';
import { Rng } from './rng';

export interface SampleOptions {
  /** New tokens to produce at most. */
  maxNewTokens: number;
  /** 0 picks the most likely token every time (greedy). */
  temperature: number;
  /** Keep only the k most likely tokens; 0 keeps all. */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all. */
  topP: number;
  seed: number;
  /** Generation ends after any of these (EOS). */
  stopIds: number[];
}

/** Prompt tokens per pass when reading a long prompt into the cache. */
export const PREFILL_CHUNK = 128;

export const SAMPLE_DEFAULTS: SampleOptions = { maxNewTokens: 64, temperature: 0.8, topK: 50, topP: 0.95, seed: 0, stopIds: [] };

export interface GeneratedToken {
  id: number;
  /** Why generation ended after this token, if it did. */
  done: null | 'stop' | 'length' | 'context';
}

export function checkSampleOptions(o: SampleOptions): void {
  const bad = (field: string, why: string) => new ConfigError(`sampling.${field} ${why}`, { field: `sampling.${field}` });
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 1) throw bad('maxNewTokens', `must be a whole number of at least 1, got ${o.maxNewTokens}`);
  if (!(o.temperature >= 0) || !Number.isFinite(o.temperature)) throw bad('temperature', `must be 0 or more, got ${o.temperature}`);
  if (!Number.isInteger(o.topK) || o.topK < 0) throw bad('topK', `must be a whole number, 0 for all, got ${o.topK}`);
  if (!(o.topP > 0 && o.topP <= 1)) throw bad('topP', `must be in (0, 1], got ${o.topP}`);
}

/** Picks the next token from one row of logits, on the CPU. */
export function sampleToken(logits: Float32Array, o: SampleOptions, rng: Rng): number {
  const V = logits.length;
  if (o.temperature === 0 || o.topK === 1) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  let order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a]);
  if (o.topK > 0) order = order.slice(0, o.topK);
  const max = logits[order[0]];
  const weights = order.map((i) => Math.exp((logits[i] - max) / o.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let keep = order.length;
  if (o.topP < 1) {
    let cum = 0;
    for (let r = 0; r < order.length; r++) {
      cum += weights[r] / total;
      if (cum >= o.topP) {
        keep = r + 1;
        break;
      }
    }
  }
  const kept = weights.slice(0, keep);
  const keptTotal = kept.reduce((a, b) => a + b, 0);
  let u = rng.next() * keptTotal;
  for (let r = 0; r < keep; r++) {
    u -= kept[r];
    if (u <= 0) return order[r];
  }
  return order[keep - 1];
}

/**
 * Yields new tokens one by one. The cache and every tensor are released when the generator
 * finishes or is abandoned (return() from a for-await break).
 */
export async function* generate(model: CausalLM, prompt: number[], options: Partial<SampleOptions> = {}): AsyncGenerator<GeneratedToken> {
  const o = { ...SAMPLE_DEFAULTS, ...options };
  checkSampleOptions(o);
  if (prompt.length === 0) throw new ConfigError('the prompt has no tokens', { field: 'prompt' });
  if (prompt.length >= model.contextLength) {
    throw new ConfigError(`the prompt has ${prompt.length} tokens; the model's context is ${model.contextLength}`, { field: 'prompt' });
  }
  const rng = new Rng(o.seed);
  const cache = new KVCache();
  try {
    // The prompt goes in chunks through the cache, so no pass builds [T, V] logits or [T, T]
    // attention for a long prompt; only the last chunk's last row is kept.
    for (let at = 0; at + PREFILL_CHUNK < prompt.length - 1; at += PREFILL_CHUNK) {
      const chunk = prompt.slice(at, at + PREFILL_CHUNK);
      tf.dispose(tf.tidy(() => model.forward(tf.tensor2d(chunk, [1, chunk.length], 'int32'), cache)));
    }
    let input = prompt.slice(cache.length);
    for (let n = 1; n <= o.maxNewTokens; n++) {
      const last = tf.tidy(() => {
        const logits = model.forward(tf.tensor2d(input, [1, input.length], 'int32'), cache); // [1, T, V]
        return tf.reshape(tf.slice(logits, [0, input.length - 1, 0], [1, 1, model.vocabSize]), [model.vocabSize]); // [V]
      });
      // Read back: sampling happens on the CPU, one row per token.
      const row = (await last.data()) as Float32Array;
      last.dispose();
      const id = sampleToken(row, o, rng);
      const done = o.stopIds.includes(id) ? 'stop' : n === o.maxNewTokens ? 'length' : cache.length + 1 >= model.contextLength ? 'context' : null;
      yield { id, done };
      if (done) return;
      input = [id];
    }
  } finally {
    cache.dispose();
  }
}

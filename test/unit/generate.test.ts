import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { folderFiles } from '../../src/cli/files';
import { ConfigError } from '../../src/core/errors';
import { generate, sampleToken, SAMPLE_DEFAULTS } from '../../src/core/generate';
import { KVCache, type CausalLM } from '../../src/core/model/base';
import { buildModel, inspectModel, loadWeights } from '../../src/core/model/hf';
import { Rng } from '../../src/core/rng';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

const dir = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));

async function loadFixture(name: string): Promise<{ model: CausalLM; golden: { ids: number[]; logits: number[][] } }> {
  const files = folderFiles(dir(name));
  const summary = await inspectModel(files);
  return { model: buildModel(summary.spec, await loadWeights(files, summary)), golden: JSON.parse(readFileSync(dir(name) + 'golden.json', 'utf8')) };
}

for (const name of ['tiny-gpt2', 'tiny-llama', 'tiny-llama-bf16-sharded', 'tiny-llama-headdim']) {
  test(`${name}: a KV cache fed a prompt and then one token at a time gives PyTorch's logits at every position`, async () => {
    const { model, golden } = await loadFixture(name);
    const start = tf.memory().numTensors;
    const cache = new KVCache();
    const split = 4;
    const rows: number[][] = [];
    const pass = async (ids: number[]) => {
      const out = tf.tidy(() => model.forward(tf.tensor2d(ids, [1, ids.length], 'int32'), cache));
      const flat = await out.data();
      out.dispose();
      for (let t = 0; t < ids.length; t++) rows.push(Array.from(flat.subarray(t * model.vocabSize, (t + 1) * model.vocabSize)));
    };
    // A first chunk, then a chunk of three after an offset (a mask that is not all zeros), then one at a time.
    await pass(golden.ids.slice(0, split));
    await pass(golden.ids.slice(split, split + 3));
    for (const id of golden.ids.slice(split + 3)) await pass([id]);
    assert.equal(cache.length, golden.ids.length);
    let err = 0;
    rows.forEach((r, t) => r.forEach((v, j) => (err = Math.max(err, Math.abs(v - golden.logits[t][j])))));
    assert.ok(err < 1e-4, `max abs error ${err}`);
    cache.dispose();
    assert.equal(tf.memory().numTensors, start, 'the cache released everything');
    model.dispose();
  });
}

test('greedy generation with the cache equals greedy decoding by full forward passes', async () => {
  for (const name of ['tiny-gpt2', 'tiny-llama']) {
    const { model } = await loadFixture(name);
    const prompt = [5, 17, 42];
    const want: number[] = [];
    let seq = prompt.slice();
    for (let n = 0; n < 8; n++) {
      const logits = tf.tidy(() => model.forward(tf.tensor2d(seq, [1, seq.length], 'int32')));
      const row = (await logits.data()).slice((seq.length - 1) * model.vocabSize);
      logits.dispose();
      const id = sampleToken(row as Float32Array, { ...SAMPLE_DEFAULTS, temperature: 0 }, new Rng(0));
      want.push(id);
      seq = [...seq, id];
    }
    const start = tf.memory().numTensors;
    const got: number[] = [];
    for await (const t of generate(model, prompt, { temperature: 0, maxNewTokens: 8 })) got.push(t.id);
    assert.deepEqual(got, want, name);
    assert.equal(tf.memory().numTensors, start, `${name}: generation leaks nothing`);
    model.dispose();
  }
});

test('sampling: a seed reproduces a run; stop tokens, budget and context end it; a break releases the cache', async () => {
  const { model } = await loadFixture('tiny-llama');
  const run = async (opts: object) => {
    const out: { id: number; done: string | null }[] = [];
    for await (const t of generate(model, [1, 9, 30], opts)) out.push(t);
    return out;
  };
  const a = await run({ seed: 7, temperature: 1, topK: 0, topP: 1, maxNewTokens: 12 });
  const b = await run({ seed: 7, temperature: 1, topK: 0, topP: 1, maxNewTokens: 12 });
  const c = await run({ seed: 8, temperature: 1, topK: 0, topP: 1, maxNewTokens: 12 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.map((t) => t.id), c.map((t) => t.id));
  assert.equal(a.length, 12);
  assert.equal(a.at(-1)!.done, 'length');
  const stopAt = a[3].id;
  const stopped = await run({ seed: 7, temperature: 1, topK: 0, topP: 1, maxNewTokens: 12, stopIds: [stopAt] });
  assert.ok(stopped.length <= 4 && stopped.at(-1)!.done === 'stop');
  // The tiny model's context is 64: a long budget ends there.
  const long = await run({ temperature: 0, maxNewTokens: 500 });
  assert.equal(long.at(-1)!.done, 'context');
  assert.equal(3 + long.length, 64);
  const start = tf.memory().numTensors;
  for await (const t of generate(model, [1, 2], { maxNewTokens: 50 })) if (t.id >= 0) break;
  assert.equal(tf.memory().numTensors, start, 'breaking out of generation releases the cache');
  await assert.rejects(run({ topP: 0 }), (e: unknown) => e instanceof ConfigError && e.field === 'sampling.topP');
  model.dispose();
});

test('top-k and top-p keep only the likeliest tokens', () => {
  const logits = Float32Array.of(0, 5, 4, -3, 4.5);
  const rng = new Rng(1);
  const seen = new Set<number>();
  for (let i = 0; i < 300; i++) seen.add(sampleToken(logits, { ...SAMPLE_DEFAULTS, temperature: 1, topK: 2, topP: 1 }, rng));
  assert.deepEqual([...seen].sort(), [1, 4]);
  seen.clear();
  // p = 0.5 of (e^5, e^4.5, e^4, ...) / sum: the top token alone holds about 0.5, so at most two are kept.
  for (let i = 0; i < 300; i++) seen.add(sampleToken(logits, { ...SAMPLE_DEFAULTS, temperature: 1, topK: 0, topP: 0.4 }, rng));
  assert.deepEqual([...seen], [1]);
});

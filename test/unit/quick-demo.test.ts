/**
 * The workshop's quick demo, in Node with more steps than the browser test can afford: LoRA on the
 * bundled model (pre-trained on Moby-Dick only) learns to rewrite dates as ISO, and exact match on
 * test dates it never saw rises from the base model's. Tensors stay flat across the run, with
 * sampling and scoring in it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, test } from 'node:test';
import { selectBackend } from '../../src/api/backend';
import { Studio } from '../../src/api/studio';
import { memoryKV } from '../../src/store/kv';
import { parseWorkshop } from '../../src/ui/workshop';
import { tf, useBackend } from '../support/tf-node';
import { bundledModel } from '../support/bundled';

before(() => useBackend('wasm'));

const sample = (name: string) => readFileSync(new URL(`../../public/samples/${name}`, import.meta.url));

test('the quick demo as shipped: exact match on unseen dates rises well above the base model\'s', { timeout: 1_200_000 }, async () => {
  const w = parseWorkshop(sample('quick-demo.workshop.json').toString('utf8'), 'quick-demo.workshop.json');
  const c = w.config;
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('wasm');
  const info = await studio.importModel(bundledModel(), () => undefined);
  const tensors: number[] = [];
  const losses: number[] = [];
  const t0 = performance.now();
  const out = await studio.finetuneModel(
    {
      modelId: info.id, dataset: 'dates-train.jsonl', bytes: sample('dates-train.jsonl'), testFile: { dataset: 'dates-test.jsonl', bytes: sample('dates-test.jsonl') },
      method: 'lora', lora: { r: c.r, lora_alpha: 2 * c.r, ...(c.target_modules === 'all-linear' ? { target_modules: 'all-linear' } : {}) },
      train: { steps: c.steps, learning_rate: c.learning_rate, batch_size: c.batch_size, block_size: c.block_size, seed: w.seed, checkpoint_every: 100 },
      validation: c.validation, evalEvery: c.eval_every, exactMatch: c.exact_match, samples: { every: c.sample_every },
    },
    (r) => {
      losses.push(r.loss);
      tensors.push(tf.memory().numTensors);
    },
  );
  const seconds = (performance.now() - t0) / 1000;
  const m = out.exactMatch!;
  assert.ok(m.after, 'scored after');
  console.log(
    `quick demo, Node WASM, ${c.steps} steps in ${seconds.toFixed(0)} s: loss ${losses[0].toFixed(3)} -> ${losses.at(-1)!.toFixed(3)}; ` +
      `exact match ${m.before!.correct}/${m.before!.total} before, ${m.after!.correct}/${m.after!.total} after`,
  );
  for (const x of m.after!.examples) console.log(`  ${JSON.stringify(x.prompt)} -> ${JSON.stringify(x.got)} (want ${JSON.stringify(x.expected)})`);
  assert.equal(m.before!.total, c.exact_match);
  assert.ok(m.after!.correct > m.before!.correct, 'exact match rises');
  assert.ok(m.after!.rate >= 0.1, `at least one unseen date in ten exactly right: ${m.after!.correct}/${m.after!.total}`);
  assert.ok(losses.at(-1)! < losses[0] / 2, 'the loss falls');
  assert.equal(tensors.at(-1), tensors[0], `tensors flat across the steps (with sampling and checks in between): ${tensors[0]} then ${tensors.at(-1)}`);
  const samples = out.samples.filter((s) => s.prompt === out.samples[0].prompt);
  assert.notEqual(samples[0].text, samples.at(-1)!.text, 'what the model writes for a watched prompt changes');
});

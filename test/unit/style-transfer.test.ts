/**
 * The style-transfer sample: a short LoRA run of the bundled Moby-Dick model on State of the Union
 * passages changes the voice of what it writes, counted in the words of presidential addresses.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, test } from 'node:test';
import { selectBackend } from '../../src/api/backend';
import { Studio } from '../../src/api/studio';
import { memoryKV } from '../../src/store/kv';
import { bundledModel } from '../support/bundled';
import { useBackend } from '../support/tf-node';

before(() => useBackend('wasm'));

/** Words of the addresses that Melville's book hardly uses. */
const ADDRESS_WORDS = /\b(Congress|Nation|nation|national|Government|government|people|Federal|federal|America|American|Americans|States|economy|program|programs|policy|world|must|our|we|We|Our|Administration|tax|law|security|war|peace)\b/g;
const count = (texts: string[]) => texts.reduce((n, t) => n + (t.match(ADDRESS_WORDS)?.length ?? 0), 0);

test('style transfer: after a short LoRA run on the State of the Union passages, the Moby-Dick model writes in their voice', { timeout: 600_000 }, async () => {
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('wasm');
  const info = await studio.importModel(bundledModel(), () => undefined);
  const prompts = ['The', 'It is', 'In the'];
  const steps = 60;
  const out = await studio.finetuneModel(
    {
      modelId: info.id, dataset: 'state-of-the-union.txt', bytes: readFileSync(new URL('../../public/samples/state-of-the-union.txt', import.meta.url)),
      method: 'lora', lora: { r: 16, lora_alpha: 32, target_modules: 'all-linear' }, train: { steps, learning_rate: 3e-3, batch_size: 8, block_size: 64, seed: 1337 },
      samples: { every: steps, prompts, maxNewTokens: 40 },
    },
    () => undefined,
  );
  const at = (step: number) => out.samples.filter((s) => s.step === step).map((s) => s.text);
  const before = at(0);
  const after = at(steps);
  console.log(`style transfer, ${steps} LoRA steps:\n  before: ${before.map((t) => JSON.stringify(t)).join('\n          ')}\n  after:  ${after.map((t) => JSON.stringify(t)).join('\n          ')}`);
  console.log(`  words of the addresses: ${count(before)} before, ${count(after)} after`);
  assert.equal(after.length, prompts.length);
  assert.ok(count(after) >= count(before) + 3, `the addresses' words: ${count(before)} before, ${count(after)} after`);
});

/**
 * Compare in a real browser (WASM backend): a tiny model imported, a few LoRA steps trained in the
 * page, a second adapter added from PEFT files, then one prompt through the base and the tuned model
 * side by side with a fixed seed. The base column is what plain generation gives; switching to the
 * other adapter changes the tuned column without the model being read again.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { importFixture, launch, studioForTests, until, watchErrors } from './harness';

const { skip, server } = studioForTests();

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));

const SAMPLING = { maxNewTokens: 16, temperature: 0.9, topK: 0, topP: 1, seed: 7 };
const PROMPT = 'the sea';

/** The Compare screen's streamed text, once its side is done. */
async function column(page: Page, side: 'base' | 'tuned'): Promise<string> {
  await until(`the ${side} column`, () => page.getAttribute(`[data-testid=compare-${side}]`, 'data-state'), (s) => s === 'done');
  return (await page.textContent(`[data-testid=compare-${side}]`)) ?? '';
}

async function compareOnce(page: Page): Promise<{ base: string; tuned: string; title: string }> {
  await until('Compare to be ready', () => page.getAttribute('[data-testid=compare-run]', 'aria-disabled'), (d) => d === 'false');
  await page.click('[data-testid=compare-run]');
  // The base goes first, then the tuned model: the worker runs one generation at a time.
  await until('the comparison to start', () => page.getAttribute('[data-testid=compare-base]', 'data-state'), (s) => s !== 'idle');
  const base = await column(page, 'base');
  const tuned = await column(page, 'tuned');
  await until('the announcement', () => page.textContent('[data-testid=compare-announcer]'), (t) => /Comparison done/.test(t ?? ''));
  return { base, tuned, title: (await page.textContent('#compare-tuned-title')) ?? '' };
}

test('Compare: base and tuned side by side with one seed; the base column is plain generation; switching adapters reads no model again', { skip, timeout: 300_000 }, async () => {
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  await importFixture(page, 'tiny-gpt2');

  // Plain generation in the Models panel, on the base, with the settings Compare will use.
  await page.evaluate((s) => Object.assign((globalThis as any).tabtune.models.sampling, s), SAMPLING);
  await page.fill('[data-testid=prompt]', PROMPT);
  await page.click('[data-testid=generate]');
  await until('plain generation', () => page.getAttribute('[data-testid=generation]', 'data-state'), (s) => s === 'done');
  const plain = (await page.textContent('[data-testid=generation]')) ?? '';
  assert.ok(plain.startsWith(PROMPT) && plain.length > PROMPT.length, `plain generation: ${JSON.stringify(plain)}`);

  // A few LoRA steps in the page: the adapter they give is held for Compare.
  await page.fill('[data-testid=tune-text]', 'the sea and the whale. the sea is the whale and the sea. '.repeat(30));
  await page.fill('[data-testid=tune-steps]', '4');
  await page.fill('[data-testid=tune-validation]', '0');
  await page.evaluate(() => Object.assign((globalThis as any).tabtune.models.tune, { learningRate: 0.05, r: 4 }));
  await page.click('[data-testid=tune-start]');
  await until('fine-tuning to finish', () => page.getAttribute('[data-testid=tune-status]', 'data-state').catch(() => null), (s) => s === 'done');

  // The Compare screen (a tab in the restructured app; a panel of the page here).
  await page.click('[data-testid=nav-compare]');
  await page.waitForSelector('[data-testid=compare-adapter]');
  assert.equal(await page.locator('[data-testid=compare-adapter]').count(), 1, 'the run just trained is listed');
  assert.match((await page.textContent('[data-testid=compare] .adapters li')) ?? '', /pasted text \(lora\)\s*LoRA r 4 on c_attn · [\d,]+ parameters · from the lora run on pasted text, /);

  // A second adapter of the same base, from PEFT's files.
  const dir = fixture('tiny-gpt2-lora');
  await page.setInputFiles('[data-testid=compare-add-files]', ['adapter_config.json', 'adapter_model.safetensors'].map((f) => join(dir, f)));
  await until('the second adapter', () => page.locator('[data-testid=compare-adapter]').count(), (n) => n === 2);
  const fileAdapterName = (await page.textContent('[data-testid=compare] .adapters li:nth-child(2) strong')) ?? '';
  const loads = (await page.evaluate(() => (globalThis as any).tabtune.client.diagnostics())).modelLoads as number;
  let progressSeen = false;
  await page.exposeFunction('progressSeen', () => (progressSeen = true));
  await page.evaluate(() => new MutationObserver(() => document.querySelector('#model-progress') && (globalThis as any).progressSeen()).observe(document.body, { subtree: true, childList: true }));

  await page.fill('[data-testid=compare-prompt]', PROMPT);
  await page.fill('[data-testid=compare-max-tokens]', String(SAMPLING.maxNewTokens));
  await page.fill('[data-testid=compare-temperature]', String(SAMPLING.temperature));
  await page.fill('[data-testid=compare-top-k]', String(SAMPLING.topK));
  await page.fill('[data-testid=compare-top-p]', String(SAMPLING.topP));
  await page.fill('[data-testid=compare-seed]', String(SAMPLING.seed));

  await page.check('[data-testid=compare-adapter] >> nth=0');
  const first = await compareOnce(page);
  assert.equal(first.base, plain, 'the base column is what plain generation on the base gives, with the same settings and seed');
  assert.notEqual(first.tuned, first.base, 'the run\'s adapter writes something else');
  assert.match(first.title, /^Tuned: pasted text \(lora\)$/);
  assert.match((await page.textContent('[data-testid=compare-base-meta]')) ?? '', /\d+ tokens · [\d.]+ tokens\/s · first token after \d+ ms/);

  await page.check('[data-testid=compare-adapter] >> nth=1');
  const second = await compareOnce(page);
  assert.equal(second.base, plain, 'the base again, unchanged by the switch');
  assert.notEqual(second.tuned, first.tuned, 'the other adapter writes something else again');
  assert.notEqual(second.tuned, second.base);
  assert.equal(second.title, `Tuned: ${fileAdapterName}`);

  // Back to the first adapter: the same text as before, so each switch is exact.
  await page.check('[data-testid=compare-adapter] >> nth=0');
  const third = await compareOnce(page);
  assert.equal(third.tuned, first.tuned);
  assert.equal((await page.evaluate(() => (globalThis as any).tabtune.client.diagnostics())).modelLoads, loads, 'no model was read again for a switch');
  assert.equal(progressSeen, false, 'no loading progress was shown');
  assert.equal(await page.$('[data-testid=compare-error]'), null);

  // An adapter for another base is refused, named, and the list stays as it was.
  const llama = fixture('tiny-llama-lora');
  await page.setInputFiles('[data-testid=compare-add-files]', ['adapter_config.json', 'adapter_model.safetensors'].map((f) => join(llama, f)));
  const refusal = (await (await page.waitForSelector('[data-testid=compare-error]')).textContent()) ?? '';
  assert.match(refusal, /adapter_model\.safetensors: tensor base_model\.model\.model\.layers\.\d+\.\S+ is not a LoRA weight of a layer of this model/);
  assert.equal(await page.locator('[data-testid=compare-adapter]').count(), 2);
  assert.deepEqual(errors, []);
  await context.close();
});

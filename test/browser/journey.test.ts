/**
 * A new user's whole journey through the studio's screens, by its tabs and buttons only: open,
 * the bundled model, a sample dataset, a preset, start, watch the loss fall and a sample change,
 * stop, compare, export the adapter and read the file, reload, resume from the Runs screen.
 * A screenshot of each screen is saved (TABTUNE_SCREENS, default test-results/screens); the
 * README shows the ones in docs/screens, made by this test with TABTUNE_SCREENS=docs/screens.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { readSafetensors } from '../../src/core/io/safetensors';
import { unzipFiles } from '../../src/core/io/zip';
import { launch, studioForTests, until, watchErrors } from './harness';

const { skip, server } = studioForTests();
const SHOTS = process.env.TABTUNE_SCREENS ?? 'test-results/screens';

const tab = (page: Page, name: string) => page.click(`[data-testid=nav-${name}]`);
const selected = (page: Page) => page.getAttribute('[role=tab][aria-selected=true]', 'data-testid');
async function shot(page: Page, name: string) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}
const status = (page: Page) => page.getAttribute('[data-testid=tune-status]', 'data-state').catch(() => null);
const stepOf = async (page: Page) => Number(/^(\d+)/.exec((await page.textContent('[data-testid=live-step]').catch(() => '')) ?? '')?.[1] ?? 0);

test('a new user: bundled model, sample data, quick preset, live run, stop, compare, adapter file, reload, resume', { skip, timeout: 600_000 }, async () => {
  const { context } = await launch(undefined, { findScreens: false });
  const page = await context.newPage();
  await page.setViewportSize({ width: 1280, height: 720 });
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  assert.equal(await selected(page), 'nav-start', 'the studio opens on Start');
  await page.waitForSelector('[data-testid=workshop-quick]');
  await shot(page, '1-start');

  // Models: the bundled model, imported from the studio's own files on first use.
  await tab(page, 'models');
  await page.click('[data-testid=use-bundled]');
  await page.waitForSelector('[data-testid=model-loaded]', { timeout: 120_000 });
  assert.match((await page.textContent('[data-testid=model-list]')) ?? '', /moby-gpt2 · gpt2 · 2,025,600 parameters.*needs 7\.7 MB of memory to load \(float32\) · bundled with the studio/);
  await shot(page, '2-models');

  // Data: a sample, read with the model's tokenizer.
  await page.click('[data-testid=models-go-data]');
  assert.equal(await selected(page), 'nav-data');
  await page.click('[data-testid=data-sample] >> text=dates-train.jsonl');
  await until('the data report', () => page.textContent('[data-testid=data-report]').catch(() => ''), (t) => /dates-train\.jsonl: prompt_completion · 2,000 rows kept/.test((t ?? '').replace(/\s+/g, ' ')), 60_000);
  await shot(page, '3-data');

  // Train: a preset, then fewer steps for a test.
  await page.click('[data-testid=data-go-train]');
  assert.equal(await selected(page), 'nav-train');
  await page.selectOption('[data-testid=tune-preset]', 'quick');
  await page.fill('[data-testid=tune-steps]', '40');
  await page.fill('[data-testid=tune-sample-every]', '5');
  await page.fill('[data-testid=tune-eval-every]', '5');
  // Before it starts: the memory it needs here (and the time, from a timed step).
  await until('the estimate for these settings', () => page.getAttribute('[data-testid=tune-estimate]', 'data-asked').catch(() => null), (a) => !!a?.startsWith('lora r16 all-linear 16x32 '), 30_000);
  assert.match(((await page.textContent('[data-testid=tune-estimate]')) ?? '').replace(/\s+/g, ' '), /Needs up to about [\d.]+ [MG]B of memory: weights 7\.7 MB.*196,608 values.*about \d+ (s|min) for 40 steps on this device \(wasm\)/s);
  await page.click('[data-testid=tune-advanced] summary');
  assert.match((await page.textContent('[data-testid=tune-advanced]')) ?? '', /warmup_steps.*Steps of linear warmup/s, 'every setting, with its help from the engine');
  await page.fill('[data-testid=setting-warmup_steps]', '10');
  await shot(page, '4-train');
  await page.click('[data-testid=tune-start]');

  // Live run: the page goes there by itself; the loss falls, the sample changes.
  assert.equal(await selected(page), 'nav-live', 'starting shows the live run');
  await until('ten steps', () => stepOf(page), (n) => n >= 10, 240_000);
  await until('a sample after training began', () => page.$('[data-testid=tune-sample-last]'), (x) => !!x, 60_000);
  await until('a validation check', () => page.textContent('[data-testid=live-val]'), (t) => /\d/.test(t ?? ''), 60_000);
  await shot(page, '5-live');
  await until('fifteen steps', () => stepOf(page), (n) => n >= 15, 120_000);
  await page.click('[data-testid=tune-stop]');
  await until('the stop', () => status(page), (s) => s === 'done', 120_000);
  assert.match((await page.textContent('[data-testid=tune-status]')) ?? '', /Stopped by you/);
  const points = (await page.evaluate(() => (globalThis as any).tabtune.models.tunePoints)) as { loss: number }[];
  assert.ok(points.at(-1)!.loss < points[0].loss * 0.8, `the loss falls: ${points[0].loss} then ${points.at(-1)!.loss}`);
  const first = (await page.textContent('[data-testid=tune-sample-first]'))!.replace(/^[^:]*:/, '');
  const last = (await page.textContent('[data-testid=tune-sample-last]'))!.replace(/^[^:]*:/, '');
  assert.notEqual(first, last, 'what the model writes changed');
  assert.match((await page.textContent('[data-testid=live-elapsed]')) ?? '', /^\d+:\d\d$/);
  const stoppedAt = await stepOf(page);
  const history = (await page.evaluate(() => (globalThis as any).tabtune.models.tuneRuns[0].history)) as { step: number; lr: number }[];
  // nanoGPT's warmup: step 1 of 10 gets 1/11 of the peak.
  assert.ok(Math.abs(history[0].lr - 3e-3 / 11) < 1e-9, `warmup_steps 10 from "Every setting": the first step's learning rate is 3e-3 / 11, got ${history[0].lr}`);

  // Compare: the same prompt, settings and seed, the base and the run's adapter side by side.
  await tab(page, 'compare');
  await until('the run\'s adapter listed', () => page.$$('[data-testid=compare-adapter]'), (x) => x.length === 1, 30_000);
  await page.fill('[data-testid=compare-prompt]', 'March 5, 1851\nISO:');
  await page.fill('[data-testid=compare-temperature]', '0');
  await page.fill('[data-testid=compare-max-tokens]', '8');
  await page.click('[data-testid=compare-run]');
  await until('both sides', async () => [await page.getAttribute('[data-testid=compare-base]', 'data-state'), await page.getAttribute('[data-testid=compare-tuned]', 'data-state')], (s) => s.every((x) => x === 'done'), 120_000);
  const baseText = (await page.textContent('[data-testid=compare-base]'))!;
  const tunedText = (await page.textContent('[data-testid=compare-tuned]'))!;
  assert.notEqual(baseText, tunedText, 'the tuned model answers differently');
  assert.match(tunedText, /ISO:\s*\d/, `the tuned model answers with digits: ${JSON.stringify(tunedText)}`);
  await shot(page, '6-compare');

  // The adapter as a file: a zip of PEFT's two files, for this base and these layers.
  await tab(page, 'live');
  const download = page.waitForEvent('download');
  await page.click('[data-testid=download] >> text=moby-gpt2-lora-adapter.zip');
  const file = await download;
  const zip = await unzipFiles(new Uint8Array(readFileSync((await file.path())!)), file.suggestedFilename());
  assert.deepEqual([...zip.keys()].sort(), ['adapter_config.json', 'adapter_model.safetensors']);
  const config = JSON.parse(new TextDecoder().decode(zip.get('adapter_config.json')));
  assert.equal(config.peft_type, 'LORA');
  assert.equal(config.r, 16);
  assert.equal(config.base_model_name_or_path, 'moby-gpt2');
  const st = zip.get('adapter_model.safetensors')!;
  const headerLength = Number(new DataView(st.buffer, st.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(st.subarray(8, 8 + headerLength)));
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  assert.equal(names.length, 4 * 4 * 2, 'lora_A and lora_B on the 4 linear layers of each of the 4 blocks (the Quick demo preset: all-linear)');
  assert.ok(names.every((n) => /^base_model\.model\.transformer\.h\.\d\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.lora_[AB]\.weight$/.test(n)), names.join(', '));
  assert.deepEqual(header['base_model.model.transformer.h.0.attn.c_attn.lora_A.weight'].shape, [16, 192]);
  assert.deepEqual(header['base_model.model.transformer.h.3.mlp.c_proj.lora_B.weight'].shape, [192, 16]);

  // Runs: the stopped run, kept; a reload loses nothing, and it resumes from its checkpoint.
  await tab(page, 'runs');
  await page.waitForSelector('[data-testid=run][data-status=stopped]');
  await shot(page, '7-runs');
  await page.reload();
  await page.waitForSelector('[data-testid=backend-name]');
  assert.equal(await selected(page), 'nav-runs', 'a reload stays on the screen it was on');
  await until('the run kept', () => page.$('[data-testid=run-resume]'), (x) => !!x, 60_000);
  const resumeLabel = (await page.textContent('[data-testid=run-resume]')) ?? '';
  const from = Number(/step (\d+)/.exec(resumeLabel)?.[1]);
  assert.ok(from >= 10 && from <= stoppedAt, `resumes from a checkpoint at or before the stop: ${resumeLabel}`);
  await page.click('[data-testid=run-resume]');
  assert.equal(await selected(page), 'nav-live');
  await until('the resumed run to finish', () => status(page), (s) => s === 'done', 240_000);
  assert.match((await page.textContent('[data-testid=tune-status]')) ?? '', /Done: step 40 \/ 40/);

  // Runs: its curve; the merged model as a Hugging Face folder; run it again with changes.
  await tab(page, 'runs');
  await page.waitForSelector('[data-testid=run][data-status=done] [data-testid=run-curve]');
  const merged = page.waitForEvent('download');
  await page.click('[data-testid=run][data-status=done] [data-testid=run-merged]');
  const mergedFile = await merged;
  assert.equal(mergedFile.suggestedFilename(), 'moby-gpt2-merged.zip');
  const folder = await unzipFiles(new Uint8Array(readFileSync((await mergedFile.path())!)), mergedFile.suggestedFilename());
  assert.ok(['config.json', 'model.safetensors', 'tokenizer.json'].every((f) => folder.has(f)), [...folder.keys()].join(', '));
  // The adapter is folded in: an adapted weight differs from the bundled base's, the embedding does not.
  const folded = readSafetensors(folder.get('model.safetensors')!, 'merged model.safetensors').tensors;
  const base = readSafetensors(new Uint8Array(readFileSync(new URL('../../public/models/moby-gpt2/model.safetensors', import.meta.url))), 'moby-gpt2 model.safetensors').tensors;
  const attn = Object.keys(base).find((n) => /h\.0\.attn\.c_attn\.weight$/.test(n))!;
  const wte = Object.keys(base).find((n) => /wte\.weight$/.test(n))!;
  assert.deepEqual(folded[attn].shape, base[attn].shape);
  assert.ok(folded[attn].data.some((v, i) => Math.abs(v - base[attn].data[i]) > 1e-6), `${attn} changed by the merge`);
  assert.deepEqual(folded[wte].data, base[wte].data, `${wte} is the base's`);
  const recipe = page.waitForEvent('download');
  await page.click('[data-testid=run][data-status=done] [data-testid=run-recipe]');
  const recipeFile = await recipe;
  const recipeFiles = await unzipFiles(new Uint8Array(readFileSync((await recipeFile.path())!)), recipeFile.suggestedFilename());
  assert.deepEqual([...recipeFiles.keys()].sort(), ['README.md', 'axolotl.yaml', 'train.jsonl', 'train_trl.py']);
  const rows = new TextDecoder().decode(recipeFiles.get('train.jsonl')).trim().split('\n');
  assert.equal(rows.length, 1900, 'the training split of 2,000 rows less the 5% held out');
  assert.match(rows[0], /^\{"prompt":".*\\nISO:","completion":" \d{4}-\d\d-\d\d"\}$/);
  await page.click('[data-testid=run][data-status=done] [data-testid=run-duplicate]');
  await until('the Train screen', () => selected(page), (s) => s === 'nav-train');
  assert.equal(await page.inputValue('[data-testid=tune-steps]'), '40');
  assert.equal(await page.inputValue('[data-testid=tune-batch]'), '16');
  assert.equal(await page.inputValue('[data-testid=setting-warmup_steps]'), '10', 'the advanced setting comes back too');
  assert.match((await page.textContent('[data-testid=train-data]')) ?? '', /dates-train\.jsonl/);

  await tab(page, 'settings');
  await page.waitForSelector('[data-testid=settings-backend]');
  assert.match((await page.textContent('[data-testid=settings-backend]')) ?? '', /Backend in use: wasm/);
  await shot(page, '8-settings');
  // The keyboard moves along the tabs; Back returns to the screen before.
  await page.focus('[data-testid=nav-settings]');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await selected(page), 'nav-runs', 'the left arrow selects the tab before');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'nav-runs', 'and focuses it');
  await tab(page, 'data');
  await page.goBack();
  assert.equal(await selected(page), 'nav-runs', 'Back shows the screen before');

  // Presenter mode: large type for a projector, kept across a reload.
  await page.click('[data-testid=presenter]');
  await tab(page, 'live');
  const fontSize = () => page.evaluate(() => parseFloat(getComputedStyle(document.querySelector('.app')!).fontSize));
  assert.ok((await fontSize()) >= 20, `large type: ${await fontSize()}px`);
  await shot(page, '9-presenter');
  await page.reload();
  await page.waitForSelector('[data-testid=backend-name]');
  assert.ok((await fontSize()) >= 20, 'still large after a reload');
  await page.click('[data-testid=presenter]');

  // The reload kept the Train form (the settings of "Run again with changes") and offers the model back.
  await tab(page, 'train');
  await page.click('[data-testid=train-load-last]');
  await page.waitForSelector('[data-testid=tune-steps]');
  assert.equal(await page.inputValue('[data-testid=tune-steps]'), '40');
  assert.equal(await page.inputValue('[data-testid=setting-warmup_steps]'), '10');
  assert.match((await page.textContent('[data-testid=train-data]')) ?? '', /dates-train\.jsonl/);

  // A narrow window (a phone, a split screen): one row of tabs, nothing wider than the window.
  await page.setViewportSize({ width: 400, height: 800 });
  await tab(page, 'train');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `no sideways scrolling at 400 px: ${overflow}px too wide`);
  await shot(page, '10-narrow');
  assert.deepEqual(errors, []);
  await context.close();
});

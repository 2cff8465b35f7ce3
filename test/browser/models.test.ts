/**
 * Bringing a Hugging Face model to the studio in a real browser: files picked in the page, read in
 * the worker on WebGPU (SwiftShader), checked against PyTorch's logits there, kept in IndexedDB,
 * and loaded again after a reload without the files.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { readZip } from '../support/zip';
import { importFixture, launch, studioForTests, until, watchErrors } from './harness';

const { skip, server } = studioForTests();

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));



/** Logits computed in the worker, compared with PyTorch's there and then. */
async function maxLogitError(page: Page, modelId: string, name: string): Promise<number> {
  const golden = JSON.parse(readFileSync(join(fixture(name), 'golden.json'), 'utf8')) as { ids: number[]; logits: number[][] };
  const got = await page.evaluate(
    async ([id, ids]) => Array.from((await (globalThis as any).tabtune.client.logits(id, { ids })).logits as Float32Array),
    [modelId, golden.ids] as const,
  );
  const want = golden.logits.flat();
  assert.equal(got.length, want.length);
  return got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
}

test('a BF16, sharded Llama folder: summary first, import, PyTorch logits on WebGPU, generation, kept across a reload', { skip, timeout: 300_000 }, async () => {
  const name = 'tiny-llama-bf16-sharded';
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=webgpu`);
  await page.waitForSelector('[data-testid=backend-name]');
  assert.equal(await page.textContent('[data-testid=backend-name]'), 'webgpu');

  const paths = readdirSync(fixture(name)).filter((f) => !f.startsWith('golden')).map((f) => join(fixture(name), f));
  await page.setInputFiles('[data-testid=model-files]', paths);
  const summary = (await (await page.waitForSelector('[data-testid=model-summary]')).textContent()) ?? '';
  assert.match(summary, /llama · 17,568 parameters · 2 layers × 32 wide, 4 heads \(2 key\/value\)/);
  assert.match(summary, /BF16 in 2 files/);
  assert.match(summary, /vocabulary 64 · context 64/);

  await page.click('[data-testid=model-import]');
  await page.waitForSelector('[data-testid=model-loaded]');
  const models = await page.evaluate(() => (globalThis as any).tabtune.client.listModels());
  assert.equal(models.length, 1);
  const id = models[0].id as string;
  const err = await maxLogitError(page, id, name);
  assert.ok(err < 1e-4, `max abs logit error ${err} in the browser on WebGPU`);
  assert.equal((await page.evaluate(() => (globalThis as any).tabtune.client.diagnostics())).backend, 'webgpu');

  await page.fill('[data-testid=prompt]', 'the whale');
  await page.click('[data-testid=generate]');
  await until('generation to finish', () => page.getAttribute('[data-testid=generation]', 'data-state'), (s) => s === 'done');
  const shown = (await page.textContent('[data-testid=generation]')) ?? '';
  assert.ok(shown.startsWith('the whale') && shown.length > 'the whale'.length, `generated: ${JSON.stringify(shown)}`);

  // The next visit: no files, the model comes from IndexedDB.
  await page.reload();
  await page.waitForSelector('[data-testid=model-load]');
  await page.click('[data-testid=model-load]');
  await page.waitForSelector('[data-testid=model-loaded]');
  const again = await maxLogitError(page, id, name);
  assert.ok(again < 1e-4, `after reload: max abs logit error ${again}`);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a broken weight file is named in the page and nothing is stored', { skip, timeout: 120_000 }, async () => {
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  const cut = readFileSync(join(fixture('tiny-gpt2'), 'model.safetensors')).subarray(0, 300);
  await page.setInputFiles('[data-testid=model-files]', [
    { name: 'config.json', mimeType: 'application/json', buffer: readFileSync(join(fixture('tiny-gpt2'), 'config.json')) },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from(cut) },
  ]);
  const message = (await (await page.waitForSelector('[data-testid=model-error]')).textContent()) ?? '';
  assert.match(message, /model\.safetensors/);
  assert.deepEqual(await page.evaluate(() => (globalThis as any).tabtune.client.listModels()), []);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a Hugging Face repository name: looked up, downloaded from the hub (a local stand-in), PyTorch logits', { skip, timeout: 120_000 }, async () => {
  const { startHub } = await import('../support/hub-server');
  const hub = await startHub();
  try {
    const { context } = await launch();
    const page = await context.newPage();
    const errors = watchErrors(page);
    await page.goto(`${server.url}?backend=wasm&hub=${encodeURIComponent(hub.url)}`);
    await page.waitForSelector('[data-testid=backend-name]');
    await page.fill('[data-testid=hub-repo]', 'tabtune-test/tiny-gpt2');
    await page.click('[data-testid=hub-lookup]');
    const summary = (await (await page.waitForSelector('[data-testid=model-summary]')).textContent()) ?? '';
    assert.match(summary, /tiny-gpt2/);
    assert.match(summary, /gpt2 · /);
    await page.click('[data-testid=model-import]');
    await page.waitForSelector('[data-testid=model-loaded]');
    const [model] = await page.evaluate(() => (globalThis as any).tabtune.client.listModels());
    const err = await maxLogitError(page, model.id, 'tiny-gpt2');
    assert.ok(err < 1e-4, `max abs logit error ${err}`);
    await page.fill('[data-testid=hub-repo]', 'not a repo');
    await page.click('[data-testid=hub-lookup]');
    assert.match((await (await page.waitForSelector('[data-testid=model-error]')).textContent()) ?? '', /"not a repo" is not a Hugging Face repository/);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await hub.close();
  }
});

test('LoRA in the worker on WebGPU: trains the loaded model, only the adapter is new, PEFT files come back; then 4-bit QLoRA on rows', { skip, timeout: 300_000 }, async () => {
  const { readSafetensors } = await import('../../src/core/io/safetensors');
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=webgpu`);
  await page.waitForSelector('[data-testid=backend-name]');
  await importFixture(page, 'tiny-gpt2');
  const result = await page.evaluate(async () => {
    const t = (globalThis as any).tabtune.client;
    const [model] = await t.listModels();
    const before = await t.diagnostics();
    const losses: number[] = [];
    const out = await t.finetuneModel(
      {
        modelId: model.id, text: 'the sea and the whale. the sea is the whale and the sea. '.repeat(30), dataset: 'sea.txt', method: 'lora',
        lora: { r: 4, lora_dropout: 0 }, train: { steps: 8, batch_size: 4, block_size: 16, learning_rate: 2e-2 },
      },
      (r: { loss: number }) => losses.push(r.loss),
    );
    const after = await t.diagnostics();
    // Then 4-bit QLoRA on prompt/completion rows, from the base again, on the same device.
    const rows = ['sea', 'ship', 'whale', 'sail', 'rope', 'deck', 'mast', 'wind'].map((w) => JSON.stringify({ prompt: `the ${w} is`, completion: ` a ${w}` })).join('\n');
    const qLosses: number[] = [];
    const qEvals: number[] = [];
    const q = await t.finetuneModel(
      {
        modelId: model.id, dataset: 'pairs.jsonl', bytes: new TextEncoder().encode(rows), method: 'qlora', bits: 4,
        lora: { r: 4, lora_dropout: 0 }, train: { steps: 6, batch_size: 4, block_size: 16, learning_rate: 3e-2 }, validation: 0.25, evalEvery: 3,
      },
      (r: { loss: number }) => qLosses.push(r.loss),
      (e: { step: number }) => qEvals.push(e.step),
    );
    const final = await t.diagnostics();
    return {
      before, after, losses, final, qLosses, qEvals, quantized: q.quantized, qFormat: q.dataset.format,
      out: { ...out, files: out.files.map((f: { name: string; bytes: Uint8Array }) => ({ name: f.name, bytes: Array.from(f.bytes) })) },
    };
  });
  assert.equal(result.final.backend, 'webgpu');
  assert.equal(result.qFormat, 'prompt_completion');
  assert.equal(result.quantized.bits, 4);
  assert.ok(result.quantized.bytesAfter < result.quantized.bytesBefore, 'the NF4 base takes less device memory');
  assert.deepEqual(result.qEvals, [3, 6]);
  assert.ok(result.qLosses.at(-1)! < result.qLosses[0], `4-bit QLoRA on WebGPU learns: ${result.qLosses[0]} -> ${result.qLosses.at(-1)}`);
  assert.equal(result.after.backend, 'webgpu');
  assert.equal(result.out.steps, 8);
  assert.equal(result.losses.length, 8);
  assert.ok(result.losses.at(-1)! < result.losses[0], `loss fell: ${result.losses[0]} -> ${result.losses.at(-1)}`);
  // Two layers with c_attn adapters: four new variables (A and B), and nothing else kept.
  assert.equal(result.after.numTensors, result.before.numTensors + 4);
  const files = new Map((result.out.files as { name: string; bytes: number[] }[]).map((f) => [f.name, new Uint8Array(f.bytes)]));
  const config = JSON.parse(new TextDecoder().decode(files.get('adapter_config.json')));
  assert.deepEqual([config.peft_type, config.r, config.fan_in_fan_out, config.target_modules], ['LORA', 4, true, ['c_attn']]);
  const tensors = readSafetensors(files.get('adapter_model.safetensors')!, 'adapter_model.safetensors').tensors;
  assert.deepEqual(tensors['base_model.model.transformer.h.1.attn.c_attn.lora_B.weight'].shape, [72, 4]);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the page fine-tunes on a JSONL file: rejected rows named, validation curve, forgetting check, the adapter as one zip', { skip, timeout: 240_000 }, async () => {
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  await importFixture(page, 'tiny-llama');
  await page.waitForSelector('[data-testid=tune]');
  const words = ['sea', 'ship', 'whale', 'sail', 'rope', 'deck', 'mast', 'wind', 'rain', 'salt', 'fish', 'tide', 'wave', 'sand', 'bay', 'oar'];
  const rows = words.map((w) => JSON.stringify({ instruction: `name the ${w}`, output: `the ${w}` }));
  rows.splice(4, 0, '{"instruction": "broken"');
  await page.setInputFiles('[data-testid=tune-data]', { name: 'words.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(rows.join('\n')) });
  await page.waitForSelector('[data-testid=tune-file]');
  assert.match((await page.textContent('[data-testid=tune-file]')) ?? '', /words\.jsonl/);
  // Before training: the report, the histogram and the exact training text, the prompt shaded as masked.
  await page.waitForSelector('[data-testid=data-report]');
  const dataReport = ((await page.textContent('[data-testid=data-report]')) ?? '').replace(/\s+/g, ' ');
  assert.match(dataReport, /words\.jsonl: alpaca, alpaca template · 16 rows kept · 1 rejected · 16 longer than the block of 64/);
  assert.match(dataReport, /one epoch is 4 steps, (under a second|about \d+ s) on this device/);
  const bars = page.locator('[data-testid=data-histogram] rect');
  assert.equal(await bars.count(), 14, 'bins of 5 tokens up to 64, and one past it');
  assert.equal(await bars.last().getAttribute('height'), '60', 'every row is past the block: the last bar is full');
  assert.match((await page.textContent('[data-testid=data-rejected]')) ?? '', /line 5: invalid JSON/);
  const prompt = page.locator('[data-testid=sample-prompt]').first();
  assert.match((await prompt.textContent()) ?? '', /### Instruction:\nname the sea\n\n### Response:\n$/);
  assert.equal(await prompt.getAttribute('class').then((c) => c?.includes('masked')), true);
  await page.fill('[data-testid=tune-steps]', '6');
  await page.fill('[data-testid=tune-validation]', '0.25');
  await page.fill('[data-testid=tune-eval-every]', '2');
  await page.check('[data-testid=tune-forgetting]');
  await page.click('[data-testid=tune-start]');
  await until('fine-tuning to finish', () => page.getAttribute('[data-testid=tune-status]', 'data-state').catch(() => null), (s) => s === 'done');
  const status = (await page.textContent('[data-testid=tune-status]')) ?? '';
  assert.match(status, /Done: step 6 \/ 6/);
  assert.match(status, /validation \d+\.\d+, best \d+\.\d+ at step [246]/);
  assert.match(status, /parameters trained/);
  assert.equal(await page.getAttribute('[data-testid=screen-live] [data-testid=loss-chart]', 'data-val-points'), '3', 'three validation points on the chart');
  const report = ((await page.textContent('[data-testid=tune-report]')) ?? '').replace(/\s+/g, ' ');
  assert.match(report, /words\.jsonl: alpaca, alpaca template · 16 rows used · 1 rejected · 16 cut to the context/, 'the Alpaca preamble alone passes the tiny context of 32');
  assert.match(report, /split 12 \/ 4 \/ 0/);
  assert.match((await page.textContent('[data-testid=tune-rejected]')) ?? '', /line 5: invalid JSON/);
  assert.match((await page.textContent('[data-testid=tune-forgetting-result]')) ?? '', /Forgetting check on moby-dick-ch1\.txt: perplexity \d+\.\d+ before, \d+\.\d+ after/);
  const links = await page.$$eval('[data-testid=download]', (as) => as.map((a) => a.getAttribute('download')));
  assert.deepEqual(links, ['unnamed-model-lora-adapter.zip', 'adapter_config.json', 'adapter_model.safetensors']);
  const download = page.waitForEvent('download');
  await page.click('[data-testid=download] >> nth=0');
  const file = await download;
  assert.equal(file.suggestedFilename(), 'unnamed-model-lora-adapter.zip');
  const zip = readZip(new Uint8Array(readFileSync(await file.path())));
  assert.deepEqual([...zip.keys()], ['adapter_config.json', 'adapter_model.safetensors']);
  assert.equal(JSON.parse(new TextDecoder().decode(zip.get('adapter_config.json'))).peft_type, 'LORA');
  const { readSafetensors } = await import('../../src/core/io/safetensors');
  const tensors = readSafetensors(zip.get('adapter_model.safetensors')!, 'adapter_model.safetensors').tensors;
  assert.ok(Object.keys(tensors).every((k) => /^base_model\.model\..*\.lora_[AB]\.weight$/.test(k)));

  // The merged model, the scale-out recipe, and the downloaded adapter zip applied back onto the base.
  const mergedDownload = page.waitForEvent('download');
  await page.click('[data-testid=download-merged]');
  const mergedFile = await mergedDownload;
  assert.match(mergedFile.suggestedFilename(), /-merged\.zip$/);
  assert.deepEqual([...readZip(new Uint8Array(readFileSync(await mergedFile.path()))).keys()].sort(), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const recipeDownload = page.waitForEvent('download');
  await page.click('[data-testid=recipe-download]');
  const recipe = readZip(new Uint8Array(readFileSync(await (await recipeDownload).path())));
  assert.deepEqual([...recipe.keys()], ['train.jsonl', 'train_trl.py', 'axolotl.yaml', 'README.md']);
  const records = new TextDecoder().decode(recipe.get('train.jsonl')).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(records.length, 12, 'the training split only');
  assert.match(records[0].prompt, /### Instruction:\nname the \w+\n\n### Response:\n$/);
  await page.setInputFiles('[data-testid=adapter-files]', await file.path().then((p) => ({ name: 'tuned.zip', mimeType: 'application/zip', buffer: readFileSync(p) })));
  await page.waitForSelector('[data-testid=adapter-applied]');
  assert.match((await page.textContent('[data-testid=adapter-applied]')) ?? '', /Applied tuned: LoRA, r 8, on q_proj, v_proj/);

  // A file whose columns have other names: the message names them; mapping them makes it usable.
  await page.setInputFiles('[data-testid=tune-data]', { name: 'qa.csv', mimeType: 'text/csv', buffer: Buffer.from('question,answer\nsay sea:,the sea\nsay ship:,the ship\n') });
  await page.waitForSelector('[data-testid=data-error]');
  assert.match((await page.textContent('[data-testid=data-error]')) ?? '', /qa\.csv: cannot tell the format from its columns \(question, answer\)/);
  await page.selectOption('[data-testid=tune-format]', 'prompt_completion');
  await page.waitForSelector('[data-testid=data-error]');
  assert.match((await page.textContent('[data-testid=data-error]')) ?? '', /needs columns "prompt", "completion"; the file has question, answer/);
  await page.selectOption('[data-testid=map-prompt]', 'question');
  await page.selectOption('[data-testid=map-completion]', 'answer');
  await until('the mapped preview', () => page.textContent('[data-testid=data-report]').catch(() => ''), (t) => /qa\.csv: prompt_completion · 2 rows kept/.test((t ?? '').replace(/\s+/g, ' ')));
  assert.equal(await page.$('[data-testid=data-error]'), null, 'the problem is gone');
  assert.equal(await page.locator('[data-testid=sample-prompt]').first().textContent(), 'say sea:');
  assert.deepEqual(errors, []);
  await context.close();
});

test('the page pauses, resumes and stops a fine-tuning run', { skip, timeout: 180_000 }, async () => {
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  await importFixture(page, 'tiny-gpt2');
  await page.fill('[data-testid=tune-text]', 'the sea and the whale. the sea is the whale and the sea. '.repeat(30));
  await page.fill('[data-testid=tune-steps]', '100000');
  await page.fill('[data-testid=tune-validation]', '0');
  await page.click('[data-testid=tune-start]');
  const step = async () => Number(/Step (\d+)/i.exec((await page.textContent('[data-testid=tune-status]').catch(() => '')) ?? '')?.[1] ?? 0);
  await until('a few steps', step, (n) => n >= 3);
  await page.click('[data-testid=tune-pause]');
  await until('the pause', () => page.getAttribute('[data-testid=tune-status]', 'data-state'), (s) => s === 'paused');
  const held = await step();
  await page.waitForTimeout(500);
  assert.equal(await step(), held, 'no step while paused');
  assert.match((await page.textContent('[data-testid=tune-status]')) ?? '', /Paused at step/);
  assert.equal(await page.textContent('[data-testid=tune-pause]'), 'Resume');
  await page.click('[data-testid=tune-pause]');
  await until('steps again', step, (n) => n > held + 2);
  await page.click('[data-testid=tune-stop]');
  await until('the stop', () => page.getAttribute('[data-testid=tune-status]', 'data-state'), (s) => s === 'done');
  assert.match((await page.textContent('[data-testid=models-announcer]')) ?? '', /Stopped after \d+ steps/);
  assert.equal((await page.$$('[data-testid=download]')).length, 3, 'what was learned can be downloaded');
  assert.deepEqual(errors, []);
  await context.close();
});

test('data in the page: a Parquet file by the picker, a JSONL file dropped, rows pasted', { skip, timeout: 180_000 }, async () => {
  const { context } = await launch();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  await importFixture(page, 'tiny-gpt2');
  const report = async () => ((await page.textContent('[data-testid=data-report]').catch(() => '')) ?? '').replace(/\s+/g, ' ');
  await page.setInputFiles('[data-testid=tune-data]', fileURLToPath(new URL('../fixtures/datasets/alpaca.parquet', import.meta.url)));
  await until('the Parquet report', report, (t) => t.includes('alpaca.parquet'));
  assert.match(await report(), /alpaca\.parquet: alpaca, alpaca template · 24 rows kept · 1 rejected/);
  assert.match((await page.textContent('[data-testid=data-rejected]')) ?? '', /row 8: field "output" is empty/);

  // Dropped on the data panel, as a person drags a file from their desktop.
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['{"prompt": "say sea:", "completion": " sea"}\n{"prompt": "say ship:", "completion": " ship"}\n'], 'dropped.jsonl'));
    document.querySelector('[data-testid=data-panel]')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await until('the dropped file', report, (t) => t.includes('dropped.jsonl'));
  assert.match(await report(), /dropped\.jsonl: prompt_completion · 2 rows kept · 0 rejected/);

  // A JSON array on one line: every row is on line 1, and the page still shows them.
  const oneLine = JSON.stringify(['sea', 'ship', 'gull', 'tide'].map((w) => ({ instruction: `name the ${w}`, output: w })));
  await page.setInputFiles('[data-testid=tune-data]', { name: 'one-line.json', mimeType: 'application/json', buffer: Buffer.from(oneLine) });
  await until('the one-line JSON report', report, (t) => t.includes('one-line.json'));
  assert.match(await report(), /one-line\.json: alpaca, alpaca template · 4 rows kept · 0 rejected/);
  assert.equal(await page.locator('[data-testid=sample-prompt]').count(), 3, 'three rows shown, the rest behind a button');
  await page.click('[data-testid=data-more]');
  assert.equal(await page.locator('[data-testid=sample-prompt]').count(), 4);

  // Why Fine-tune cannot start is said next to it, in the words of the fields.
  await page.fill('[data-testid=tune-steps]', '');
  assert.match((await page.textContent('[data-testid=tune-why]')) ?? '', /Steps must be a whole number from 1 to 100000/);
  assert.equal(await page.getAttribute('[data-testid=tune-start]', 'aria-disabled'), 'true');
  await page.fill('[data-testid=tune-steps]', '5');
  await page.setInputFiles('[data-testid=tune-data]', { name: 'nothing.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from('{broken\n{also\n') });
  await page.waitForSelector('[data-testid=data-error]');
  assert.match((await page.textContent('[data-testid=data-error]')) ?? '', /nothing\.jsonl: no row can be read \(2 rejected; line 1: invalid JSON/);
  assert.match((await page.textContent('[data-testid=tune-why]')) ?? '', /Fix the data first/);

  // Pasted rows: JSON Lines in the text box.
  await page.click('text=Paste text instead');
  await page.fill('[data-testid=tune-text]', '{"prompt": "a:", "completion": " b"}\n{"prompt": "c:", "completion": " d"}\n{"prompt": "e:"}');
  await page.click('[data-testid=data-preview-pasted]');
  await until('the pasted report', report, (t) => t.includes('pasted text'));
  assert.match(await report(), /pasted text: prompt_completion · 2 rows kept · 1 rejected/);

  // The files are kept in this browser with how they are read: after a reload they are listed and usable.
  const kept = () => page.$$eval('[data-testid=dataset-use]', (bs) => bs.map((b) => b.textContent));
  assert.deepEqual(await kept(), ['alpaca.parquet', 'dropped.jsonl', 'one-line.json']);
  await page.reload();
  await page.waitForSelector('[data-testid=model-load]');
  await page.click('[data-testid=model-load]');
  await page.waitForSelector('[data-testid=model-loaded]');
  await until('the kept datasets', kept, (k) => k.length === 3);
  await page.click('[data-testid=dataset-use] >> text=alpaca.parquet');
  await until('the kept Parquet report', report, (t) => t.includes('alpaca.parquet: alpaca, alpaca template · 24 rows kept · 1 rejected'));
  await page.click('[data-testid=dataset-delete] >> nth=1');
  await page.click('[data-testid=dataset-delete] >> nth=1');
  await until('the deletion', kept, (k) => k.length === 2);
  assert.deepEqual(errors, []);
  await context.close();
});

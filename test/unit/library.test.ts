/**
 * The Studio's model path as the worker runs it, in Node: files given as Blobs (what a drop or a
 * picker hands over), inspected, imported with progress into a key-value store, listed, loaded
 * back without the files, and used for logits and generation.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '../../src/api/backend';
import type { FileEntry, ModelProgress } from '../../src/api/protocol';
import { Studio } from '../../src/api/studio';
import { memoryKV, type KV } from '../../src/store/kv';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

function entries(name: string): FileEntry[] {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  return readdirSync(dir)
    .filter((f) => !f.startsWith('golden'))
    .map((f) => ({ path: `${name}/${f}`, file: new Blob([readFileSync(join(dir, f))]) }));
}

const golden = (name: string) =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`../fixtures/${name}/golden.json`, import.meta.url)), 'utf8')) as { ids: number[]; logits: number[][] };

test('a dropped folder is inspected, imported, stored, listed, reloaded from storage and matches PyTorch', async () => {
  const kv = memoryKV();
  const studio = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const files = entries('tiny-llama-bf16-sharded');
  const info = await studio.inspectModelFiles(files);
  assert.equal(info.name, 'tiny-llama-bf16-sharded');
  assert.equal(info.arch, 'llama');
  assert.deepEqual([info.layers, info.hidden, info.heads, info.kvHeads, info.vocabSize, info.contextLength], [2, 32, 4, 2, 64, 64]);
  assert.deepEqual(info.dtypes, ['BF16']);
  assert.equal(info.hasTokenizer, true);
  assert.equal(info.stored, false);
  assert.deepEqual(await kv.keys(), [], 'inspecting stores nothing');

  const progress: ModelProgress[] = [];
  const imported = await studio.importModel(files, (p) => progress.push(p));
  assert.equal(imported.stored, true);
  const reading = progress.filter((p) => p.phase === 'reading').map((p) => p.done);
  assert.ok(reading.length > 3, 'progress per tensor');
  assert.deepEqual(reading, [...reading].sort((a, b) => a - b), 'progress only moves forward');
  assert.equal(progress.at(-1)!.phase, 'ready');
  const g = golden('tiny-llama-bf16-sharded');
  const check = async () => {
    const out = await studio.logits(imported.id, { ids: g.ids });
    let err = 0;
    g.logits.flat().forEach((v, i) => (err = Math.max(err, Math.abs(v - out.logits[i]))));
    assert.ok(err < 1e-4, `max abs error ${err}`);
  };
  await check();

  // A new Studio on the same storage: the next visit, without the files.
  const later = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await later.init('cpu');
  const listed = await later.listModels();
  assert.deepEqual(listed.map((m) => m.id), [imported.id]);
  assert.equal(listed[0].hasTokenizer, true);
  await assert.rejects(later.logits(imported.id, { ids: [1] }), /is not loaded/);
  const loading: ModelProgress[] = [];
  await later.loadModel(imported.id, (p) => loading.push(p));
  assert.equal(loading.at(-1)!.phase, 'ready');
  const out = await later.logits(imported.id, { text: 'the sea' });
  assert.deepEqual(out.ids, [1, 46, 48, 62, 8, 4]);

  const pieces: string[] = [];
  const result = await later.generate({ modelId: imported.id, prompt: 'the whale', options: { temperature: 0, maxNewTokens: 10 } }, (p) => pieces.push(p.text));
  assert.ok(result.ids.length >= 1 && result.ids.length <= 10);
  assert.equal(pieces.at(-1), result.text, 'the pieces build up to the final text');
  assert.ok(['stop', 'length'].includes(result.stopReason));

  const before = tf.memory().numTensors;
  await later.deleteModel(imported.id);
  assert.ok(tf.memory().numTensors < before, 'deleting the held model releases its tensors');
  assert.deepEqual(await later.listModels(), []);
  assert.deepEqual((await kv.keys()).filter((k) => k.startsWith('model')), [], 'every chunk and file is gone');
});

test('bad files are refused with the file named, before anything is stored', async () => {
  const kv = memoryKV();
  const studio = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const files = entries('tiny-gpt2').map((e) =>
    e.path.endsWith('model.safetensors') ? { ...e, file: new Blob([new Uint8Array(readFileSync(fileURLToPath(new URL('../fixtures/tiny-gpt2/model.safetensors', import.meta.url)))).slice(0, 100)]) } : e,
  );
  await assert.rejects(studio.inspectModelFiles(files), (e: Error & { file?: string }) => e.name === 'SafetensorsError' && e.file === 'model.safetensors');
  await assert.rejects(studio.importModel(files, () => undefined), /model\.safetensors/);
  assert.deepEqual(await studio.listModels(), []);
  const noConfig = entries('tiny-gpt2').filter((e) => !e.path.endsWith('config.json') || e.path.endsWith('tokenizer_config.json'));
  await assert.rejects(studio.inspectModelFiles(noConfig), /has no config\.json/);
});

test('chat: the prompt goes through the model\'s chat template, rendered by Jinja', async () => {
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const template = "{{ bos_token }}{% for m in messages %}{{ m['role'] + ' ' + m['content'] + ' ' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant ' }}{% endif %}";
  const files = entries('tiny-llama').map((e) => {
    if (!e.path.endsWith('tokenizer_config.json')) return e;
    const cfg = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/tiny-llama/tokenizer_config.json', import.meta.url)), 'utf8'));
    return { ...e, file: new Blob([JSON.stringify({ ...cfg, chat_template: template })]) };
  });
  const info = await studio.importModel(files, () => undefined);
  assert.equal(info.chatTemplate, true);
  const plain = await studio.generate({ modelId: info.id, prompt: 'the sea', options: { temperature: 0, maxNewTokens: 3 } }, () => undefined);
  assert.equal(plain.input, 'the sea');
  const chat = await studio.generate({ modelId: info.id, prompt: 'the sea', options: { temperature: 0, maxNewTokens: 3 }, chat: true }, () => undefined);
  assert.equal(chat.input, '<s>user the sea assistant ');
  // <s> comes from the template, once; the tokenizer adds no second BOS.
  assert.equal(chat.promptTokens, (await studio.logits(info.id, { text: 'user the sea assistant ' })).ids.length);
});

test('fine-tuning the loaded model in the Studio: LoRA, QLoRA and prompt tuning return PEFT files; refusals are named', async () => {
  const text = 'the sea and the whale. the sea is the whale and the sea. '.repeat(30);
  for (const method of ['lora', 'qlora', 'prompt'] as const) {
    const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
    await studio.init('cpu');
    const info = await studio.importModel(entries('tiny-llama'), () => undefined);
    const losses: number[] = [];
    const req = { modelId: info.id, text, dataset: 'sea.txt', method, lora: { r: 4 }, train: { steps: 6, block_size: 16, learning_rate: method === 'prompt' ? 5e-2 : 1e-2 }, numVirtualTokens: 4 };
    const out = await studio.finetuneModel(req, (r) => losses.push(r.loss));
    assert.equal(out.steps, 6);
    assert.ok(losses.at(-1)! < losses[0], `${method}: loss fell`);
    assert.deepEqual(out.files.map((f) => f.name).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    const config = JSON.parse(new TextDecoder().decode(out.files.find((f) => f.name === 'adapter_config.json')!.bytes));
    assert.equal(config.peft_type, method === 'prompt' ? 'PROMPT_TUNING' : 'LORA');
    if (method === 'qlora') assert.ok(out.quantized!.bytesAfter < out.quantized!.bytesBefore);
    const gen = await studio.generate({ modelId: info.id, prompt: 'the sea', options: { temperature: 0, maxNewTokens: 3 } }, () => undefined);
    assert.ok(gen.ids.length >= 1, 'the tuned model generates');
    const again: number[] = [];
    await studio.finetuneModel(req, (r) => again.push(r.loss));
    assert.deepEqual(again, losses, `${method}: a second run starts from the base again, so it repeats the first exactly`);
  }
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-llama'), () => undefined);
  await assert.rejects(studio.finetuneModel({ modelId: info.id, text: 'short', dataset: 'notes.txt', method: 'lora' }, () => undefined), /notes\.txt has \d+ tokens/);
  await assert.rejects(studio.finetuneModel({ modelId: info.id, text, dataset: 'x', method: 'bitfit' }, () => undefined), /has none/);
});

test('fine-tuning in the Studio on a JSONL of chats: the model chat template, validation, early stopping, test split, forgetting check, one zip', async () => {
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const template = "{{ bos_token }}{% for m in messages %}{{ m['role'] + ' ' + m['content'] + ' ' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant ' }}{% endif %}";
  const files = entries('tiny-llama').map((e) => {
    if (!e.path.endsWith('tokenizer_config.json')) return e;
    const cfg = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/tiny-llama/tokenizer_config.json', import.meta.url)), 'utf8'));
    return { ...e, file: new Blob([JSON.stringify({ ...cfg, chat_template: template })]) };
  });
  const info = await studio.importModel(files, () => undefined);
  const words = ['sea', 'ship', 'whale', 'sail', 'rope', 'deck', 'mast', 'wind', 'rain', 'salt', 'fish', 'tide'];
  const lines = words.map((w) => JSON.stringify({ messages: [{ role: 'user', content: `name the ${w}` }, { role: 'assistant', content: `the ${w}` }] }));
  lines.splice(3, 0, JSON.stringify({ messages: [{ role: 'user', content: 'no answer' }] }));
  const evals: number[] = [];
  const out = await studio.finetuneModel(
    {
      modelId: info.id, dataset: 'chats.jsonl', bytes: new TextEncoder().encode(lines.join('\n')), method: 'qlora', bits: 4, lora: { r: 4 },
      train: { steps: 12, block_size: 16, batch_size: 4, learning_rate: 1e-2 }, validation: 0.25, test: 0.17, evalEvery: 4, patience: 5,
      forgetting: { name: 'general.txt', text: 'the whale and the sea and the ship. '.repeat(10) },
    },
    () => undefined,
    (e) => evals.push(e.step),
  );
  assert.deepEqual([out.dataset.format, out.dataset.template, out.dataset.accepted], ['chat', 'model', 12]);
  assert.deepEqual(out.dataset.rejected, [{ line: 4, reason: 'the last message is from "user"; it must be the assistant\'s answer' }]);
  assert.deepEqual([out.dataset.split.train, out.dataset.split.validation, out.dataset.split.test], [7, 3, 2]);
  assert.deepEqual(evals, [4, 8, 12]);
  assert.deepEqual(out.evals.map((e) => e.step), [4, 8, 12]);
  assert.equal(out.best!.valLoss, Math.min(...out.evals.map((e) => e.valLoss)));
  assert.ok(out.testLoss! > 0);
  assert.equal(out.quantized!.bits, 4);
  assert.equal(out.forgetting!.file, 'general.txt');
  assert.ok(out.forgetting!.perplexityBefore > 1 && out.forgetting!.perplexityAfter > 1);
  const zip = out.zip!;
  assert.deepEqual(Array.from(zip.subarray(0, 4)), [0x50, 0x4b, 0x03, 0x04], 'a zip archive');
  const names = new TextDecoder('latin1').decode(zip);
  assert.ok(names.includes('adapter_config.json') && names.includes('adapter_model.safetensors'));
  assert.equal(zip.length, out.files.reduce((n, f) => n + f.bytes.length + 2 * f.name.length + 76, 22), 'stored: the files plus headers');
  // A separate validation file instead of a share.
  const withFile = await studio.finetuneModel(
    {
      modelId: info.id, dataset: 'chats.jsonl', bytes: new TextEncoder().encode(lines.join('\n')), method: 'lora', lora: { r: 4 },
      train: { steps: 4, block_size: 16, batch_size: 4 }, evalEvery: 2, validation: 0.5,
      validationFile: { dataset: 'val.jsonl', bytes: new TextEncoder().encode(lines.slice(0, 3).join('\n')) },
    },
    () => undefined,
  );
  assert.deepEqual([withFile.dataset.split.train, withFile.dataset.split.validation, withFile.dataset.validationFile, withFile.evals.length], [12, 3, 'val.jsonl', 2]);
  await studio.loadModel(info.id, () => undefined);
  await assert.rejects(
    studio.finetuneModel({ modelId: info.id, dataset: 'qa.csv', bytes: new TextEncoder().encode('q,a\nx,y\n'), method: 'lora' }, () => undefined),
    (e: unknown) => e instanceof Error && e.name === 'DataError' && /qa\.csv: cannot tell the format from its columns \(q, a\)/.test(e.message),
  );
  await assert.rejects(
    studio.finetuneModel({ modelId: info.id, dataset: 'chats.jsonl', bytes: new TextEncoder().encode(lines.join('\n')), method: 'lora', evalEvery: 2, validation: 0 }, () => undefined),
    /there are no validation examples/,
  );
});

test('a fine-tuning run pauses after its step, resumes exactly, and a stop while paused ends it', async () => {
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-gpt2'), () => undefined);
  const text = 'the sea and the whale. the sea is the whale and the sea. '.repeat(30);
  const req = { modelId: info.id, text, dataset: 'sea.txt', method: 'lora' as const, train: { steps: 8, block_size: 16, learning_rate: 1e-2 } };
  const straight: number[] = [];
  await studio.finetuneModel(req, (r) => straight.push(r.loss));

  const paused: number[] = [];
  let heldAt = -1;
  const run = studio.finetuneModel(req, (r) => {
    paused.push(r.loss);
    if (r.step === 3) void studio.pauseFinetune();
  });
  await new Promise((r) => setTimeout(r, 300));
  heldAt = paused.length;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(paused.length, heldAt, 'no step while paused');
  assert.equal(heldAt, 3);
  await studio.resumeFinetune();
  const out = await run;
  assert.equal(out.steps, 8);
  assert.deepEqual(paused, straight, 'the pause changed nothing');

  let steps = 0;
  const stopped = studio.finetuneModel(req, (r) => {
    steps = r.step;
    if (r.step === 2) void studio.pauseFinetune();
  });
  await new Promise((r) => setTimeout(r, 200));
  await studio.stopGenerating();
  const res = await stopped;
  assert.equal(res.cancelled, true);
  assert.equal(steps, 2);
  assert.equal(res.files.length, 2, 'what was learned is still given back');
});

test('adapters in: PEFT files, a folder or a zip (stored or deflated) apply to the base; the merged model goes out as a Hugging Face zip', async () => {
  const { unzipFiles, zipFiles } = await import('../../src/core/io/zip');
  const { spawnSync } = await import('node:child_process');
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-gpt2'), () => undefined);
  const ids = golden('tiny-gpt2-lora').ids;
  const logitsNow = async () => Array.from((await studio.logits(info.id, { ids })).logits);
  const maxErr = (got: number[]) => Math.max(...golden('tiny-gpt2-lora').logits.flat().map((v, i) => Math.abs(v - got[i])));
  const base = await logitsNow();
  assert.ok(maxErr(base) > 1e-2, 'without the adapter the reference logits are not reached');

  // The reference adapter (PEFT's layout), as the two files.
  const adapter = entries('tiny-gpt2-lora').filter((e) => /adapter_/.test(e.path));
  const applied = await studio.applyAdapter(info.id, adapter);
  assert.equal(applied.peftType, 'LORA');
  assert.ok(applied.r! > 0 && applied.targetModules.length > 0);
  assert.ok(maxErr(await logitsNow()) < 1e-4, 'the reference logits of base + adapter');

  // The same as a zip of ours, and as a deflated zip that Python's zipfile writes (a folder inside).
  const bytes = new Map(await Promise.all(adapter.map(async (e) => [e.path.split('/').pop()!, new Uint8Array(await e.file.arrayBuffer())] as [string, Uint8Array])));
  await studio.applyAdapter(info.id, [{ path: 'mine.zip', file: new Blob([zipFiles(bytes) as BlobPart]) }]);
  assert.ok(maxErr(await logitsNow()) < 1e-4, 'applied again from the base, not on top of the first');
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-adapter-zip-'));
  for (const [n, b] of bytes) writeFileSync(join(dir, n), b);
  const py = spawnSync('python3', ['-c', 'import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1] + "/py.zip", "w", zipfile.ZIP_DEFLATED)\nfor n in ["adapter_config.json", "adapter_model.safetensors"]: z.write(sys.argv[1] + "/" + n, "my-adapter/" + n)\nz.close()', dir]);
  if (!py.error && py.status === 0) {
    const pyZip = new Uint8Array(readFileSync(join(dir, 'py.zip')));
    assert.deepEqual([...(await unzipFiles(pyZip)).keys()], ['my-adapter/adapter_config.json', 'my-adapter/adapter_model.safetensors']);
    const fromPy = await studio.applyAdapter(info.id, [{ path: 'py.zip', file: new Blob([pyZip]) }]);
    assert.equal(fromPy.name, 'py');
    assert.ok(maxErr(await logitsNow()) < 1e-4, 'a deflated zip with a folder inside');
  }

  // A broken adapter is named, and the base comes back whole.
  const noWeights = adapter.filter((e) => e.path.endsWith('.json'));
  await assert.rejects(studio.applyAdapter(info.id, noWeights), /has no adapter_model\.safetensors/);
  assert.deepEqual(await logitsNow(), base);
  await assert.rejects(studio.applyAdapter(info.id, [{ path: 'x.zip', file: new Blob(['not a zip']) }]), /x\.zip is not a zip archive this can read: no end-of-archive record/);

  // Merged: a Hugging Face folder, zipped, whose weights give the adapter's logits without it.
  await studio.applyAdapter(info.id, adapter);
  const merged = await studio.exportMerged(info.id);
  assert.match(merged.name, /-merged\.zip$/);
  const folder = await unzipFiles(merged.bytes);
  assert.deepEqual([...folder.keys()].sort(), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const other = await studio.importModel(
    [...folder].map(([n, b]) => ({ path: `merged/${n}`, file: new Blob([b as BlobPart]) })),
    () => undefined,
  );
  assert.ok(maxErr(Array.from((await studio.logits(other.id, { ids })).logits)) < 1e-4, 'the merged folder computes base + adapter');

  // Full fine-tuning changes the weights in place: a second run still starts from the base.
  await studio.loadModel(info.id, () => undefined);
  assert.deepEqual(await logitsNow(), base, 'loading again after an adapter gives the base');
  const text = 'the sea and the whale. the sea is the whale and the sea. '.repeat(30);
  const req = { modelId: info.id, text, dataset: 'sea.txt', method: 'full' as const, train: { steps: 4, block_size: 16, learning_rate: 1e-2 } };
  const first: number[] = [];
  const second: number[] = [];
  await studio.finetuneModel(req, (r) => first.push(r.loss));
  await studio.finetuneModel(req, (r) => second.push(r.loss));
  assert.deepEqual(second, first);
});

test('a data file is read in the worker as it streams: progress, the report, a preview of the exact training text, time per epoch', async () => {
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-gpt2'), () => undefined);
  const rows = Array.from({ length: 30000 }, (_, i) => JSON.stringify({ instruction: `say ${i}`, input: i % 2 ? 'loudly' : '', output: `${i}` }));
  rows[40] = '{"instruction": ';
  const file = new Blob([rows.join('\n')]);
  const progress: number[] = [];
  const p = await studio.inspectDataset({ modelId: info.id, dataset: 'tasks.jsonl', file, blockSize: 32, batchSize: 8, validation: 0.1 }, (x) => progress.push(x.done));
  assert.deepEqual([p.format, p.template, p.rows, p.rejectedCount], ['alpaca', 'alpaca', 29999, 1]);
  assert.deepEqual(p.rejected.map((r) => r.line), [41]);
  assert.deepEqual(p.columns, ['instruction', 'input', 'output']);
  assert.equal(progress.at(-1), file.size, 'progress ends at the whole file');
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i] >= progress[i - 1]);
  assert.equal(p.preview[1].completion, '1');
  assert.match(p.preview[1].prompt, /### Input:\nloudly\n\n### Response:\n$/);
  assert.equal(p.preview[0].promptTokens + p.preview[0].completionTokens + 1 > 32, true, 'the Alpaca preamble passes the block of 32');
  assert.equal(p.truncatedCount, 29999);
  assert.equal(p.histogram.counts.reduce((a, b) => a + b, 0), 29999);
  assert.equal(p.estimate.stepsPerEpoch, Math.ceil(Math.round(29999 * 0.9) / 8));
  assert.ok(p.estimate.msPerStep! > 0 && p.estimate.secondsPerEpoch! > 0);
  // Pasted JSON Lines are rows; other pasted text is a token stream.
  const pasted = await studio.inspectDataset({ modelId: info.id, dataset: 'pasted', text: '{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}' }, () => undefined);
  assert.deepEqual([pasted.kind, pasted.format, pasted.rows], ['jsonl', 'prompt_completion', 2]);
  const prose = await studio.inspectDataset({ modelId: info.id, dataset: 'pasted', text: 'the sea. '.repeat(20) }, () => undefined);
  assert.equal(prose.format, 'text (token stream)');
  // Columns with other names: not an exception but a problem to solve, with the columns to map.
  const qa = await studio.inspectDataset({ modelId: info.id, dataset: 'qa.csv', file: new Blob(['q,a\n1,2\n']) }, () => undefined);
  assert.match(qa.problem!, /qa\.csv: cannot tell the format from its columns \(q, a\)/);
  assert.deepEqual([qa.columns, qa.rows], [['q', 'a'], 0]);
  const mapped = await studio.inspectDataset({ modelId: info.id, dataset: 'qa.csv', file: new Blob(['q,a\n1,2\n']), format: 'prompt_completion', mapping: { prompt: 'q', completion: 'a' } }, () => undefined);
  assert.deepEqual([mapped.problem, mapped.rows, mapped.preview[0].prompt, mapped.preview[0].completion], [null, 1, '1', '2']);
  await assert.rejects(studio.inspectDataset({ modelId: info.id, dataset: 'e.jsonl', file: new Blob([]) }, () => undefined), /e\.jsonl is empty/);
});

test('datasets kept in storage: the file in chunks with its options and split; a run by id repeats a run from the file', async () => {
  const { saveDataset, listDatasets, DATASET_CHUNK_BYTES } = await import('../../src/store/datasets');
  const kv = memoryKV();
  const studio = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-gpt2'), () => undefined);
  const rows = ['sea', 'ship', 'whale', 'sail', 'rope', 'deck', 'mast', 'wind'].map((w) => JSON.stringify({ prompt: `say ${w}:`, completion: ` ${w}` })).join('\n');
  const saved = await studio.saveDataset(
    { dataset: 'words.jsonl', file: new Blob([rows]), split: { validation: 0.25, test: 0, seed: 7 }, summary: { format: 'prompt_completion', rows: 8, rejected: 0 } },
    () => undefined,
  );
  assert.deepEqual((await studio.listDatasets()).map((d) => [d.id, d.name, d.bytes, d.split.validation]), [[saved.id, 'words.jsonl', rows.length, 0.25]]);
  const req = { modelId: info.id, method: 'lora' as const, lora: { r: 4 }, train: { steps: 4, block_size: 16, seed: 7 }, validation: 0.25, evalEvery: 2 };
  const fromFile: number[] = [];
  const fromStore: number[] = [];
  const a = await studio.finetuneModel({ ...req, dataset: 'words.jsonl', bytes: new TextEncoder().encode(rows) }, (r) => fromFile.push(r.loss));
  const b = await studio.finetuneModel({ ...req, dataset: 'ignored', datasetId: saved.id }, (r) => fromStore.push(r.loss));
  assert.deepEqual(fromStore, fromFile, 'the stored dataset trains exactly as the file');
  assert.deepEqual(b.evals.map((e) => e.valLoss), a.evals.map((e) => e.valLoss));
  assert.equal(b.dataset.file, 'words.jsonl');
  const changed = await studio.updateDataset(saved.id, { split: { validation: 0.5, test: 0, seed: 7 } });
  assert.equal(changed.split.validation, 0.5);
  // A save that fails half-way leaves nothing listed.
  async function* broken() {
    yield new Uint8Array(DATASET_CHUNK_BYTES + 10);
    throw new Error('disk went away');
  }
  await assert.rejects(saveDataset(kv, { id: 'half', name: 'half.jsonl', options: {}, split: { validation: 0, test: 0, seed: 1 }, summary: { format: 'text', rows: 0, rejected: 0 } }, broken()), /disk went away/);
  const ids = (await listDatasets(kv)).map((d) => d.id);
  assert.ok(ids.includes(saved.id) && !ids.includes('half'), 'the half-saved one is not listed');
  assert.equal(ids.length, 2, 'the words file, and the same bytes kept by the run given them (so it can resume)');
  await studio.deleteDataset(saved.id);
  assert.ok(!(await studio.listDatasets()).some((d) => d.id === saved.id));
  assert.equal((await kv.keys()).filter((k) => k.startsWith(`datasetchunk/${saved.id}/`)).length, 0, 'its chunks are gone too');
  await assert.rejects(studio.finetuneModel({ ...req, dataset: 'x', datasetId: saved.id }, () => undefined), /no stored dataset/);
});

test('a fine-tuning run is kept: stopped at 10 or crashed at 12, a new Studio (a reload) resumes it to the losses of an uninterrupted run', async () => {
  const rows = ['sea', 'ship', 'whale', 'sail', 'rope', 'deck', 'mast', 'wind', 'rain', 'salt', 'fish', 'tide'].map((w) => JSON.stringify({ prompt: `say ${w}:`, completion: ` ${w} ${w}` })).join('\n');
  const make = async (kv: KV) => {
    const studio = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
    await studio.init('cpu');
    return studio;
  };
  const req = (modelId: string) => ({
    modelId, dataset: 'words.jsonl', bytes: new TextEncoder().encode(rows), method: 'lora' as const, lora: { r: 4, lora_dropout: 0.1 },
    train: { steps: 20, block_size: 16, batch_size: 4, learning_rate: 1e-2, checkpoint_every: 5 }, validation: 0.25, evalEvery: 4, patience: 10,
    samples: { every: 5, maxNewTokens: 6 },
  });
  // Uninterrupted.
  const kv0 = memoryKV();
  const s0 = await make(kv0);
  const m0 = await s0.importModel(entries('tiny-gpt2'), () => undefined);
  const straight: number[] = [];
  const straightEvals: number[] = [];
  const heard: string[] = [];
  const full = await s0.finetuneModel(req(m0.id), (r) => straight.push(r.loss), (e) => straightEvals.push(e.valLoss), (x) => heard.push(`${x.step}: ${x.prompt} -> ${x.text}`));
  assert.equal(straight.length, 20);
  // Two watched prompts (the first held-out ones), before training and every 5 steps.
  // At the end, the kept weights (the best validation loss was at step 4, so those are restored) are sampled once more.
  assert.equal(full.restoredBest && full.best?.step, 4);
  assert.deepEqual(full.samples.map((x) => `${x.step}${x.final ? ' final' : ''}`), ['0', '0', '5', '5', '10', '10', '15', '15', '20', '20', '4 final', '4 final']);
  assert.deepEqual(full.samples.map((x) => `${x.step}: ${x.prompt} -> ${x.text}`), heard, 'each sample is heard as it is made');
  assert.match(full.samples[0].prompt, /^say \w+/, 'the prompt of a held-out row');
  assert.notEqual(full.samples[0].text, full.samples[8].text, 'what the model writes changes as it learns');
  const kept = await s0.listTuneRuns();
  assert.deepEqual(kept.map((r) => [r.id, r.status, r.step, r.resumable, r.hasFiles]), [[full.runId, 'done', 20, false, true]]);
  assert.equal(kept[0].history.length, 20);
  assert.deepEqual(kept[0].samples, full.samples, 'the samples are kept with the run');
  assert.deepEqual((await s0.tuneRunFiles(full.runId)).map((f) => f.name), ['adapter_config.json', 'adapter_model.safetensors']);

  for (const how of ['stop', 'crash'] as const) {
    // Storage we can copy at any instant: a crash leaves exactly what was written by then.
    const map = new Map<string, unknown>();
    const kvOf = (m: Map<string, unknown>) => ({
      get: async <T,>(k: string) => (m.has(k) ? (structuredClone(m.get(k)) as T) : undefined),
      set: async (k: string, v: unknown) => void m.set(k, structuredClone(v)),
      del: async (k: string) => void m.delete(k),
      keys: async () => [...m.keys()],
    });
    let kv = kvOf(map);
    const s1 = await make(kv);
    const m1 = await s1.importModel(entries('tiny-gpt2'), () => undefined);
    const first: number[] = [];
    let crashed: Map<string, unknown> | null = null;
    await s1.finetuneModel(req(m1.id), (r) => {
      first.push(r.loss);
      if (how === 'stop' && r.step === 10) void s1.stopGenerating();
      if (how === 'crash' && r.step === 12) crashed = new Map([...map].map(([k, v]) => [k, structuredClone(v)]));
    });
    if (crashed) kv = kvOf(crashed);
    // A new Studio on the same storage: the page after a reload.
    const s2 = await make(kv);
    const [r] = await s2.listTuneRuns();
    assert.equal(r.status, how === 'stop' ? 'stopped' : 'interrupted', 'a run no tab holds, still marked running, was interrupted');
    assert.equal(r.step, 10, 'the latest checkpoint');
    assert.ok(r.resumable);
    assert.equal(r.history.length, 10, 'the history up to the checkpoint');
    if (how === 'stop') {
      // The dataset's options change for another run: this run still reads its rows as it did.
      const [d] = await s2.listDatasets();
      await s2.updateDataset(d.id, { options: { template: 'chatml' } });
    }
    const resumed: number[] = [];
    const resumedEvals: number[] = [];
    assert.deepEqual(r.samples, full.samples.filter((x) => x.step <= 10 && !x.final), 'the samples up to the checkpoint');
    const out = await s2.resumeTuneRun(r.id, (x) => resumed.push(x.loss), (e) => resumedEvals.push(e.valLoss));
    assert.equal(out.runId, r.id);
    assert.deepEqual(out.samples, full.samples, 'a resumed run writes what the uninterrupted one wrote');
    const all = [...first.slice(0, 10), ...resumed];
    all.forEach((l, i) => assert.ok(Math.abs(l - straight[i]) < 1e-5, `${how}: step ${i + 1}: ${l} vs ${straight[i]}`));
    assert.deepEqual(out.evals.map((e) => e.step), [4, 8, 12, 16, 20]);
    out.evals.forEach((e, i) => assert.ok(Math.abs(e.valLoss - straightEvals[i]) < 1e-5, `${how}: eval ${e.step}`));
    const done = (await s2.listTuneRuns())[0];
    assert.deepEqual([done.status, done.step, done.resumable, done.history.length], ['done', 20, false, 20]);
    await assert.rejects(s2.resumeTuneRun(r.id, () => undefined), /is finished/);
    await s2.deleteTuneRun(r.id);
    assert.deepEqual(await s2.listTuneRuns(), []);
    assert.deepEqual((await kv.keys()).filter((k) => k.startsWith('tune')), [], 'nothing of the run is left');
  }
});

test('a run leaves as one file (settings, dataset references, metrics CSV, adapter) and comes back; records of an older schema are upgraded, of a newer one refused', async () => {
  const { unzipFiles } = await import('../../src/core/io/zip');
  const { migrate, SCHEMA } = await import('../../src/store/schema');
  const kv = memoryKV();
  const studio = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-gpt2'), () => undefined);
  const rows = ['sea', 'ship', 'whale', 'sail', 'rope', 'deck', 'mast', 'wind'].map((w) => JSON.stringify({ prompt: `say ${w}:`, completion: ` ${w}` })).join('\n');
  const out = await studio.finetuneModel(
    { modelId: info.id, dataset: 'words.jsonl', bytes: new TextEncoder().encode(rows), method: 'lora', lora: { r: 4 }, train: { steps: 6, block_size: 16 }, validation: 0.25, evalEvery: 3 },
    () => undefined,
  );
  const csv = (await studio.tuneRunMetrics(out.runId)).trim().split('\n');
  assert.equal(csv[0], 'step,loss,learning_rate,grad_norm,tokens_per_sec,step_ms,device_bytes,val_loss,train_loss_since_last_check');
  assert.equal(csv.length, 7);
  assert.equal(csv[3].split(',')[7], String(out.evals[0].valLoss), 'the validation loss on the row of its check');
  assert.equal(csv[1].split(',')[7], '', 'and nothing where there was no check');

  const file = await studio.exportTuneRun(out.runId);
  assert.match(file.name, /\.tabtune-run\.zip$/);
  const entriesOf = await unzipFiles(file.bytes);
  assert.deepEqual([...entriesOf.keys()], ['run.json', 'metrics.csv', 'adapter/adapter_config.json', 'adapter/adapter_model.safetensors']);
  const runJson = JSON.parse(new TextDecoder().decode(entriesOf.get('run.json')));
  assert.equal(runJson.format, 'tabtune-run');
  assert.deepEqual(runJson.datasets.map((d: { name: string }) => d.name), ['words.jsonl'], 'the dataset is referenced by name, id and split');
  assert.equal(runJson.run.datasetId, runJson.datasets[0].id);

  // Into another browser (another storage): listed, with its metrics and adapter; not resumable.
  const other = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await other.init('cpu');
  const back = await other.importTuneRun(new Blob([file.bytes as BlobPart]), file.name);
  assert.deepEqual([back.id, back.status, back.step, back.history.length, back.resumable], [out.runId, 'done', 6, 6, false]);
  assert.deepEqual((await other.tuneRunFiles(back.id)).map((f) => f.name), ['adapter_config.json', 'adapter_model.safetensors']);
  const again = await other.importTuneRun(new Blob([file.bytes as BlobPart]), file.name);
  assert.notEqual(again.id, back.id, 'a second import does not overwrite the first');
  await assert.rejects(other.importTuneRun(new Blob(['not a zip']), 'x.zip'), /x\.zip is not a zip archive/);

  // Schema: a run record as the first version wrote it is upgraded on read (and written back).
  const v1 = { ...runJson.run, schema: 1 };
  delete v1.datasetId;
  await kv.set('tune/old-run', { ...v1, id: 'old-run' });
  const listed = (await studio.listTuneRuns()).find((r) => r.id === 'old-run');
  assert.ok(listed, 'the old record is listed');
  const stored = (await kv.get<{ schema: number; datasetId: string }>('tune/old-run'))!;
  assert.deepEqual([stored.schema, stored.datasetId], [SCHEMA.tune, runJson.run.request.datasetId]);
  assert.deepEqual((await kv.get<{ samples: unknown[] }>('tune/old-run'))!.samples, [], 'schema 3 keeps samples; older runs had none');
  assert.throws(() => migrate('tune', { ...v1, schema: SCHEMA.tune + 1 }, 'run future'), /run future was written by a newer tabtune \(schema 4; this one reads up to 3\)/);
  await kv.set('tune/future-run', { ...v1, id: 'future-run', schema: SCHEMA.tune + 1 });
  assert.equal((await studio.listTuneRuns()).find((r) => r.id === 'future-run'), undefined, 'a newer record is left alone, unlisted');
  assert.ok(await kv.get('tune/future-run'), 'and not deleted');
});

test('a run refused before training leaves nothing behind; a test part too small to score refuses before training', async () => {
  const kv = memoryKV();
  const studio = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-gpt2'), () => undefined);
  const rows = ['sea', 'ship', 'whale', 'sail'].map((w) => JSON.stringify({ prompt: `say ${w}:`, completion: ` ${w}` })).join('\n');
  const steps: number[] = [];
  await assert.rejects(
    studio.finetuneModel({ modelId: info.id, dataset: 'four.jsonl', bytes: new TextEncoder().encode(rows), method: 'lora', train: { steps: 5, block_size: 16 }, test: 0.1 }, (r) => steps.push(r.step)),
    /there are no test examples/,
  );
  assert.deepEqual(steps, [], 'refused before the first step');
  assert.deepEqual(await studio.listTuneRuns(), []);
  assert.deepEqual(await studio.listDatasets(), [], 'the copy kept for the refused run is gone');
});

test('storage: what takes the space is listed; the model and datasets a resumable run needs are kept until its checkpoints go', async () => {
  const kv = memoryKV();
  const studio = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-gpt2'), () => undefined);
  const rows = ['sea', 'ship', 'whale', 'sail', 'rope', 'deck'].map((w) => JSON.stringify({ prompt: `say ${w}:`, completion: ` ${w}` })).join('\n');
  const out = await studio.finetuneModel(
    { modelId: info.id, dataset: 'words.jsonl', bytes: new TextEncoder().encode(rows), method: 'lora', lora: { r: 4 }, train: { steps: 8, block_size: 16, checkpoint_every: 3 } },
    (r) => {
      if (r.step === 4) void studio.stopGenerating();
    },
  );
  assert.ok(out.cancelled);
  const [run] = await studio.listTuneRuns();
  assert.deepEqual([run.status, run.step, run.resumable], ['stopped', 4, true], 'a stop writes a checkpoint');
  const [dataset] = await studio.listDatasets();

  const items = await studio.storageItems();
  assert.deepEqual(items.map((x) => x.kind).sort(), ['checkpoints', 'dataset', 'model']);
  assert.deepEqual(items.map((x) => x.bytes), items.map((x) => x.bytes).sort((a, b) => b - a), 'biggest first');
  const ck = items.find((x) => x.kind === 'checkpoints')!;
  assert.equal(ck.id, run.id);
  assert.ok(ck.bytes > 0);
  assert.match(ck.detail, /can no longer resume from step 4; its metrics and adapter stay/);
  assert.match(items.find((x) => x.kind === 'model')!.blockedBy ?? '', new RegExp(`run ${run.id} needs it to resume \\(step 4 of 8\\)`));
  assert.ok(items.find((x) => x.kind === 'dataset')!.blockedBy);

  // Refused, named, and nothing deleted.
  await assert.rejects(studio.deleteDataset(dataset.id), (e: Error) => e.name === 'InUseError' && /the dataset words\.jsonl is needed to resume the fine-tuning run .* \(step 4 of 8\).*Nothing was deleted/.test(e.message));
  await assert.rejects(studio.deleteModel(info.id), (e: Error) => e.name === 'InUseError' && /the model tiny-gpt2 is needed to resume/.test(e.message));
  assert.equal((await studio.listDatasets()).length, 1);
  assert.equal((await studio.listModels()).length, 1);

  // The checkpoints go: the run keeps its history and adapter, cannot resume, and no longer holds the rest.
  await studio.deleteTuneCheckpoints(run.id);
  const [after] = await studio.listTuneRuns();
  assert.deepEqual([after.status, after.resumable, after.history.length, after.hasFiles], ['stopped', false, 4, true]);
  assert.deepEqual((await kv.keys()).filter((k) => k.startsWith('tuneckpt/') || k.startsWith('tunebest/')), []);
  assert.deepEqual((await studio.storageItems()).map((x) => [x.kind, x.blockedBy]).sort(), [['dataset', null], ['model', null]]);

  // A run interrupted before it finished has no adapter: its checkpoints are all it learned, and the offer says so.
  const again = await studio.finetuneModel(
    { modelId: info.id, dataset: 'words.jsonl', datasetId: dataset.id, method: 'lora', lora: { r: 4 }, train: { steps: 8, block_size: 16, checkpoint_every: 3 } },
    () => undefined,
  );
  await kv.set(`tune/${again.runId}`, { ...(await kv.get<Record<string, unknown>>(`tune/${again.runId}`))!, status: 'running', step: 6, latestCheckpoint: `tuneckpt/${again.runId}/000000006` });
  await kv.del(`tuneadapter/${again.runId}`);
  const offer = (await studio.storageItems()).find((x) => x.kind === 'checkpoints' && x.id === again.runId)!;
  assert.match(offer.detail, /everything this run learned \(6 steps\) is lost: it has no adapter to keep/);
  await studio.deleteTuneCheckpoints(again.runId);
  const lost = (await studio.listTuneRuns()).find((r) => r.id === again.runId)!;
  assert.deepEqual([lost.status, lost.resumable, lost.hasFiles], ['failed', false, false], 'it is not called stopped, and offers no download');
  await studio.deleteTuneRun(again.runId);

  await studio.deleteDataset(dataset.id);
  await studio.deleteModel(info.id);
  assert.deepEqual(await studio.storageItems(), []);
});

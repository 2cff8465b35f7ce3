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
import { memoryKV } from '../../src/store/kv';
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
    const out = await studio.finetuneModel(
      { modelId: info.id, text, dataset: 'sea.txt', method, lora: { r: 4 }, train: { steps: 6, block_size: 16, learning_rate: method === 'prompt' ? 5e-2 : 1e-2 }, numVirtualTokens: 4 },
      (r) => losses.push(r.loss),
    );
    assert.equal(out.steps, 6);
    assert.ok(losses.at(-1)! < losses[0], `${method}: loss fell`);
    assert.deepEqual(out.files.map((f) => f.name).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    const config = JSON.parse(new TextDecoder().decode(out.files.find((f) => f.name === 'adapter_config.json')!.bytes));
    assert.equal(config.peft_type, method === 'prompt' ? 'PROMPT_TUNING' : 'LORA');
    if (method === 'qlora') assert.ok(out.quantized!.bytesAfter < out.quantized!.bytesBefore);
    const gen = await studio.generate({ modelId: info.id, prompt: 'the sea', options: { temperature: 0, maxNewTokens: 3 } }, () => undefined);
    assert.ok(gen.ids.length >= 1, 'the tuned model generates');
    await assert.rejects(studio.finetuneModel({ modelId: info.id, text, dataset: 'sea.txt', method: 'lora' }, () => undefined), /already fine-tuned in this session/);
  }
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-llama'), () => undefined);
  await assert.rejects(studio.finetuneModel({ modelId: info.id, text: 'short', dataset: 'notes.txt', method: 'lora' }, () => undefined), /notes\.txt has \d+ tokens/);
  await assert.rejects(studio.finetuneModel({ modelId: info.id, text, dataset: 'x', method: 'bitfit' }, () => undefined), /has none/);
});

/**
 * Several adapters held for one base (src/core/peft/adapters.ts), as Compare uses them: switching
 * gives exactly the logits of a fresh base + that adapter, none gives the base, the base weights
 * are never rebuilt, nothing leaks, and an adapter for another base is refused with nothing changed.
 * Then the same through the Studio: a run's adapter is held after training, others are added from
 * files and from a kept run, and switching reads no model again.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { selectBackend } from '../../src/api/backend';
import type { FileEntry } from '../../src/api/protocol';
import { Studio } from '../../src/api/studio';
import { ConfigError } from '../../src/core/errors';
import { readSafetensors } from '../../src/core/io/safetensors';
import type { CausalLM, NamedWeights } from '../../src/core/model/base';
import { AdapterBank } from '../../src/core/peft/adapters';
import { attachLora, loadPeftAdapter, mergeLora, peftConfig, peftTensors, resolveLoraConfig } from '../../src/core/peft/lora';
import { attachPromptTuning, loadPromptTuning, promptTensors, promptTuningConfig } from '../../src/core/peft/prompt';
import { memoryKV } from '../../src/store/kv';
import { fixtureDir, loadFixture, logitsOf } from '../support/models';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

const dir = fixtureDir;
const load = loadFixture;

const IDS = [3, 17, 42, 5, 9, 60, 1, 33];

/** The reference adapter of tiny-gpt2 (PEFT's layout, from test/fixtures/make_golden.py). */
function fixtureAdapter(): { config: Record<string, unknown>; tensors: NamedWeights } {
  return {
    config: JSON.parse(readFileSync(dir('tiny-gpt2-lora') + 'adapter_config.json', 'utf8')),
    tensors: readSafetensors(new Uint8Array(readFileSync(dir('tiny-gpt2-lora') + 'adapter_model.safetensors')), 'adapter_model.safetensors').tensors,
  };
}

/** A second adapter for the same base: r 2 on every linear layer, B drawn at random, as PEFT's files. */
async function madeAdapter(): Promise<{ config: Record<string, unknown>; tensors: NamedWeights }> {
  const scratch = await load('tiny-gpt2');
  const cfg = resolveLoraConfig('gpt2', { r: 2, lora_alpha: 4, target_modules: 'all-linear' });
  attachLora(scratch, cfg, 11);
  for (const a of scratch.adapters.values()) tf.tidy(() => a.B.assign(tf.randomNormal(a.B.shape, 0, 0.5, 'float32', 3)));
  const out = { config: JSON.parse(JSON.stringify(peftConfig(scratch, cfg, 'tiny-gpt2'))), tensors: await peftTensors(scratch) };
  scratch.dispose();
  return out;
}

/** Four virtual tokens, as PEFT's prompt-tuning files. */
async function madePrompt(): Promise<{ config: Record<string, unknown>; tensors: NamedWeights }> {
  const scratch = await load('tiny-gpt2');
  attachPromptTuning(scratch, 4, 5);
  const out = { config: promptTuningConfig(scratch, 'tiny-gpt2', 2, 2), tensors: await promptTensors(scratch) };
  scratch.dispose();
  return out;
}

/** Logits of a model read fresh from its files, with one adapter loaded the ordinary way. */
async function freshLogits(attach: (m: CausalLM) => void): Promise<Float32Array> {
  const m = await load('tiny-gpt2');
  attach(m);
  const out = await logitsOf(m, IDS);
  m.dispose();
  return out;
}

test('two adapters and a prompt on one base: each switch gives exactly fresh base + adapter, none the base; the base is never rebuilt; nothing leaks', async () => {
  const A = fixtureAdapter();
  const B = await madeAdapter();
  const P = await madePrompt();
  const wantBase = await freshLogits(() => undefined);
  const wantA = await freshLogits((m) => loadPeftAdapter(m, A.config, A.tensors));
  const wantB = await freshLogits((m) => loadPeftAdapter(m, B.config, B.tensors));
  const wantP = await freshLogits((m) => loadPromptTuning(m, P.config, P.tensors));
  assert.notDeepEqual(wantA, wantBase);
  assert.notDeepEqual(wantB, wantBase);
  assert.notDeepEqual(wantA, wantB);

  const model = await load('tiny-gpt2');
  const params = new Map(model.params);
  const bank = new AdapterBank(model);
  const empty = tf.memory().numTensors;
  const a = bank.add('a', 'reference', A.config, A.tensors);
  const b = bank.add('b', 'made', B.config, B.tensors);
  bank.add('p', 'prompt', P.config, P.tensors);
  assert.deepEqual([a.r, a.targetModules, a.active], [A.config.r, A.config.target_modules, false]);
  assert.deepEqual([b.r, b.targetModules], [2, ['all-linear']]);
  assert.deepEqual(await logitsOf(model, IDS), wantBase, 'adding is not using');
  const held = tf.memory().numTensors;
  assert.ok(held > empty);

  for (const [id, want] of [['a', wantA], ['b', wantB], [null, wantBase], ['p', wantP], ['b', wantB], ['a', wantA], [null, wantBase], ['a', wantA]] as const) {
    bank.use(id);
    assert.equal(bank.active, id);
    assert.deepEqual(await logitsOf(model, IDS), want, `active ${id}: exactly the logits of a fresh base + ${id}`);
    assert.equal(tf.memory().numTensors, held, `switching to ${id} makes and disposes nothing`);
    for (const [name, v] of model.params) assert.equal(v, params.get(name), `${name} is the same variable: the base is not rebuilt`);
  }
  assert.deepEqual(bank.list().map((x) => [x.id, x.active]), [['a', true], ['b', false], ['p', false]]);

  // Removing the active one leaves the base; removing them all gives every tensor back.
  bank.remove('a');
  assert.equal(bank.active, null);
  assert.deepEqual(await logitsOf(model, IDS), wantBase);
  bank.remove('b');
  bank.remove('p');
  assert.equal(tf.memory().numTensors, empty, 'the adapters\' tensors are disposed with them');
  assert.throws(() => bank.use('a'), (e: unknown) => e instanceof ConfigError && /no adapter "a" is held/.test(e.message));
  bank.dispose();
  model.dispose();
});

test('an adapter for another base is refused naming the file and field, and nothing held changes', async () => {
  const model = await load('tiny-gpt2');
  const bank = new AdapterBank(model);
  const A = fixtureAdapter();
  bank.add('a', 'reference', A.config, A.tensors);
  bank.use('a');
  const before = await logitsOf(model, IDS);
  const count = tf.memory().numTensors;
  const key = 'base_model.model.transformer.h.1.attn.c_attn.lora_B.weight';
  const wrong = { ...A.tensors, [key]: { shape: [72, 3], data: new Float32Array(72 * 3) } };
  assert.throws(
    () => bank.add('bad', 'wrong rank', A.config, wrong, { file: 'wrong.safetensors' }),
    (e: unknown) => e instanceof ConfigError && e.file === 'wrong.safetensors' && e.field === key && /wrong\.safetensors: .*lora_B\.weight has shape \[72,3\], expected \[72,\d+\]/.test(e.message),
  );
  // A module this model does not have (a Llama adapter on GPT-2).
  const llama = readSafetensors(new Uint8Array(readFileSync(dir('tiny-llama-lora') + 'adapter_model.safetensors')), 'adapter_model.safetensors').tensors;
  assert.throws(
    () => bank.add('llama', 'llama', JSON.parse(readFileSync(dir('tiny-llama-lora') + 'adapter_config.json', 'utf8')), llama),
    (e: unknown) => e instanceof ConfigError && /tensor base_model\.model\.model\.layers\.0\.\w+\.\w+\.lora_[AB]\.weight is not a LoRA weight of a layer of this model/.test(e.message) && /^base_model\.model\.model\.layers\./.test(e.field ?? ''),
  );
  // A prompt of the wrong width.
  assert.throws(() => bank.add('p', 'p', { peft_type: 'PROMPT_TUNING', num_virtual_tokens: 2 }, { prompt_embeddings: { shape: [2, 5], data: new Float32Array(10) } }), (e: unknown) => e instanceof ConfigError && e.field === 'prompt_embeddings');
  assert.equal(tf.memory().numTensors, count, 'no tensor was made for a refused adapter');
  assert.deepEqual(bank.list().map((x) => [x.id, x.active]), [['a', true]]);
  assert.deepEqual(await logitsOf(model, IDS), before);
  bank.dispose();
  model.dispose();
});

test('a trained adapter is adopted, a new one trains beside it; a changed or merged base refuses to switch; a reloaded base takes the adapters along', async () => {
  const model = await load('tiny-gpt2');
  const bank = new AdapterBank(model);
  const base = await logitsOf(model, IDS);
  const cfg = resolveLoraConfig('gpt2', { r: 4 });
  attachLora(model, cfg, 1);
  for (const a of model.adapters.values()) tf.tidy(() => a.B.assign(tf.randomNormal(a.B.shape, 0, 0.5, 'float32', 8)));
  const trained = await logitsOf(model, IDS);
  const count = tf.memory().numTensors;
  bank.adopt('run-1', 'sea.txt (lora)', peftConfig(model, cfg, 'tiny-gpt2'), 'run-1');
  assert.equal(tf.memory().numTensors, count, 'adopting renames; it copies nothing that stays');
  assert.deepEqual(bank.list().map((x) => [x.id, x.runId, x.active]), [['run-1', 'run-1', true]]);
  assert.deepEqual(await logitsOf(model, IDS), trained);

  // The next run attaches fresh layers under the usual names: no clash with the held ones.
  bank.use(null);
  attachLora(model, cfg, 2);
  for (const a of model.adapters.values()) tf.tidy(() => a.B.assign(tf.randomNormal(a.B.shape, 0, 0.5, 'float32', 9)));
  assert.throws(() => bank.use('run-1'), /a method attached by a fine-tuning run/);
  const second = await logitsOf(model, IDS);
  bank.adopt('run-2', 'ship.txt (lora)', peftConfig(model, cfg, 'tiny-gpt2'), 'run-2');
  bank.use('run-1');
  assert.deepEqual(await logitsOf(model, IDS), trained);
  bank.use('run-2');
  assert.deepEqual(await logitsOf(model, IDS), second);

  // Full fine-tuning changes the base in place: switching is refused, with why.
  bank.markBaseChanged('full fine-tuning');
  assert.throws(() => bank.use(null), (e: unknown) => e instanceof ConfigError && /changed by full fine-tuning: its adapters cannot be switched on it\. Load the model again/.test(e.message));

  // The base read again: the held adapters go with it and give the same logits on it.
  const fresh = await load('tiny-gpt2');
  bank.letGo();
  model.dispose();
  bank.moveTo(fresh);
  assert.deepEqual(await logitsOf(fresh, IDS), base);
  bank.use('run-1');
  assert.deepEqual(await logitsOf(fresh, IDS), trained);

  // A merge folds the active adapter into the base and disposes it: it is no longer held, and the rest cannot switch.
  bank.forgetActive('a merge');
  mergeLora(fresh);
  assert.deepEqual(bank.list().map((x) => x.id), ['run-2']);
  assert.throws(() => bank.use('run-2'), /changed by a merge/);
  bank.dispose();
  fresh.dispose();
});

function entries(name: string, only?: RegExp): FileEntry[] {
  return readdirSync(dir(name))
    .filter((f) => !f.startsWith('golden') && (!only || only.test(f)))
    .map((f) => ({ path: `${name}/${f}`, file: new Blob([readFileSync(join(dir(name), f))]) }));
}

test('the Studio: a run\'s adapter is held after training, others come from files and from a kept run; switching reads no model again', async () => {
  const kv = memoryKV();
  const studio = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(entries('tiny-gpt2'), () => undefined);
  const logits = async () => Array.from((await studio.logits(info.id, { ids: IDS })).logits);
  const base = await logits();
  const text = 'the sea and the whale. the sea is the whale and the sea. '.repeat(20);
  const tuned = await studio.finetuneModel(
    { modelId: info.id, text, dataset: 'sea.txt', method: 'lora', lora: { r: 4, lora_dropout: 0 }, train: { steps: 3, batch_size: 2, block_size: 16, learning_rate: 5e-2 } },
    () => undefined,
  );
  const [run] = await studio.listAdapters(info.id);
  assert.deepEqual([run.id, run.runId, run.name, run.active, run.r, run.targetModules], [tuned.runId, tuned.runId, 'sea.txt (lora)', true, 4, ['c_attn']]);
  const afterRun = await logits();
  assert.notDeepEqual(afterRun, base, 'generation after a run uses what it learned');
  const loads = (await studio.diagnostics()).modelLoads;

  const fromFiles = await studio.addAdapter(info.id, entries('tiny-gpt2-lora', /^adapter_/));
  assert.equal(fromFiles.active, false);
  assert.equal((await studio.addAdapter(info.id, { runId: tuned.runId })).id, tuned.runId, 'a run\'s adapter is held once');
  assert.equal((await studio.listAdapters(info.id)).length, 2);
  await studio.useAdapter(info.id, null);
  assert.deepEqual(await logits(), base);
  await studio.useAdapter(info.id, fromFiles.id);
  const withFile = await logits();
  assert.notDeepEqual(withFile, base);
  await studio.useAdapter(info.id, tuned.runId);
  assert.deepEqual(await logits(), afterRun);

  // One generation with another adapter (or the base) leaves the active one as it was.
  const opts = { temperature: 0.9, topK: 0, topP: 1, seed: 3, maxNewTokens: 8 };
  const gen = (adapter?: string | null) => studio.generate({ modelId: info.id, prompt: 'the sea', options: opts, adapter }, () => undefined).then((r) => r.text);
  const asBase = await gen(null);
  assert.deepEqual(await logits(), afterRun);
  await studio.useAdapter(info.id, null);
  assert.equal(await gen(), asBase, 'the base column is what plain generation on the base gives');
  assert.equal((await studio.diagnostics()).modelLoads, loads, 'no model was read again for any switch');

  // A new Studio (a reload): the run's kept adapter comes from storage, under the run's id.
  const later = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await later.init('cpu');
  await later.loadModel(info.id, () => undefined);
  const again = await later.addAdapter(info.id, { runId: tuned.runId });
  assert.equal(again.runId, tuned.runId);
  await later.useAdapter(info.id, again.id);
  assert.deepEqual(Array.from((await later.logits(info.id, { ids: IDS })).logits), afterRun);
  await assert.rejects(later.addAdapter(info.id, { runId: 'nope' }), /no kept run "nope"/);
  await assert.rejects(later.useAdapter(info.id, 'nope'), /no adapter "nope" is held/);

  // Full fine-tuning changes the base: switching is refused until the model is loaded again, and the adapters stay.
  await studio.finetuneModel({ modelId: info.id, text, dataset: 'sea.txt', method: 'full', train: { steps: 1, batch_size: 2, block_size: 16 } }, () => undefined);
  await assert.rejects(studio.useAdapter(info.id, fromFiles.id), /changed by full fine-tuning/);
  await studio.loadModel(info.id, () => undefined);
  await studio.useAdapter(info.id, fromFiles.id);
  assert.deepEqual(await logits(), withFile, 'the adapter held before the full run, on the base read again');

  // QLoRA quantizes the base, but loses nothing by reading it again: Compare's next request does so
  // itself, once, and the QLoRA run's adapter is held beside the others.
  const qlora = await studio.finetuneModel(
    { modelId: info.id, text, dataset: 'sea.txt', method: 'qlora', bits: 8, lora: { r: 4, lora_dropout: 0 }, train: { steps: 2, batch_size: 2, block_size: 16, learning_rate: 5e-2 } },
    () => undefined,
  );
  const loadsBefore = (await studio.diagnostics()).modelLoads;
  assert.equal(await gen(null), asBase, 'the base column after a QLoRA run is the base read again');
  assert.equal((await studio.diagnostics()).modelLoads, loadsBefore + 1, 'read again once');
  await studio.useAdapter(info.id, fromFiles.id);
  assert.deepEqual(await logits(), withFile);
  assert.equal((await studio.diagnostics()).modelLoads, loadsBefore + 1, 'and not again to switch');
  assert.ok((await studio.listAdapters(info.id)).some((a) => a.runId === qlora.runId), 'the QLoRA run\'s adapter is held');

  await studio.useAdapter(info.id, null);
  const held = await studio.listAdapters(info.id);
  const before = tf.memory().numTensors;
  for (const a of held) await studio.removeAdapter(info.id, a.id);
  const bare = tf.memory().numTensors;
  assert.ok(bare < before);
  assert.deepEqual(await studio.listAdapters(info.id), []);
  assert.deepEqual(await logits(), base);
  // An adapter added, used for a generation and removed leaves exactly nothing behind.
  const once = await studio.addAdapter(info.id, entries('tiny-gpt2-lora', /^adapter_/));
  await studio.useAdapter(info.id, once.id);
  assert.deepEqual(await logits(), withFile);
  await gen(null);
  await studio.removeAdapter(info.id, once.id);
  assert.equal(tf.memory().numTensors, bare, 'no tensor left by an add, use and remove');
});

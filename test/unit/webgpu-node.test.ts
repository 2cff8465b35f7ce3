/**
 * The core on tfjs's WebGPU backend in Node, through Dawn (the npm package `webgpu`) on
 * Chromium's SwiftShader Vulkan driver: the same shaders the browser runs, checked against
 * the CPU backend number by number. test/run.mjs sets LD_LIBRARY_PATH and VK_ICD_FILENAMES
 * when Debian's chromium is installed; without them this file is skipped, and says why.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { GPT2 } from '../../src/core/model/gpt2';
import { Trainer } from '../../src/core/train/trainer';
import { SAMPLE_TOKENS, tinyConfigs } from '../support/fixtures';

const icd = process.env.VK_ICD_FILENAMES;
const skip = icd ? false : 'VK_ICD_FILENAMES is not set (run through npm test with Debian chromium installed)';

before(async () => {
  if (skip) return;
  tf.env().set('PROD', true);
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([]) }, configurable: true });
  // Registers the 'webgpu' backend now that navigator.gpu exists.
  await import('@tensorflow/tfjs-backend-webgpu');
});

after(() => {
  if (!skip && tf.findBackend('webgpu')) tf.removeBackend('webgpu');
});

async function run(backend: string, steps: number) {
  assert.ok(await tf.setBackend(backend), `${backend} started`);
  await tf.ready();
  assert.equal(tf.getBackend(), backend, 'no silent fallback');
  const { model: mc, train: tc } = tinyConfigs({ steps });
  const model = GPT2.random(mc, tc.seed);
  const trainer = new Trainer(model, tc);
  const start = tf.memory().numTensors;
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    const r = await trainer.trainStep(SAMPLE_TOKENS);
    assert.equal(r.numTensors, start, `no tensors leak on ${backend}`);
    losses.push(r.loss);
  }
  const weights = await model.exportWeights();
  trainer.dispose();
  model.dispose();
  return { losses, weights };
}

test('WebGPU training matches the CPU backend step by step', { skip }, async () => {
  const cpu = await run('cpu', 8);
  const gpu = await run('webgpu', 8);
  cpu.losses.forEach((l, i) => assert.ok(Math.abs(l - gpu.losses[i]) < 2e-3, `step ${i + 1}: cpu ${l} webgpu ${gpu.losses[i]}`));
  for (const name of Object.keys(cpu.weights)) {
    const a = cpu.weights[name].data;
    const b = gpu.weights[name].data;
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assert.ok(worst < 2e-3, `${name} differs by ${worst}`);
  }
});

test('Hugging Face GPT-2 and Llama checkpoints give PyTorch\'s logits on WebGPU', { skip }, async () => {
  const { readFileSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const { folderFiles } = await import('../../src/cli/files');
  const { buildModel, inspectModel, loadWeights } = await import('../../src/core/model/hf');
  await tf.setBackend('webgpu');
  assert.equal(tf.getBackend(), 'webgpu');
  for (const name of ['tiny-gpt2', 'tiny-llama', 'tiny-llama-bf16-sharded']) {
    const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
    const golden = JSON.parse(readFileSync(dir + 'golden.json', 'utf8')) as { ids: number[]; logits: number[][] };
    const files = folderFiles(dir);
    const summary = await inspectModel(files);
    // Half the models with their tables split into blocks, as on a device with small buffers.
    const split = name !== 'tiny-llama';
    const model = buildModel(summary.spec, await loadWeights(files, summary), split ? { maxTensorBytes: 2048 } : {});
    if (split) assert.ok([...model.params.keys()].some((k) => k.includes('#')));
    const logits = model.forward(tf.tensor2d(golden.ids, [1, golden.ids.length], 'int32'));
    const got = await logits.data();
    const want = golden.logits.flat();
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
    assert.ok(err < 1e-4, `${name}: max abs logit error ${err} on webgpu`);
    logits.dispose();
    model.dispose();
  }
});

test('LoRA on WebGPU: a reference PEFT adapter gives its logits, merged too, and training touches only the adapter', { skip }, async () => {
  const { readFileSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const { folderFiles } = await import('../../src/cli/files');
  const { buildModel, inspectModel, loadWeights } = await import('../../src/core/model/hf');
  const { readSafetensors } = await import('../../src/core/io/safetensors');
  const { loadPeftAdapter, mergeLora } = await import('../../src/core/peft/lora');
  const { AdamW } = await import('../../src/core/train/adamw');
  await tf.setBackend('webgpu');
  const fx = (n: string) => fileURLToPath(new URL(`../fixtures/${n}/`, import.meta.url));
  const files = folderFiles(fx('tiny-gpt2'));
  const summary = await inspectModel(files);
  const model = buildModel(summary.spec, await loadWeights(files, summary));
  const base = await model.exportWeights();
  const tensors = readSafetensors(new Uint8Array(readFileSync(fx('tiny-gpt2-lora') + 'adapter_model.safetensors')), 'adapter_model.safetensors').tensors;
  loadPeftAdapter(model, JSON.parse(readFileSync(fx('tiny-gpt2-lora') + 'adapter_config.json', 'utf8')), tensors);
  const golden = JSON.parse(readFileSync(fx('tiny-gpt2-lora') + 'golden.json', 'utf8')) as { ids: number[]; logits: number[][] };
  const check = async (label: string) => {
    const out = tf.tidy(() => model.forward(tf.tensor2d(golden.ids, [1, golden.ids.length], 'int32')));
    const got = await out.data();
    out.dispose();
    let err = 0;
    golden.logits.flat().forEach((v, i) => (err = Math.max(err, Math.abs(v - got[i]))));
    assert.ok(err < 1e-4, `${label}: max abs logit error ${err} on webgpu`);
  };
  await check('adapter');
  // A few AdamW steps on the adapter only: the base must stay bit-identical.
  const trainable = model.trainableParams();
  const opt = new AdamW(trainable, { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0 });
  const ids = tf.tensor2d([golden.ids.slice(0, -1)], [1, golden.ids.length - 1], 'int32');
  const targets = tf.tensor2d([golden.ids.slice(1)], [1, golden.ids.length - 1], 'int32');
  const start = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) {
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => model.loss(ids, targets), [...trainable.values()]);
      opt.apply(new Map(Object.entries(grads).map(([k, g]) => [model.hfName(k), g])), 1e-2);
    });
  }
  assert.equal(tf.memory().numTensors, start, 'no tensors leak on webgpu');
  const after = await model.exportWeights();
  for (const k of Object.keys(base)) assert.deepEqual(after[k].data, base[k].data, `${k} unchanged`);
  tf.dispose([ids, targets]);
  opt.dispose();
  model.dispose();

  const fresh = buildModel(summary.spec, await loadWeights(files, summary));
  loadPeftAdapter(fresh, JSON.parse(readFileSync(fx('tiny-gpt2-lora') + 'adapter_config.json', 'utf8')), tensors);
  mergeLora(fresh);
  const out = tf.tidy(() => fresh.forward(tf.tensor2d(golden.ids, [1, golden.ids.length], 'int32')));
  const got = await out.data();
  out.dispose();
  let err = 0;
  golden.logits.flat().forEach((v, i) => (err = Math.max(err, Math.abs(v - got[i]))));
  assert.ok(err < 1e-4, `merged: max abs logit error ${err} on webgpu`);
  fresh.dispose();
});

for (const bits of [8, 4] as const) test(`the ${bits}-bit blockwise base dequantizes on WebGPU as on the CPU`, { skip }, async () => {
  const { quantizeBlockwise, dequantize } = await import('../../src/core/peft/quant');
  const data = Float32Array.from({ length: 300 }, (_, i) => Math.cos(i * 0.37) * (1 + (i % 7)));
  const { packed, scales } = quantizeBlockwise(data, bits);
  const results: Float32Array[] = [];
  for (const backend of ['cpu', 'webgpu']) {
    await tf.setBackend(backend);
    const q = { bits, packed: tf.tensor1d(packed, 'int32'), scales: tf.tensor1d(scales), shape: [300] };
    const t = dequantize(q);
    results.push((await t.data()) as Float32Array);
    tf.dispose([t, q.packed, q.scales]);
  }
  let err = 0;
  results[0].forEach((v, i) => (err = Math.max(err, Math.abs(v - results[1][i]))));
  assert.ok(err < 1e-6, `webgpu dequantization differs by ${err}`);
});

// Last: it destroys the device.
test('QLoRA\'s quantized embedding table gives the CPU backend\'s rows on WebGPU, small tables and past 2^24 values', { skip }, async () => {
  const { resolveGPT2Config } = await import('../../src/core/config');
  const { quantizeBase } = await import('../../src/core/peft/quant');
  // Width 192 (whole blocks of 64). 96 rows: the codes' positions are looked up directly; 90,000
  // rows (17.3M values, past 2^24): WebGPU's float32 integers cannot address them, the table is unpacked whole.
  for (const rows of [96, 90_000]) {
    const ids = [0, 5, rows - 1, rows - 2, Math.floor(rows / 2), rows + 3, -1];
    const rowsOn = async (backend: string) => {
      assert.ok(await tf.setBackend(backend));
      const model = GPT2.random(resolveGPT2Config({ vocab_size: rows, n_positions: 8, n_embd: 192, n_layer: 1, n_head: 2 }), 5);
      await quantizeBase(model, 8);
      assert.ok(model.quantized.has('wte.weight'));
      const t = tf.tensor2d([ids], [1, ids.length], 'int32');
      const out = model.tokenEmbeddings(t);
      const data = await out.data();
      tf.dispose([t, out]);
      model.dispose();
      return data;
    };
    const cpu = await rowsOn('cpu');
    const gpu = await rowsOn('webgpu');
    let worst = 0;
    for (let i = 0; i < cpu.length; i++) worst = Math.max(worst, Math.abs(cpu[i] - gpu[i]));
    assert.ok(worst < 1e-6, `${rows} rows: WebGPU rows differ from the CPU's by ${worst}`);
    // Ids outside the table embed to zeros, as with a float32 table.
    assert.ok(cpu.slice(5 * 192).every((v) => v === 0), 'ids outside the table give zero rows');
  }
});

test('a lost WebGPU device stops the run with the reason, and the next run falls back and resumes', { skip }, async () => {
  const { Studio } = await import('../../src/api/studio');
  const { selectBackend } = await import('../../src/api/backend');
  const { memoryKV } = await import('../../src/store/kv');
  const { BackendError } = await import('../../src/core/errors');
  const { SAMPLE_TEXT } = await import('../support/fixtures');
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  const first = await studio.init('webgpu');
  assert.equal(first.name, 'webgpu');
  const req = { preset: 'tiny', text: SAMPLE_TEXT, dataset: 'moby-dick-ch1.txt', steps: 10 };
  await assert.rejects(
    studio.train(req, (r) => {
      // A real loss of the real device, as a driver reset or a GPU process crash would cause.
      if (r.step === 5) (tf.backend() as unknown as { device: { destroy(): void } }).device.destroy();
    }),
    (e: unknown) => e instanceof BackendError && /WebGPU device lost/.test(e.message),
  );
  const failed = await studio.getRun('tiny');
  assert.equal(failed?.status, 'failed');
  assert.equal(failed?.step, 4, 'the checkpoint before the loss is kept');
  const resumed: number[] = [];
  const done = await studio.train(req, (r) => resumed.push(r.step));
  assert.deepEqual(resumed, [5, 6, 7, 8, 9, 10]);
  assert.equal(done.status, 'done');
  const now = await studio.backend();
  assert.notEqual(now.name, 'webgpu');
  assert.equal(now.fallbacks[0].backend, 'webgpu');
  assert.match(now.fallbacks[0].reason, /device lost/);
});

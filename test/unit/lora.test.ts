/**
 * LoRA against PEFT's definition: what a fresh adapter does (nothing), what training touches
 * (only the adapter), merge, gradients, export and import, and an adapter written in PEFT's
 * layout by a reference script (test/fixtures/make_golden.py) with its reference logits.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, test } from 'node:test';
import { ConfigError } from '../../src/core/errors';
import { readSafetensors, writeSafetensors } from '../../src/core/io/safetensors';
import {
  attachLora, loadPeftAdapter, mergeAdapters, mergeLora, unmergeAdapters, peftConfig, peftTensors, resolveLoraConfig, trainableParameters,
} from '../../src/core/peft/lora';
import { AdamW } from '../../src/core/train/adamw';
import { Trainer } from '../../src/core/train/trainer';
import { tinyConfigs } from '../support/fixtures';
import { Rng } from '../../src/core/rng';
import { fixtureDir, loadFixture, logitsOf } from '../support/models';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

const dir = fixtureDir;
const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));
const load = loadFixture;

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const IDS = [3, 17, 42, 5, 9, 60, 1, 33];

test('a fresh adapter changes nothing; PEFT\'s parameter counts', async () => {
  const model = await load('tiny-gpt2');
  const before = await logitsOf(model, IDS);
  attachLora(model, resolveLoraConfig('gpt2', { r: 4, target_modules: 'all-linear' }), 1);
  assert.equal(model.adapters.size, 8, '4 linear layers x 2 blocks');
  assert.equal(maxDiff(await logitsOf(model, IDS), before), 0);
  const counts = trainableParameters(model);
  // c_attn 24->72, c_proj 24->24, c_fc 24->96, mlp.c_proj 96->24; r=4: r*(in+out) each, two blocks.
  const perBlock = 4 * (24 + 72) + 4 * (24 + 24) + 4 * (24 + 96) + 4 * (96 + 24);
  assert.equal(counts.trainable, 2 * perBlock);
  assert.equal(counts.total, model.numParams() + counts.trainable);
  assert.ok(Math.abs(counts.percent - (100 * counts.trainable) / counts.total) < 1e-9);
  assert.throws(() => attachLora(model, resolveLoraConfig('gpt2'), 1), /already has adapters/);
  model.dispose();
  assert.throws(() => resolveLoraConfig('gpt2', { r: 0 }), (e: unknown) => e instanceof ConfigError && e.field === 'lora.r');
  const llama = await load('tiny-llama');
  assert.throws(() => attachLora(llama, resolveLoraConfig('llama', { target_modules: ['c_attn'] }), 1), /match no layer of this model; its linear layers are q_proj, k_proj/);
  llama.dispose();
});

test('LoRA training changes only the adapter, memorises 8 examples, and leaks no tensors over 50 steps', async () => {
  const model = await load('tiny-llama');
  const base = await model.exportWeights();
  attachLora(model, resolveLoraConfig('llama', { r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: 'all-linear' }), 7);
  const trainable = model.trainableParams();
  const opt = new AdamW(trainable, { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0 });
  const rows = Array.from({ length: 8 }, (_, i) => Array.from({ length: 9 }, (_, j) => (i * 7 + j * 13 + 5) % 64));
  const ids = tf.tensor2d(rows.map((r) => r.slice(0, -1)), [8, 8], 'int32');
  const targets = tf.tensor2d(rows.map((r) => r.slice(1)), [8, 8], 'int32');
  const start = tf.memory().numTensors;
  let first = 0;
  let loss = 0;
  // Adam at 2e-2 oscillates a little near zero loss: the best after step 50 is the measure.
  let best = Infinity;
  for (let step = 1; step <= 150; step++) {
    const value = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => model.loss(ids, targets), [...trainable.values()]);
      const named = new Map(Object.entries(grads).map(([k, g]) => [model.hfName(k), g]));
      opt.apply(named, 2e-2);
      return value;
    });
    loss = (await value.data())[0];
    value.dispose();
    if (step === 1) first = loss;
    if (step > 50) best = Math.min(best, loss);
    if (step <= 50) assert.equal(tf.memory().numTensors, start, `tensors flat at step ${step}`);
  }
  assert.ok(first > 2 && best < 0.05, `memorised: loss ${first.toFixed(3)} -> ${best.toFixed(4)} (best after step 50; last ${loss.toFixed(4)})`);
  const after = await model.exportWeights();
  for (const k of Object.keys(base)) assert.deepEqual(after[k].data, base[k].data, `${k} is bit-identical`);
  tf.dispose([ids, targets]);
  opt.dispose();
  model.dispose();
});

test('merged weights give the adapter\'s logits (Conv1D and Linear layouts); unmerge gives the base back', async () => {
  for (const [name, arch] of [['tiny-gpt2', 'gpt2'], ['tiny-llama', 'llama']] as const) {
    const model = await load(name);
    const base = await logitsOf(model, IDS);
    const baseWeights = await model.exportWeights();
    attachLora(model, resolveLoraConfig(arch, { r: 4, target_modules: 'all-linear', use_rslora: arch === 'llama' }), 3);
    // Give B values, so the adapter does something.
    for (const a of model.adapters.values()) tf.tidy(() => a.B.assign(tf.randomNormal(a.B.shape, 0, 0.3, 'float32', 5)));
    const adapted = await logitsOf(model, IDS);
    assert.ok(maxDiff(adapted, base) > 1e-2, 'the adapter changes the logits');
    // merge_adapter / unmerge_adapter: folded in and taken out again, the adapter kept.
    mergeAdapters(model);
    mergeAdapters(model);
    assert.ok(maxDiff(await logitsOf(model, IDS), adapted) < 1e-4, `${name}: merged (twice is once)`);
    assert.throws(() => new Trainer(model, tinyConfigs().train), /unmerge them before training/);
    unmergeAdapters(model);
    assert.ok(maxDiff(await logitsOf(model, IDS), adapted) < 1e-4, `${name}: unmerged, the adapter works again`);
    const back = await model.exportWeights();
    for (const [k, w] of Object.entries(baseWeights)) {
      let err = 0;
      w.data.forEach((v, i) => (err = Math.max(err, Math.abs(v - back[k].data[i]))));
      assert.ok(err < 1e-6, `${name}: ${k} is back to the base within ${err}`);
    }
    mergeLora(model);
    assert.equal(model.adapters.size, 0);
    const merged = await logitsOf(model, IDS);
    assert.ok(maxDiff(adapted, merged) < 1e-4, `${name}: merged differs by ${maxDiff(adapted, merged)}`);
    model.dispose();
  }
});

test('LoRA gradients match finite differences', async () => {
  const model = await load('tiny-gpt2');
  attachLora(model, resolveLoraConfig('gpt2', { r: 2, lora_dropout: 0 }), 11);
  const [, layer] = [...model.adapters][0];
  tf.tidy(() => layer.B.assign(tf.randomNormal(layer.B.shape, 0, 0.5, 'float32', 9)));
  const ids = tf.tensor2d([IDS.slice(0, -1)], [1, 7], 'int32');
  const targets = tf.tensor2d([IDS.slice(1)], [1, 7], 'int32');
  const lossAt = async () => {
    const l = tf.tidy(() => model.loss(ids, targets));
    const v = (await l.data())[0];
    l.dispose();
    return v;
  };
  const { value, grads } = tf.variableGrads(() => model.loss(ids, targets), [layer.A, layer.B]);
  const g = { A: (await grads[layer.A.name].data()) as Float32Array, B: (await grads[layer.B.name].data()) as Float32Array };
  const eps = 1e-2;
  for (const [which, v] of [['A', layer.A], ['B', layer.B]] as const) {
    const data = (await v.data()) as Float32Array;
    for (const i of [0, 5, data.length - 1]) {
      const bumped = (delta: number) => {
        const d = data.slice();
        d[i] += delta;
        tf.tidy(() => v.assign(tf.tensor(d, v.shape)));
      };
      bumped(eps);
      const up = await lossAt();
      bumped(-eps);
      const down = await lossAt();
      bumped(0);
      const numeric = (up - down) / (2 * eps);
      assert.ok(Math.abs(numeric - g[which][i]) < 2e-3 + 0.02 * Math.abs(numeric), `${which}[${i}]: analytic ${g[which][i]}, numeric ${numeric}`);
    }
  }
  tf.dispose([ids, targets, value, ...Object.values(grads)]);
  model.dispose();
});

test('export to PEFT files and import give identical logits; bad adapters are named', async () => {
  const model = await load('tiny-llama');
  const cfg = resolveLoraConfig('llama', { r: 4 });
  attachLora(model, cfg, 5);
  for (const a of model.adapters.values()) tf.tidy(() => a.B.assign(tf.randomNormal(a.B.shape, 0, 0.3, 'float32', 2)));
  const want = await logitsOf(model, IDS);
  const config = peftConfig(model, cfg, 'tiny-llama');
  assert.equal(config.peft_type, 'LORA');
  assert.equal(config.fan_in_fan_out, false);
  const bytes = writeSafetensors(await peftTensors(model), { format: 'pt' });
  const file = readSafetensors(bytes, 'adapter_model.safetensors');
  assert.deepEqual(file.metadata, { format: 'pt' });
  assert.ok('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' in file.tensors);
  assert.deepEqual(file.tensors['base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight'].shape, [16, 4]);
  model.dispose();

  const fresh = await load('tiny-llama');
  const back = loadPeftAdapter(fresh, JSON.parse(JSON.stringify(config)), file.tensors);
  assert.deepEqual(back.target_modules, ['q_proj', 'v_proj']);
  assert.equal(maxDiff(await logitsOf(fresh, IDS), want), 0);
  fresh.dispose();

  const other = await load('tiny-llama');
  const wrong = { ...file.tensors, 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { shape: [5, 32], data: new Float32Array(160) } };
  assert.throws(() => loadPeftAdapter(other, config, wrong), (e: unknown) => e instanceof ConfigError && /has shape \[5,32\], expected \[4,32\]/.test(e.message));
  assert.throws(() => loadPeftAdapter(other, config, { 'base_model.model.lm_head.lora_A.weight': file.tensors['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'] }), /is not a LoRA weight of a layer of this model/);
  assert.throws(() => loadPeftAdapter(other, { ...config, peft_type: 'IA3' }, file.tensors), /peft_type "IA3" is not LORA/);
  assert.throws(() => loadPeftAdapter(other, { ...config, alpha_pattern: { q_proj: 32 } }, file.tensors), /per-layer alpha_pattern is not supported/);
  other.dispose();
});

for (const [adapter, baseName] of [['tiny-gpt2-lora', 'tiny-gpt2'], ['tiny-llama-lora', 'tiny-llama']] as const) {
  test(`${adapter}: an adapter in PEFT's layout from the reference script gives its reference logits`, async () => {
    const model = await load(baseName);
    const config = json(dir(adapter) + 'adapter_config.json');
    const tensors = readSafetensors(new Uint8Array(readFileSync(dir(adapter) + 'adapter_model.safetensors')), 'adapter_model.safetensors').tensors;
    const cfg = loadPeftAdapter(model, config, tensors);
    assert.equal(cfg.use_rslora, adapter === 'tiny-llama-lora');
    const golden = json(dir(adapter) + 'golden.json') as { ids: number[]; logits: number[][] };
    const err = maxDiff(await logitsOf(model, golden.ids), golden.logits.flat());
    assert.ok(err < 1e-4, `max abs logit error ${err}`);
    mergeLora(model);
    const merged = maxDiff(await logitsOf(model, golden.ids), golden.logits.flat());
    assert.ok(merged < 1e-4, `merged: max abs logit error ${merged}`);
    model.dispose();
  });
}

test('BitFit trains the biases only; a model without biases is refused with a reason', async () => {
  const { useBitFit } = await import('../../src/core/peft/bitfit');
  const model = await load('tiny-gpt2');
  const before = await model.exportWeights();
  useBitFit(model);
  const trainable = model.trainableParams();
  assert.ok([...trainable.keys()].every((k) => k.endsWith('.bias')) && trainable.size === 13, 'six biases per block, two blocks, and ln_f');
  const counts = trainableParameters(model);
  assert.equal(counts.total, model.numParams());
  const opt = new AdamW(trainable, { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0 });
  const ids = tf.tensor2d([IDS.slice(0, -1)], [1, 7], 'int32');
  const targets = tf.tensor2d([IDS.slice(1)], [1, 7], 'int32');
  for (let i = 0; i < 3; i++) {
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => model.loss(ids, targets), [...trainable.values()]);
      opt.apply(new Map(Object.entries(grads).map(([k, g]) => [model.hfName(k), g])), 1e-2);
    });
  }
  const after = await model.exportWeights();
  for (const k of Object.keys(before)) {
    if (k.endsWith('.bias')) assert.notDeepEqual(after[k].data, before[k].data, `${k} trained`);
    else assert.deepEqual(after[k].data, before[k].data, `${k} frozen`);
  }
  tf.dispose([ids, targets]);
  opt.dispose();
  model.dispose();
  const llama = await load('tiny-llama');
  assert.throws(() => useBitFit(llama), /this model has none/);
  llama.dispose();
});

test('a LoRA run (with dropout) resumed from its checkpoint continues exactly as an uninterrupted one', async () => {
  const { Trainer } = await import('../../src/core/train/trainer');
  const { resolveTrainConfig } = await import('../../src/core/config');
  const tc = resolveTrainConfig({ steps: 8, batch_size: 4, block_size: 12, learning_rate: 1e-2, min_lr: 1e-3, warmup_steps: 1 }, { n_positions: 64 });
  const tokens = Int32Array.from({ length: 400 }, (_, i) => (i * 7 + (i % 13)) % 64);
  const lcfg = resolveLoraConfig('llama', { r: 4, lora_dropout: 0.1 });
  const straight: number[] = [];
  {
    const m = await load('tiny-llama');
    attachLora(m, lcfg, 9);
    const t = new Trainer(m, tc);
    for (let i = 0; i < 8; i++) straight.push((await t.trainStep(tokens)).loss);
    t.dispose();
    m.dispose();
  }
  const m1 = await load('tiny-llama');
  attachLora(m1, lcfg, 9);
  const t1 = new Trainer(m1, tc);
  const resumed: number[] = [];
  for (let i = 0; i < 4; i++) resumed.push((await t1.trainStep(tokens)).loss);
  const ckpt = structuredClone(await t1.checkpoint());
  assert.ok(Object.keys(ckpt.weights).every((k) => k.includes('.lora_')), 'a LoRA checkpoint holds the adapter, not the base');
  t1.dispose();
  m1.dispose();
  const m2 = await load('tiny-llama');
  attachLora(m2, lcfg, 123); // other init: the checkpoint must overwrite it
  const t2 = new Trainer(m2, tc);
  t2.restore(ckpt);
  for (let i = 0; i < 4; i++) resumed.push((await t2.trainStep(tokens)).loss);
  t2.dispose();
  m2.dispose();
  assert.deepEqual(resumed, straight);
});

test('prompt tuning: only the virtual tokens train, logits keep the input\'s length, the cache agrees, PEFT files round-trip', async () => {
  const { attachPromptTuning, loadPromptTuning, promptTensors, promptTuningConfig } = await import('../../src/core/peft/prompt');
  const { KVCache } = await import('../../src/core/model/base');
  for (const name of ['tiny-gpt2', 'tiny-llama']) {
    const model = await load(name);
    const base = await model.exportWeights();
    attachPromptTuning(model, 5, 3);
    const trainable = model.trainableParams();
    assert.deepEqual([...trainable.keys()], ['prompt_embeddings']);
    assert.deepEqual(trainableParameters(model).trainable, 5 * model.hiddenSize);
    const full = tf.tidy(() => model.forward(tf.tensor2d([IDS], [1, IDS.length], 'int32')));
    assert.deepEqual(full.shape, [1, IDS.length, model.vocabSize], 'virtual positions are not in the logits');
    // Through the cache: the prompt goes in with the first pass only.
    const cache = new KVCache();
    const first = tf.tidy(() => model.forward(tf.tensor2d([IDS.slice(0, 3)], [1, 3], 'int32'), cache));
    const rest = tf.tidy(() => model.forward(tf.tensor2d([IDS.slice(3)], [1, IDS.length - 3], 'int32'), cache));
    assert.equal(cache.length, 5 + IDS.length);
    const joined = [...(await first.data()), ...(await rest.data())];
    assert.ok(maxDiff(joined, await full.data()) < 1e-4, `${name}: cached passes agree with one pass`);
    cache.dispose();
    tf.dispose([first, rest, full]);

    const opt = new AdamW(trainable, { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0 });
    const ids = tf.tensor2d([IDS.slice(0, -1)], [1, 7], 'int32');
    const targets = tf.tensor2d([IDS.slice(1)], [1, 7], 'int32');
    let firstLoss = 0;
    let lastLoss = 0;
    for (let i = 0; i < 60; i++) {
      const v = tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => model.loss(ids, targets), [...trainable.values()]);
        opt.apply(new Map(Object.entries(grads).map(([k, g]) => [model.hfName(k), g])), 5e-2);
        return value;
      });
      lastLoss = (await v.data())[0];
      if (i === 0) firstLoss = lastLoss;
      v.dispose();
    }
    assert.ok(lastLoss < firstLoss - 0.5, `${name}: the prompt learned (${firstLoss} -> ${lastLoss})`);
    const after = await model.exportWeights();
    for (const k of Object.keys(base)) assert.deepEqual(after[k].data, base[k].data, `${k} frozen`);

    const want = await logitsOf(model, IDS);
    const config = promptTuningConfig(model, name, 2, 3);
    const file = readSafetensors(writeSafetensors(await promptTensors(model), { format: 'pt' }), 'adapter_model.safetensors');
    const fresh = await load(name);
    loadPromptTuning(fresh, JSON.parse(JSON.stringify(config)), file.tensors);
    assert.equal(maxDiff(await logitsOf(fresh, IDS), want), 0);
    assert.throws(() => loadPromptTuning(fresh, config, file.tensors), /already has a trainable method/);
    tf.dispose([ids, targets]);
    opt.dispose();
    model.dispose();
    fresh.dispose();
  }
});

for (const bits of [8, 4] as const) {
test(`QLoRA-style: ${bits}-bit blockwise base saves memory, stays close, trains adapters, merges`, async () => {
  const { quantizeBase, quantizeBlockwise, dequantize, QUANT_BLOCK, NF4 } = await import('../../src/core/peft/quant');
  // Round trip of the quantizer: every value within half a step of its block's levels.
  const data = Float32Array.from({ length: 200 }, (_, i) => Math.sin(i * 1.7) * (i % 50 === 0 ? 5 : 1));
  const { packed, scales } = quantizeBlockwise(data, bits);
  const q = { bits, packed: tf.tensor1d(packed, 'int32'), scales: tf.tensor1d(scales), shape: [200] };
  const back = (await dequantize(q).data()) as Float32Array;
  // NF4's widest gap between neighbouring levels is at the ends (about 0.30 of the absmax).
  const halfStep = bits === 8 ? 0.5 : Math.max(...Array.from(NF4.subarray(1), (v, k) => v - NF4[k])) / 2;
  data.forEach((v, i) => assert.ok(Math.abs(v - back[i]) <= scales[Math.floor(i / QUANT_BLOCK)] * halfStep + 1e-6, `value ${i}: ${v} came back as ${back[i]}`));
  tf.dispose([q.packed, q.scales]);
  // On normally distributed weights (what NF4 is made for) the relative RMS error is about 0.6%
  // for 8 bits and 9% for NF4.
  const rng = new Rng(5);
  const normal = Float32Array.from({ length: 64 * 500 }, () => rng.normal());
  const nq = quantizeBlockwise(normal, bits);
  const nt = dequantize({ bits, packed: tf.tensor1d(nq.packed, 'int32'), scales: tf.tensor1d(nq.scales), shape: [normal.length] });
  const nback = (await nt.data()) as Float32Array;
  tf.dispose(nt);
  let se = 0;
  let ss = 0;
  normal.forEach((v, i) => ((se += (v - nback[i]) ** 2), (ss += v * v)));
  const rmse = Math.sqrt(se / ss);
  assert.ok(rmse < (bits === 8 ? 0.01 : 0.1), `relative RMS error on normal weights: ${rmse}`);

  const model = await load('tiny-llama');
  const before = await logitsOf(model, IDS);
  const paramsBefore = model.numParams();
  const linearWeights = model.linearModules().reduce((n, m) => n + m.in * m.out, 0);
  const { bytesBefore, bytesAfter } = await quantizeBase(model, bits);
  const expected = linearWeights * 4 - (Math.ceil(linearWeights / (24 / bits)) * 4 + (linearWeights / QUANT_BLOCK) * 4);
  assert.ok(Math.abs(bytesBefore - bytesAfter - expected) <= 4 * model.linearModules().length * 4, `saved ${bytesBefore - bytesAfter} bytes, expected about ${expected}`);
  assert.ok((bytesBefore - bytesAfter) / (linearWeights * 4) > (bits === 8 ? 0.6 : 0.78), `linear weights take about ${bits === 8 ? 'a third' : 'a sixth'} of their float32 bytes`);
  assert.equal(model.numParams(), paramsBefore, 'the parameter count is unchanged');
  const quantized = await logitsOf(model, IDS);
  const rel = maxDiff(quantized, before) / Math.max(...Array.from(before, Math.abs));
  // A tiny random model amplifies weight error; the weight-level check below is the quality measure.
  assert.ok(rel < (bits === 8 ? 0.05 : 0.5), `${bits}-bit logits stay close: ${rel}`);

  attachLora(model, resolveLoraConfig('llama', { r: 4, lora_dropout: 0, target_modules: 'all-linear' }), 2);
  const trainable = model.trainableParams();
  const packedBefore = await Promise.all([...model.quantized.values()].map((t) => t.packed.data()));
  const opt = new AdamW(trainable, { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0 });
  const ids = tf.tensor2d([IDS.slice(0, -1)], [1, 7], 'int32');
  const targets = tf.tensor2d([IDS.slice(1)], [1, 7], 'int32');
  const start = tf.memory().numTensors;
  const losses: number[] = [];
  for (let i = 0; i < 30; i++) {
    const v = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => model.loss(ids, targets), [...trainable.values()]);
      opt.apply(new Map(Object.entries(grads).map(([k, g]) => [model.hfName(k), g])), 2e-2);
      return value;
    });
    losses.push((await v.data())[0]);
    v.dispose();
    assert.equal(tf.memory().numTensors, start, `no leaks at step ${i + 1}`);
  }
  assert.ok(losses.at(-1)! < losses[0] - 1, `QLoRA learns: ${losses[0]} -> ${losses.at(-1)}`);
  const packedAfter = await Promise.all([...model.quantized.values()].map((t) => t.packed.data()));
  packedAfter.forEach((p, i) => assert.deepEqual(p, packedBefore[i], `the ${bits}-bit base is untouched`));
  const adapted = await logitsOf(model, IDS);
  mergeLora(model);
  assert.equal(model.quantized.size, 0, 'merging brings the merged layers back to float32');
  assert.ok(maxDiff(await logitsOf(model, IDS), adapted) < 1e-4);
  tf.dispose([ids, targets]);
  opt.dispose();
  model.dispose();
});
}

for (const bits of [8, 4] as const) {
test(`QLoRA ${bits}-bit: the token embedding table is held in ${bits} bits too, its rows read straight from the codes`, async () => {
  const { GPT2 } = await import('../../src/core/model/gpt2');
  const { resolveGPT2Config, resolveTrainConfig } = await import('../../src/core/config');
  const { quantizeBase, dequantize } = await import('../../src/core/peft/quant');
  for (const backend of ['cpu', 'wasm'] as const) {
    await useBackend(backend);
    // Width 64: one block of 64 per row, so the table can be quantized.
    const config = resolveGPT2Config({ vocab_size: 96, n_positions: 16, n_embd: 64, n_layer: 2, n_head: 2 });
    const model = GPT2.random(config, 3);
    const before = await logitsOf(model, IDS);
    const { bytesBefore, bytesAfter } = await quantizeBase(model, bits);
    // Every weight but the 16 x 64 positions and the norms' and biases' vectors is in the codes.
    assert.ok(bytesAfter - (bytesBefore - model.numParams() * 4) < model.numParams() * 4 * (bits === 8 ? 0.4 : 0.25), `${backend}: ${bytesAfter} of ${bytesBefore} bytes`);
    assert.ok(model.quantized.has('wte.weight'), 'the tied embedding and output table is quantized');
    assert.ok(!model.quantized.has('wpe.weight'), 'position embeddings stay float32');
    // The rows looked up equal the rows of the whole table unpacked.
    const ids = tf.tensor2d([[5, 95, 0, 5], [17, 64, 63, 1]], [2, 4], 'int32');
    const rows = model.tokenEmbeddings(ids);
    const table = dequantize(model.quantized.get('wte.weight')!);
    const want = tf.gather(table, tf.reshape(ids, [-1]));
    assert.equal(maxDiff(await rows.data(), await want.data()), 0, `${backend}: rows from the codes equal the unpacked table's`);
    tf.dispose([ids, rows, table, want]);
    const rel = maxDiff(await logitsOf(model, IDS), before) / Math.max(...Array.from(before, Math.abs));
    assert.ok(rel < (bits === 8 ? 0.05 : 0.5), `${backend}: logits stay close: ${rel}`);
    // LoRA trains on it, leaving the table as it was and no tensor behind.
    attachLora(model, resolveLoraConfig('gpt2', { r: 4, lora_dropout: 0 }), 2);
    const trainer = new Trainer(model, resolveTrainConfig({ steps: 5, batch_size: 2, block_size: 8, learning_rate: 1e-2, min_lr: 1e-3 }, config));
    const tokens = new Int32Array(64).map((_, i) => (i * 7) % 96);
    await trainer.trainStep(tokens);
    const start = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await trainer.trainStep(tokens);
    assert.equal(tf.memory().numTensors, start, `${backend}: no tensor left behind`);
    trainer.dispose();
    model.dispose();
  }
  await useBackend('cpu');
});
}

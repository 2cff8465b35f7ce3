/**
 * Golden tests in the manner of llm.c: tiny random checkpoints in Hugging Face's layout, with the
 * logits, loss and gradients PyTorch computed for them (test/fixtures/make_golden.py), loaded by
 * tabtune's own safetensors reader and model code and compared number by number.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { before, test } from 'node:test';
import { folderFiles } from '../../src/cli/files';
import { ConfigError } from '../../src/core/errors';
import { SafetensorsError, readSafetensors, writeSafetensors } from '../../src/core/io/safetensors';
import { buildModel, inspectModel, loadWeights, parseHFConfig, type ModelFiles } from '../../src/core/model/hf';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));

interface Golden {
  ids: number[];
  targets: number[];
  logits: number[][];
  loss: number;
}

const golden = (name: string): Golden => JSON.parse(readFileSync(fixture(name) + 'golden.json', 'utf8'));

async function load(files: ModelFiles) {
  const summary = await inspectModel(files);
  return { summary, model: buildModel(summary.spec, await loadWeights(files, summary)) };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function checkLogits(name: string) {
  const g = golden(name);
  const { summary, model } = await load(folderFiles(fixture(name)));
  const T = g.ids.length;
  const ids = tf.tensor2d(g.ids, [1, T], 'int32');
  const targets = tf.tensor2d(g.targets, [1, T], 'int32');
  const logits = model.forward(ids);
  const loss = model.loss(ids, targets);
  const err = maxAbsDiff(await logits.data(), g.logits.flat());
  assert.ok(err < 1e-4, `${name}: max abs logit error ${err}`);
  const lossErr = Math.abs((await loss.data())[0] - g.loss);
  assert.ok(lossErr < 1e-5, `${name}: loss error ${lossErr}`);
  tf.dispose([ids, targets, logits, loss]);
  model.dispose();
  return summary;
}

test('GPT-2 (hub layout, attn.bias buffers) matches PyTorch logits and loss', async () => {
  const s = await checkLogits('tiny-gpt2');
  assert.equal(s.spec.arch, 'gpt2');
  assert.equal(s.vocabSize, 64);
  assert.equal(s.contextLength, 32);
  assert.deepEqual(s.dtypes, ['F32']);
});

test('Llama (GQA, RoPE, RMSNorm, SwiGLU, separate lm_head) matches PyTorch logits and loss', async () => {
  const s = await checkLogits('tiny-llama');
  assert.equal(s.spec.arch, 'llama');
  assert.equal(s.spec.arch === 'llama' && s.spec.config.num_key_value_heads, 2);
});

test('the WASM backend gives the same logits as PyTorch for both architectures', async () => {
  await useBackend('wasm');
  try {
    await checkLogits('tiny-gpt2');
    await checkLogits('tiny-llama');
  } finally {
    await useBackend('cpu');
  }
});

test('Llama with head_dim apart from hidden/heads, rope_theta 1e5, 4:1 grouped queries and 48 positions matches PyTorch', async () => {
  const s = await checkLogits('tiny-llama-headdim');
  assert.equal(s.spec.arch === 'llama' && s.spec.config.head_dim, 12);
  await checkGradients('tiny-llama-headdim');
});

test('Llama stored as BF16 in two shards with an index, tied embeddings, matches PyTorch', async () => {
  const s = await checkLogits('tiny-llama-bf16-sharded');
  assert.deepEqual(s.dtypes, ['BF16']);
  assert.equal(s.files.length, 2);
  assert.equal(s.fileBytes < s.paramBytes, true, 'BF16 files are half the float32 size');
});

async function checkGradients(name: string) {
  const g = golden(name);
  const { model } = await load(folderFiles(fixture(name)));
  const want = readSafetensors(new Uint8Array(readFileSync(fixture(name) + 'golden-grads.safetensors')), 'golden-grads.safetensors').tensors;
  const T = g.ids.length;
  const ids = tf.tensor2d(g.ids, [1, T], 'int32');
  const targets = tf.tensor2d(g.targets, [1, T], 'int32');
  const { value, grads } = tf.variableGrads(() => model.loss(ids, targets), [...model.params.values()]);
  assert.equal(Object.keys(grads).length, Object.keys(want).length);
  for (const [vname, grad] of Object.entries(grads)) {
    const pname = model.hfName(vname);
    const err = maxAbsDiff(await grad.data(), want[pname].data);
    assert.ok(err < 1e-5, `${name} ${pname}: max abs gradient error ${err}`);
  }
  tf.dispose([ids, targets, value, ...Object.values(grads)]);
  model.dispose();
}

test('GPT-2 gradients match PyTorch for every parameter', () => checkGradients('tiny-gpt2'));

test('Llama gradients match PyTorch for every parameter', () => checkGradients('tiny-llama'));

test('on WASM, where products with a weight take the plain 2-D path (src/core/model/matmul.ts), gradients still match PyTorch', async () => {
  await useBackend('wasm');
  try {
    await checkGradients('tiny-gpt2');
    await checkGradients('tiny-llama');
    await checkGradients('tiny-llama-headdim');
  } finally {
    await useBackend('cpu');
  }
});

test('tables larger than a device buffer are split into row blocks and still give PyTorch\'s logits and gradients', async () => {
  for (const [name, cap] of [['tiny-gpt2', 2000], ['tiny-llama', 3000]] as const) {
    const g = golden(name);
    const files = folderFiles(fixture(name));
    const summary = await inspectModel(files);
    const weights = await loadWeights(files, summary);
    const model = buildModel(summary.spec, weights, { maxTensorBytes: cap });
    const parts = [...model.params.keys()].filter((k) => k.includes('#'));
    assert.ok(parts.length >= 3, `${name}: tables split into ${parts.length} blocks`);
    for (const k of parts) assert.ok(model.params.get(k)!.size * 4 <= cap, `${k} fits the cap`);
    const T = g.ids.length;
    const ids = tf.tensor2d(g.ids, [1, T], 'int32');
    const targets = tf.tensor2d(g.targets, [1, T], 'int32');
    const logits = model.forward(ids);
    assert.ok(maxAbsDiff(await logits.data(), g.logits.flat()) < 1e-4, `${name}: split logits`);
    // Gradients of the blocks, stacked back in row order, are the whole table's gradient.
    const want = readSafetensors(new Uint8Array(readFileSync(fixture(name) + 'golden-grads.safetensors')), 'golden-grads.safetensors').tensors;
    const { value, grads } = tf.variableGrads(() => model.loss(ids, targets), [...model.params.values()]);
    const byTable = new Map<string, Float32Array[]>();
    for (const [vname, grad] of Object.entries(grads)) {
      const pname = model.hfName(vname);
      const data = (await grad.data()) as Float32Array;
      if (pname.includes('#')) {
        const [table, i] = pname.split('#');
        const list = byTable.get(table) ?? [];
        list[Number(i)] = data;
        byTable.set(table, list);
      } else assert.ok(maxAbsDiff(data, want[pname].data) < 1e-5, `${name} ${pname}`);
    }
    for (const [table, blocks] of byTable) {
      const whole = new Float32Array(blocks.reduce((n, b) => n + b.length, 0));
      let at = 0;
      for (const b of blocks) {
        whole.set(b, at);
        at += b.length;
      }
      assert.ok(maxAbsDiff(whole, want[table].data) < 1e-5, `${name} ${table} (split) gradient`);
    }
    const exported = await model.exportWeights();
    assert.deepEqual(Object.keys(exported).sort(), Object.keys(weights).sort(), 'export uses the Hugging Face names');
    for (const k of Object.keys(weights)) assert.deepEqual(exported[k].data, weights[k].data, k);
    tf.dispose([ids, targets, logits, value, ...Object.values(grads)]);
    model.dispose();
  }
});

/** The tiny GPT-2 re-saved the way GPT2LMHeadModel saves: "transformer." names plus lm_head.weight. */
function prefixedGPT2(): ModelFiles {
  const base = folderFiles(fixture('tiny-gpt2'));
  const orig = readSafetensors(new Uint8Array(readFileSync(fixture('tiny-gpt2') + 'model.safetensors')), 'model.safetensors');
  const renamed: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [k, v] of Object.entries(orig.tensors)) renamed[`transformer.${k}`] = v;
  renamed['lm_head.weight'] = orig.tensors['wte.weight'];
  const bytes = writeSafetensors(renamed);
  return {
    ...base,
    size: async (p) => (p === 'model.safetensors' ? bytes.byteLength : base.size(p)),
    read: async (p, s, e) => (p === 'model.safetensors' ? bytes.slice(s, e) : base.read(p, s, e)),
  };
}

test('GPT-2 names with the "transformer." prefix and a tied lm_head load to the same logits', async () => {
  const g = golden('tiny-gpt2');
  const { model } = await load(prefixedGPT2());
  const logits = model.forward(tf.tensor2d(g.ids, [1, g.ids.length], 'int32'));
  assert.ok(maxAbsDiff(await logits.data(), g.logits.flat()) < 1e-4);
  logits.dispose();
  model.dispose();
});

test('what tabtune cannot run is refused with the file and field named', async () => {
  assert.throws(() => parseHFConfig({ model_type: 'mistral' }), (e: unknown) =>
    e instanceof ConfigError && /model_type "mistral" is not supported yet \(tabtune reads gpt2, llama\)/.test(e.message) && e.field === 'model_type');
  assert.throws(() => parseHFConfig({}), /has no "model_type"/);
  assert.throws(() => parseHFConfig({ model_type: 'gpt2', n_embd: 10, n_head: 3, n_layer: 1, n_positions: 8, vocab_size: 5 }), /n_embd \(10\) is not divisible by n_head \(3\)/);
  assert.throws(() => parseHFConfig({ model_type: 'llama', hidden_size: 8, num_attention_heads: 2, intermediate_size: 8, num_hidden_layers: 1, vocab_size: 5, rope_scaling: { type: 'linear' } }),
    (e: unknown) => e instanceof ConfigError && e.field === 'rope_scaling');
  assert.throws(() => parseHFConfig({ model_type: 'llama', hidden_size: 'big' }), (e: unknown) => e instanceof ConfigError && e.field === 'hidden_size');

  // A checkpoint that lacks a parameter names it.
  const base = folderFiles(fixture('tiny-llama'));
  const orig = readSafetensors(new Uint8Array(readFileSync(fixture('tiny-llama') + 'model.safetensors')), 'model.safetensors').tensors;
  delete orig['model.layers.1.mlp.up_proj.weight'];
  const bytes = writeSafetensors(orig);
  const lacking: ModelFiles = {
    ...base,
    size: async (p) => (p === 'model.safetensors' ? bytes.byteLength : base.size(p)),
    read: async (p, s, e) => (p === 'model.safetensors' ? bytes.slice(s, e) : base.read(p, s, e)),
  };
  const summary = await inspectModel(lacking);
  await assert.rejects(loadWeights(lacking, summary), (e: unknown) =>
    e instanceof SafetensorsError && e.field === 'model.layers.1.mlp.up_proj.weight');
  await assert.rejects(inspectModel(folderFiles(fixture('.'))), /has no config\.json/);
});

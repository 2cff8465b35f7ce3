/**
 * The memory estimate shown before a run starts, against what TensorFlow.js really holds at its
 * peak during a training step (tf.profile), for LoRA, QLoRA, BitFit, prompt tuning and full
 * fine-tuning: it must not promise less than a run takes, nor scare a person off by far more. (The
 * estimate's coefficients were fitted to tf.profile on other shapes than these.)
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { resolveGPT2Config, resolveTrainConfig } from '../../src/core/config';
import { GPT2 } from '../../src/core/model/gpt2';
import { resolveLoraConfig, targetedModules } from '../../src/core/peft/lora';
import { attachMethod } from '../../src/core/train/finetune';
import { estimateTuneMemory, type EstimateMethod } from '../../src/core/train/memory';
import { Trainer } from '../../src/core/train/trainer';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

/** Two shapes: one where a step's activations take the memory, one where the weights do (a bigger model, one short row). */
const SHAPES = [
  { name: 'activations', L: 3, h: 80, H: 5, V: 768, B: 6, T: 56, backend: 'cpu' as const },
  { name: 'weights', L: 4, h: 384, H: 6, V: 4096, B: 1, T: 8, backend: 'cpu' as const },
  // WebAssembly takes its own paths (plain 2-D products, block-diagonal attention with 4 heads or fewer).
  { name: 'activations (WebAssembly, 4 heads)', L: 3, h: 96, H: 4, V: 768, B: 6, T: 56, backend: 'wasm' as const },
];

for (const sh of SHAPES) {
  for (const method of ['lora', 'qlora', 'bitfit', 'prompt', 'full'] as EstimateMethod[]) {
    test(`${method}, ${sh.name} dominate: the estimate covers the peak of a training step, within 1.5x`, async () => {
      await useBackend(sh.backend);
      const model = resolveGPT2Config({ vocab_size: sh.V, n_positions: 128, n_embd: sh.h, n_layer: sh.L, n_head: sh.H });
      const start = tf.memory().numBytes;
      const m = GPT2.random(model, 1);
      const lora = resolveLoraConfig('gpt2', { r: 8, lora_alpha: 16 });
      const virtualTokens = 8;
      await attachMethod(m, { method, lora, bits: 8, virtualTokens }, sh.T, 1);
      let biasParams = 0;
      for (const [name, v] of m.params) if (name.endsWith('.bias')) biasParams += v.size;
      const linear = m.linearModules();
      const estimate = estimateTuneMemory(
        { numParams: m.numParams(), biasParams, linearParams: linear.reduce((n, l) => n + l.in * l.out, 0), layers: sh.L, hidden: sh.h, heads: sh.H, vocabSize: sh.V, intermediate: 4 * sh.h },
        {
          method, targets: method === 'lora' || method === 'qlora' ? targetedModules(m, lora.target_modules) : [], r: 8, bits: 8, virtualTokens, batch: sh.B, block: sh.T,
          blockAttention: sh.backend === 'wasm' && sh.H <= 4,
        },
      );
      const trainer = new Trainer(m, resolveTrainConfig({ steps: 3, batch_size: sh.B, block_size: sh.T, learning_rate: 1e-3 }, model));
      const ids = new Int32Array(sh.B * sh.T).map((_, i) => (i * 7) % sh.V);
      const draw = () => ({ ids, targets: ids.map((x) => (x + 1) % sh.V), batchSize: sh.B, blockSize: sh.T });
      await trainer.trainOn(draw as never); // the optimizer's moments exist from the first step on
      const profile = await tf.profile(async () => {
        await trainer.trainOn(draw as never);
      });
      const peak = profile.peakBytes - start;
      const mb = (b: number) => (b / 1e6).toFixed(2);
      console.log(`${method}, ${sh.name}: estimate ${mb(estimate.total)} MB (weights ${mb(estimate.weights)}, training ${mb(estimate.training)}, activations ${mb(estimate.activations)}); tfjs peak ${mb(peak)} MB; ratio ${(estimate.total / peak).toFixed(2)}`);
      assert.ok(estimate.total >= peak * 0.9, `not less than the run takes: ${estimate.total} vs ${peak}`);
      assert.ok(estimate.total <= peak * 1.5, `not far more: ${estimate.total} vs ${peak}`);
      trainer.dispose();
      m.dispose();
      await useBackend('cpu');
    });
  }
}

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

const model = resolveGPT2Config({ vocab_size: 768, n_positions: 128, n_embd: 80, n_layer: 3, n_head: 5 });
const B = 6;
const T = 56;

for (const method of ['lora', 'qlora', 'bitfit', 'prompt', 'full'] as EstimateMethod[]) {
  test(`${method}: the estimate covers the peak of a training step, within 1.5x`, async () => {
    const start = tf.memory().numBytes;
    const m = GPT2.random(model, 1);
    const lora = resolveLoraConfig('gpt2', { r: 8, lora_alpha: 16 });
    const virtualTokens = 8;
    await attachMethod(m, { method, lora, bits: 8, virtualTokens }, T, 1);
    let biasParams = 0;
    for (const [name, v] of m.params) if (name.endsWith('.bias')) biasParams += v.size;
    const estimate = estimateTuneMemory(
      { numParams: m.numParams(), biasParams, layers: 3, hidden: 80, heads: 5, vocabSize: 768, intermediate: 320 },
      { method, targets: method === 'lora' || method === 'qlora' ? targetedModules(m, lora.target_modules) : [], r: 8, bits: 8, virtualTokens, batch: B, block: T },
    );
    const trainer = new Trainer(m, resolveTrainConfig({ steps: 3, batch_size: B, block_size: T, learning_rate: 1e-3 }, model));
    const ids = new Int32Array(B * T).map((_, i) => (i * 7) % 768);
    const draw = () => ({ ids, targets: ids.map((x) => (x + 1) % 768), batchSize: B, blockSize: T });
    await trainer.trainOn(draw as never); // the optimizer's moments exist from the first step on
    const profile = await tf.profile(async () => {
      await trainer.trainOn(draw as never);
    });
    const peak = profile.peakBytes - start;
    console.log(`${method}: estimate ${(estimate.total / 1e6).toFixed(2)} MB (weights ${(estimate.weights / 1e6).toFixed(2)}, training ${(estimate.training / 1e6).toFixed(2)}, activations ${(estimate.activations / 1e6).toFixed(2)}); tfjs peak ${(peak / 1e6).toFixed(2)} MB`);
    assert.ok(estimate.total >= peak * 0.9, `not less than the run takes: ${estimate.total} vs ${peak}`);
    assert.ok(estimate.total <= peak * 1.5, `not far more: ${estimate.total} vs ${peak}`);
    trainer.dispose();
    m.dispose();
  });
}

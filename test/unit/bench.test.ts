/**
 * The bench's own arithmetic: the FLOPs it divides by (counted by hand here for the tiny shape)
 * and its refusals. The timings themselves are the bench's to report, never a test's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BENCH_SHAPES, benchGenerate, trainFlops } from '../../src/core/bench';

test('trainFlops counts a GPT-2 step\'s products: forward, input gradients, and the gradients of what is trained', () => {
  const { model, batch, block } = BENCH_SHAPES.tiny; // 1 layer, width 16, vocabulary 64, 2 x 16 tokens
  const N = batch * block;
  const linear = 2 * N * (16 * 48 + 16 * 16 + 16 * 64 + 64 * 16); // c_attn, attn.c_proj, c_fc, mlp.c_proj
  const attention = 2 * 2 * N * block * 16; // QK^T and AV
  const head = 2 * N * 16 * 64; // tied output layer
  assert.equal(linear, 196_608);
  // Full fine-tuning: forward, the inputs' gradients and the weights' gradients: three times each.
  assert.equal(trainFlops(model, batch, block, 'full'), 3 * (linear + attention + head));
  // LoRA on c_attn (r 8): the frozen products twice (forward, input gradients), attention's three
  // times (both operands need gradients), and A and B three times each.
  const adapters = 3 * 2 * N * 8 * (16 + 48);
  assert.equal(trainFlops(model, batch, block, 'lora'), 2 * linear + 3 * attention + 2 * head + adapters);
  assert.equal(trainFlops(model, batch, block, 'qlora'), trainFlops(model, batch, block, 'lora'));
});

test('the generation bench refuses what it cannot measure, naming the field', async () => {
  await assert.rejects(benchGenerate(BENCH_SHAPES.tiny, 2, 1), /2 new tokens or more/);
  await assert.rejects(benchGenerate(BENCH_SHAPES.tiny, 10, 8), /exceed the shape's context of 16/);
});

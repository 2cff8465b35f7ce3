import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GPT2_SPEC, TRAIN_SPEC, defaults, resolveGPT2Config, resolveTrainConfig } from '../../src/core/config';
import { ConfigError } from '../../src/core/errors';

test('every config field has a default inside its limits and a help text', () => {
  for (const spec of [GPT2_SPEC, TRAIN_SPEC]) {
    for (const [k, f] of Object.entries(spec)) {
      assert.ok(f.help.length > 10, `${k} needs help text`);
      if ('choices' in f) assert.ok((f.choices as readonly string[]).includes(f.default), `${k} default is not a choice`);
      else assert.ok(f.default >= f.min && f.default <= f.max, `${k} default out of range`);
    }
  }
  assert.equal(defaults(GPT2_SPEC).vocab_size, 256);
});

test('a bad value is refused with the field named', () => {
  const model = resolveGPT2Config();
  const cases: [() => unknown, string][] = [
    [() => resolveTrainConfig({ learning_rate: -1 }, model), 'train.learning_rate'],
    [() => resolveTrainConfig({ steps: 2.5 }, model), 'train.steps'],
    [() => resolveTrainConfig({ batch_size: Number.NaN }, model), 'train.batch_size'],
    [() => resolveTrainConfig({ block_size: model.n_positions + 1 }, model), 'train.block_size'],
    [() => resolveTrainConfig({ min_lr: 1, learning_rate: 0.1 }, model), 'train.min_lr'],
    [() => resolveGPT2Config({ n_embd: 30, n_head: 4 }), 'model.n_embd'],
    [() => resolveGPT2Config({ nonsense: 1 } as never), 'model.nonsense'],
    [() => resolveTrainConfig({ optimizer: 'lion' } as never, model), 'train.optimizer'],
    [() => resolveTrainConfig({ lr_scheduler: 3 } as never, model), 'train.lr_scheduler'],
  ];
  for (const [fn, field] of cases) {
    assert.throws(fn, (e: unknown) => e instanceof ConfigError && e.field === field && e.message.includes(field), field);
  }
});

test('error names are spelled out, so they survive minification and the trip across threads', async () => {
  const errors = await import('../../src/core/errors');
  for (const [exported, Cls] of Object.entries(errors)) {
    if (typeof Cls !== 'function') continue;
    assert.equal(new (Cls as new (m: string) => Error)('x').name, exported);
  }
});

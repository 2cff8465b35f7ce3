/**
 * Workshop files: the one a host shares is read with every field checked, and the quick demo the
 * studio ships with names a bundled model and samples that are really there.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { TUNE_PRESETS } from '../../src/ui/presets';
import { BUNDLED_MODELS, parseWorkshop, sourceName, sourceUrl, WORKSHOP_DEFAULTS } from '../../src/ui/workshop';

const publicDir = new URL('../../public/', import.meta.url);

test('the quick demo shipped with the studio is a valid workshop file, and everything it names is shipped too', () => {
  const w = parseWorkshop(readFileSync(new URL('samples/quick-demo.workshop.json', publicDir), 'utf8'), 'quick-demo.workshop.json');
  assert.deepEqual(w.model, { bundled: 'moby-gpt2' });
  assert.deepEqual([w.config.method, w.config.target_modules, w.seed], ['lora', 'all-linear', 1337]);
  assert.ok(w.config.exact_match > 0 && w.test, 'exact match on a test file');
  for (const src of [w.data, w.test!]) {
    assert.ok('sample' in src);
    assert.ok(existsSync(new URL(`samples/${src.sample}`, publicDir)), `${src.sample} is shipped`);
    assert.equal(sourceUrl(src, '/base/'), `/base/samples/${src.sample}`);
  }
  for (const [name, files] of Object.entries(BUNDLED_MODELS)) {
    for (const f of files) assert.ok(existsSync(new URL(`models/${name}/${f}`, publicDir)), `models/${name}/${f} is shipped`);
  }
});

test('a workshop file: defaults fill what is missing, and each wrong field is refused by its name', () => {
  const base = { format: 'tabtune-workshop', version: 1, model: { bundled: 'moby-gpt2' }, data: { sample: 'dates-train.jsonl' } };
  const ok = parseWorkshop(JSON.stringify({ ...base, config: { exact_match: 0 } }), 'w.json');
  assert.deepEqual(ok.config, { ...WORKSHOP_DEFAULTS, exact_match: 0 });
  assert.equal(ok.seed, 1337);
  assert.equal(ok.title, 'w');
  assert.deepEqual(parseWorkshop(JSON.stringify({ ...base, model: { hub: 'HuggingFaceTB/SmolLM2-135M' }, test: { url: 'https://example.org/t.jsonl' }, seed: 7 }), 'w.json').model, { hub: 'HuggingFaceTB/SmolLM2-135M' });
  assert.equal(sourceName({ url: 'https://example.org/data/my%20rows.jsonl' }), 'my rows.jsonl');

  const refused: [unknown, RegExp][] = [
    ['{nope', /^w\.json is not valid JSON/],
    [[1], /w\.json is not a workshop file/],
    [{ ...base, format: 'x' }, /w\.json: "format" must be "tabtune-workshop", got "x"/],
    [{ ...base, version: 2 }, /"version" must be 1/],
    [{ ...base, model: { bundled: 'gpt-9' } }, /"model\.bundled" names no bundled model: "gpt-9"; bundled: moby-gpt2/],
    [{ ...base, model: {} }, /"model" must be/],
    [{ ...base, data: undefined }, /"data" is missing/],
    [{ ...base, data: { sample: '../secret' } }, /"data\.sample" must be a file name/],
    [{ ...base, data: { url: 'file:///etc/passwd' } }, /"data\.url" must start with http/],
    [{ ...base, config: { steps: 0 } }, /"config\.steps" must be a whole number from 1 to 100000, got 0/],
    [{ ...base, config: { learning_rate: 'fast' } }, /"config\.learning_rate" must be a number/],
    [{ ...base, config: { method: 'magic' } }, /"config\.method" must be one of lora, qlora, qlora4, bitfit, prompt, full/],
    [{ ...base, config: { stepz: 3 } }, /"config\.stepz" is not a setting this studio knows/],
    [{ ...base, config: { target_modules: 'c_fc' } }, /"config\.target_modules" must be "default" or "all-linear", got "c_fc"/],
    [{ ...base, seed: -1 }, /"seed" must be a whole number/],
    [{ ...base }, /"config\.exact_match" needs a test part/],
  ];
  for (const [raw, why] of refused) {
    assert.throws(() => parseWorkshop(typeof raw === 'string' ? raw : JSON.stringify(raw), 'w.json'), (e: Error & { field?: string }) => {
      assert.match(e.message, why);
      assert.equal(e.name, 'WorkshopError');
      return true;
    });
  }
});

test('the Train form\'s "Quick demo" preset is what the one-click quick demo runs', () => {
  const w = parseWorkshop(readFileSync(new URL('samples/quick-demo.workshop.json', publicDir), 'utf8'), 'quick-demo.workshop.json');
  const p = TUNE_PRESETS.quick;
  assert.deepEqual(
    { method: p.method, target_modules: p.targetModules, steps: p.steps, learning_rate: p.learningRate, r: p.r, batch_size: p.batchSize, block_size: p.blockSize, validation: p.validation, eval_every: p.evalEvery, patience: p.patience },
    { method: w.config.method, target_modules: w.config.target_modules, steps: w.config.steps, learning_rate: w.config.learning_rate, r: w.config.r, batch_size: w.config.batch_size, block_size: w.config.block_size, validation: w.config.validation, eval_every: w.config.eval_every, patience: w.config.patience },
  );
});

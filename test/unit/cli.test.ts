import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const BIN = fileURLToPath(new URL('../../src/cli/bin.mjs', import.meta.url));
const tabtune = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });

test('tabtune info reports the backend it chose and why', () => {
  const r = tabtune('info');
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assert.equal(info.tfjs, '4.22.0');
  assert.equal(info.backend.name, 'wasm');
  assert.ok(info.backend.fallbacks.length >= 1);
});

test('tabtune train: a run killed mid-way resumes from its last checkpoint in the state folder', async () => {
  const state = mkdtempSync(join(tmpdir(), 'tabtune-cli-'));
  // Kill -9 on the sixth step's line: a crash, with the checkpoint of step 4 on disk.
  const child = spawn(process.execPath, [BIN, 'train', '--preset', 'tiny', '--steps', '12', '--state', state, '--json']);
  const seen: number[] = [];
  let buffered = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const l of lines) {
        seen.push(JSON.parse(l).step);
        if (seen.at(-1) === 6) child.kill('SIGKILL');
      }
    });
    child.on('close', () => resolve());
  });
  assert.deepEqual(seen.slice(0, 6), [1, 2, 3, 4, 5, 6]);

  const resumed = tabtune('train', '--preset', 'tiny', '--steps', '12', '--state', state);
  assert.equal(resumed.status, 0, resumed.stderr);
  // The kill lands after step 6 was printed; steps 7 and 8 (and the step-8 checkpoint) may still
  // have happened in the few milliseconds before it did. Either checkpoint is a correct resume point.
  const from = Number(/resuming demo-tiny from step (\d+)/.exec(resumed.stdout)?.[1]);
  assert.ok(from === 4 || from === 8, `resumed from ${from}`);
  assert.ok(from <= Math.max(...seen) && from % 4 === 0);
  assert.match(resumed.stdout, new RegExp(`step +${from + 1}/12`));
  assert.doesNotMatch(resumed.stdout, new RegExp(`step +${from}/12`));
  assert.match(resumed.stdout, /done: demo-tiny at step 12\/12/);

  const straight = tabtune('train', '--preset', 'tiny', '--steps', '12', '--state', mkdtempSync(join(tmpdir(), 'tabtune-cli-')));
  const finalLoss = (out: string) => /loss [\d.]+ -> ([\d.]+)/.exec(out)?.[1];
  assert.equal(finalLoss(resumed.stdout), finalLoss(straight.stdout), 'the crash changed nothing');
});

test('tabtune train: Ctrl-C pauses after the current step with a checkpoint', async () => {
  const state = mkdtempSync(join(tmpdir(), 'tabtune-cli-'));
  const child = spawn(process.execPath, [BIN, 'train', '--preset', 'tiny', '--steps', '400', '--state', state, '--json']);
  let out = '';
  let sent = false;
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    if (!sent && out.split('\n').length > 3) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 130);
  const steps = out.trim().split('\n').map((l) => JSON.parse(l).step as number);
  assert.ok(steps.at(-1)! < 400, 'it stopped early');
  const info = tabtune('train', '--preset', 'tiny', '--steps', '400', '--state', state, '--json');
  const next = JSON.parse(info.stdout.split('\n')[0]).step;
  assert.equal(next, steps.at(-1)! + 1, 'the pause checkpointed the last step it finished');
});

test('tabtune logits prints PyTorch\'s logits for a Hugging Face folder', () => {
  const dir = fileURLToPath(new URL('../fixtures/tiny-gpt2/', import.meta.url));
  const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as { ids: number[]; logits: number[][] };
  const r = tabtune('logits', '--model', dir, '--ids', golden.ids.join(','));
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ids: number[]; logits: number[][] };
  assert.deepEqual(out.ids, golden.ids);
  assert.equal(out.logits.length, golden.ids.length);
  let err = 0;
  out.logits.forEach((row, t) => row.forEach((v, j) => (err = Math.max(err, Math.abs(v - golden.logits[t][j])))));
  assert.ok(err < 1e-4, `max abs error ${err}`);
  const bad = tabtune('logits', '--model', dir, '--ids', '1,x');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /item 2 is "x"/);
});

test('tabtune logits --text and generate --prompt use the folder\'s tokenizer.json', () => {
  const dir = fileURLToPath(new URL('../fixtures/tiny-llama/', import.meta.url));
  const byText = JSON.parse(tabtune('logits', '--model', dir, '--text', 'the sea').stdout) as { ids: number[]; logits: number[][] };
  assert.deepEqual(byText.ids, [1, 46, 48, 62, 8, 4], '<s> then the tiny vocabulary\'s tokens');
  const byIds = JSON.parse(tabtune('logits', '--model', dir, '--ids', byText.ids.join(',')).stdout);
  assert.deepEqual(byIds, byText);
  const greedy = tabtune('generate', '--model', dir, '--prompt', 'the whale', '--temperature', '0', '--max-tokens', '12');
  assert.equal(greedy.status, 0, greedy.stderr);
  assert.ok(greedy.stdout.trim().length > 0);
  assert.equal(tabtune('generate', '--model', dir, '--prompt', 'the whale', '--temperature', '0', '--max-tokens', '12').stdout, greedy.stdout, 'greedy is deterministic');
  const seeded = (seed: string) => tabtune('generate', '--model', dir, '--prompt', 'the', '--seed', seed, '--temperature', '1', '--max-tokens', '16').stdout;
  assert.equal(seeded('4'), seeded('4'));
  const bad = tabtune('generate', '--model', dir, '--prompt', 'x', '--temperature', 'hot');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--temperature must be a number, got "hot"/);
});

test('tabtune logits --adapter and tabtune merge: a PEFT adapter applied, and folded into a Hugging Face folder', () => {
  const fx = (n: string) => fileURLToPath(new URL(`../fixtures/${n}/`, import.meta.url));
  const golden = JSON.parse(readFileSync(join(fx('tiny-llama-lora'), 'golden.json'), 'utf8')) as { ids: number[]; logits: number[][] };
  const maxErr = (out: { logits: number[][] }) => out.logits.flat().reduce((m, v, i) => Math.max(m, Math.abs(v - golden.logits.flat()[i])), 0);
  const adapted = tabtune('logits', '--model', fx('tiny-llama'), '--adapter', fx('tiny-llama-lora'), '--ids', golden.ids.join(','));
  assert.equal(adapted.status, 0, adapted.stderr);
  assert.ok(maxErr(JSON.parse(adapted.stdout)) < 1e-4);
  const out = mkdtempSync(join(tmpdir(), 'tabtune-merged-'));
  const merged = tabtune('merge', '--model', fx('tiny-llama'), '--adapter', fx('tiny-llama-lora'), '--out', out);
  assert.equal(merged.status, 0, merged.stderr);
  assert.deepEqual(readdirSync(out).sort(), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const fromMerged = tabtune('logits', '--model', out, '--ids', golden.ids.join(','));
  assert.ok(maxErr(JSON.parse(fromMerged.stdout)) < 1e-4, 'the merged folder computes what base + adapter computed');
  const wrongBase = tabtune('logits', '--model', fx('tiny-gpt2'), '--adapter', fx('tiny-llama-lora'), '--ids', '1');
  assert.equal(wrongBase.status, 1);
  assert.match(wrongBase.stderr, /is not a LoRA weight of a layer of this model/);
});

test('tabtune train --model: LoRA writes a PEFT adapter that loads back; full fine-tuning writes a model folder', () => {
  const fx = (n: string) => fileURLToPath(new URL(`../fixtures/${n}/`, import.meta.url));
  const data = join(mkdtempSync(join(tmpdir(), 'tabtune-data-')), 'sea.txt');
  writeFileSync(data, 'the sea and the whale. the sea is the whale and the sea.\n'.repeat(20));
  const out = mkdtempSync(join(tmpdir(), 'tabtune-adapter-'));
  const r = tabtune('train', '--model', fx('tiny-llama'), '--data', data, '--out', out, '--max-steps', '25', '--lr', '1e-2', '--block-size', '16', '--r', '4', '--target-modules', 'all-linear', '--json');
  assert.equal(r.status, 0, r.stderr);
  const steps = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.step !== undefined);
  assert.equal(steps.length, 25);
  assert.ok(steps.at(-1).loss < steps[0].loss - 1, `loss ${steps[0].loss} -> ${steps.at(-1).loss}`);
  assert.deepEqual(readdirSync(out).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
  const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
  assert.deepEqual([config.r, config.target_modules, config.fan_in_fan_out], [4, 'all-linear', false]);
  const base = JSON.parse(tabtune('logits', '--model', fx('tiny-llama'), '--ids', '1,46,48').stdout);
  const tuned = JSON.parse(tabtune('logits', '--model', fx('tiny-llama'), '--adapter', out, '--ids', '1,46,48').stdout);
  assert.notDeepEqual(tuned.logits, base.logits, 'the trained adapter changes the model');

  const full = mkdtempSync(join(tmpdir(), 'tabtune-full-'));
  const f = tabtune('train', '--model', fx('tiny-gpt2'), '--data', data, '--out', full, '--method', 'full', '--max-steps', '3', '--block-size', '16');
  assert.equal(f.status, 0, f.stderr);
  assert.match(f.stdout, /trainable%: 100\.0000/);
  assert.ok(readdirSync(full).includes('model.safetensors'));
  assert.equal(tabtune('logits', '--model', full, '--ids', '1,2').status, 0);
  const q = tabtune('train', '--model', fx('tiny-llama'), '--data', data, '--out', mkdtempSync(join(tmpdir(), 'tabtune-qlora-')), '--method', 'qlora', '--max-steps', '3', '--block-size', '16', '--json');
  assert.equal(q.status, 0, q.stderr);
  const quant = q.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((l) => l.quantized).quantized;
  assert.equal(quant.bits, 8);
  assert.ok(quant.bytesAfter < quant.bytesBefore, 'the 8-bit base takes less device memory');
  const promptOut = mkdtempSync(join(tmpdir(), 'tabtune-prompt-'));
  const pt = tabtune('train', '--model', fx('tiny-llama'), '--data', data, '--out', promptOut, '--method', 'prompt', '--num-virtual-tokens', '4', '--max-steps', '5', '--lr', '5e-2', '--block-size', '16');
  assert.equal(pt.status, 0, pt.stderr);
  assert.equal(JSON.parse(readFileSync(join(promptOut, 'adapter_config.json'), 'utf8')).peft_type, 'PROMPT_TUNING');
  const withPrompt = tabtune('logits', '--model', fx('tiny-llama'), '--adapter', promptOut, '--ids', '1,46,48');
  assert.equal(withPrompt.status, 0, withPrompt.stderr);
  assert.equal(JSON.parse(withPrompt.stdout).logits.length, 3, 'one row per real token');
  const sgd = tabtune('train', '--model', fx('tiny-gpt2'), '--data', data, '--out', mkdtempSync(join(tmpdir(), 'tabtune-sgd-')), '--optimizer', 'sgd', '--momentum', '0.9', '--grad-accum', '2', '--lr-scheduler', 'linear', '--lr', '0.1', '--max-steps', '3', '--block-size', '16', '--json');
  assert.equal(sgd.status, 0, sgd.stderr);
  const lion = tabtune('train', '--model', fx('tiny-gpt2'), '--data', data, '--out', full, '--optimizer', 'lion');
  assert.equal(lion.status, 1);
  assert.match(lion.stderr, /train\.optimizer must be one of adamw, sgd, got "lion"/);
  const bad = tabtune('train', '--model', fx('tiny-gpt2'), '--data', data, '--out', full, '--r', 'eight');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--r must be a number, got "eight"/);
});

test('tabtune train: validation every N steps, early stopping keeps the best, and the forgetting check', () => {
  const fx = (n: string) => fileURLToPath(new URL(`../fixtures/${n}/`, import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-eval-'));
  const data = join(dir, 'data.txt');
  // The held-out tail is text of another kind: specialising on the head makes it worse in time.
  writeFileSync(data, 'the sea and the whale. '.repeat(60) + 'zq xv 0123 kj wq! '.repeat(8));
  const general = join(dir, 'general.txt');
  writeFileSync(general, 'a ship on the water, and men at the oars; the wind is up. '.repeat(10));
  const r = tabtune('train', '--model', fx('tiny-gpt2'), '--data', data, '--out', join(dir, 'out'), '--max-steps', '80', '--lr', '5e-2',
    '--block-size', '16', '--eval-every', '5', '--val-fraction', '0.15', '--patience', '3', '--forgetting', general, '--json');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const evals = lines.filter((l) => l.eval).map((l) => l.eval);
  assert.ok(evals.length >= 2);
  assert.ok(evals.every((e) => e.step % 5 === 0));
  const bestSoFar = evals.reduce((b, e) => (e.valLoss < b.valLoss ? e : b));
  assert.equal(evals.at(-1).best, bestSoFar.step, 'the best is the lowest validation loss');
  const steps = lines.filter((l) => l.step !== undefined && !l.eval);
  if (evals.at(-1).stop) assert.ok(steps.length < 80, 'early stopping ended the run');
  const forgetting = lines.find((l) => l.forgetting)?.forgetting;
  assert.ok(forgetting && forgetting.perplexityBefore > 1 && forgetting.perplexityAfter > 1);
  const noVal = tabtune('train', '--model', fx('tiny-gpt2'), '--data', data, '--out', join(dir, 'x'), '--eval-every', '5', '--val-fraction', '0');
  assert.equal(noVal.status, 1);
  assert.match(noVal.stderr, /--eval-every needs held-out data/);
});

test('tabtune recipe: the run\'s data as JSONL plus the same run for TRL + PEFT and Axolotl', () => {
  const fx = (n: string) => fileURLToPath(new URL(`../fixtures/${n}/`, import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-recipe-'));
  const sample = fileURLToPath(new URL('../../public/samples/moby-dick-ch1.txt', import.meta.url));
  const r = tabtune('recipe', '--model', fx('tiny-llama'), '--data', sample, '--recipe', dir, '--base-name', 'HuggingFaceTB/SmolLM2-135M',
    '--r', '16', '--lora-alpha', '32', '--target-modules', 'q_proj,v_proj', '--lr', '2e-4', '--max-steps', '500', '--grad-accum', '4');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readdirSync(dir).sort(), ['README.md', 'axolotl.yaml', 'train.jsonl', 'train_trl.py']);
  const records = readFileSync(join(dir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).text as string);
  const squash = (t: string) => t.replace(/\s+/g, ' ').trim();
  assert.equal(squash(records.join(' ')), squash(readFileSync(sample, 'utf8')), 'the records hold the whole text');
  const script = readFileSync(join(dir, 'train_trl.py'), 'utf8');
  for (const needle of ['BASE_MODEL = "HuggingFaceTB/SmolLM2-135M"', 'r=16,', 'lora_alpha=32,', 'target_modules=["q_proj","v_proj"]', 'learning_rate=0.0002,', 'max_steps=500,', 'gradient_accumulation_steps=4,']) {
    assert.ok(script.includes(needle), `train_trl.py has ${needle}`);
  }
  const compiled = spawnSync('python3', ['-m', 'py_compile', join(dir, 'train_trl.py')], { encoding: 'utf8' });
  if (!compiled.error) assert.equal(compiled.status, 0, `train_trl.py is valid Python: ${compiled.stderr}`);
  assert.ok(script.includes('lr_scheduler_type="cosine_with_min_lr"') && script.includes('lr_scheduler_kwargs={"min_lr": 0}'), 'the schedule decays to min_lr as tabtune does');
  const promptDir = mkdtempSync(join(tmpdir(), 'tabtune-recipe-prompt-'));
  assert.equal(tabtune('recipe', '--model', fx('tiny-llama'), '--data', sample, '--recipe', promptDir, '--method', 'prompt', '--num-virtual-tokens', '6', '--block-size', '32').status, 0);
  assert.ok(readFileSync(join(promptDir, 'train_trl.py'), 'utf8').includes('num_virtual_tokens=6'), 'prompt tuning stays prompt tuning');
  assert.ok(!readdirSync(promptDir).includes('axolotl.yaml'), 'Axolotl has no prompt tuning: no file that would silently do something else');
  const bitfitDir = mkdtempSync(join(tmpdir(), 'tabtune-recipe-bitfit-'));
  assert.equal(tabtune('recipe', '--model', fx('tiny-gpt2'), '--data', sample, '--recipe', bitfitDir, '--method', 'bitfit', '--block-size', '16').status, 0);
  assert.ok(readFileSync(join(bitfitDir, 'axolotl.yaml'), 'utf8').includes('unfrozen_parameters:'), 'BitFit stays biases-only in Axolotl');
  const tooLong = tabtune('train', '--model', fx('tiny-gpt2'), '--data', sample, '--out', bitfitDir, '--method', 'prompt', '--num-virtual-tokens', '30');
  assert.equal(tooLong.status, 1);
  assert.match(tooLong.stderr, /30 virtual tokens plus a block of 32 exceed the model's context of 32/);
  const yaml = readFileSync(join(dir, 'axolotl.yaml'), 'utf8');
  for (const needle of ['adapter: lora', 'lora_r: 16', 'lora_alpha: 32', '  - q_proj', 'max_steps: 500', 'gradient_accumulation_steps: 4']) {
    assert.ok(yaml.split('\n').includes(needle), `axolotl.yaml has ${needle}`);
  }
});

test('tabtune refuses bad arguments with a message that names them', () => {
  const steps = tabtune('train', '--steps', 'many');
  assert.equal(steps.status, 2);
  assert.match(steps.stderr, /--steps must be a positive whole number; got "many"/);
  const backend = tabtune('info', '--backend', 'tpu');
  assert.equal(backend.status, 2);
  assert.match(backend.stderr, /--backend must be one of/);
  const text = tabtune('train', '--text', '/nonexistent/file.txt');
  assert.equal(text.status, 1);
  assert.match(text.stderr, /cannot read --text \/nonexistent\/file\.txt/);
  const unknown = tabtune('fly');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command "fly"/);
});

test('tabtune train on a JSONL of prompt/completion rows: bad rows named, completion-only loss falls, 4-bit QLoRA, recipe as pairs', () => {
  const fx = (n: string) => fileURLToPath(new URL(`../fixtures/${n}/`, import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-rows-'));
  const words = ['cat', 'dog', 'sea', 'ship', 'whale', 'sail', 'rope', 'deck', 'mast', 'wind', 'rain', 'salt', 'fish', 'net', 'oar', 'bay', 'tide', 'wave', 'gull', 'sand'];
  const rows = words.flatMap((w, i) => [0, 1].map((k) => JSON.stringify({ prompt: `say ${w} ${k ? 'twice' : 'once'}:`, completion: k ? ` ${w} ${w}` : ` ${w}` })));
  rows.splice(6, 0, '{"prompt": "broken", ');
  rows.splice(11, 0, JSON.stringify({ prompt: 'no answer' }));
  const data = join(dir, 'pairs.jsonl');
  writeFileSync(data, rows.join('\n') + '\n');
  const r = tabtune('train', '--model', fx('tiny-gpt2'), '--data', data, '--out', join(dir, 'a'), '--max-steps', '40', '--lr', '1e-2', '--block-size', '16', '--r', '8',
    '--eval-every', '10', '--val-fraction', '0.2', '--batch-size', '8', '--json');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const report = lines[0].dataset;
  assert.equal(report.format, 'prompt_completion');
  assert.equal(report.accepted, 40);
  assert.deepEqual(report.rejected.map((x: { line: number }) => x.line), [7, 12]);
  assert.match(report.rejected[0].reason, /invalid JSON/);
  assert.equal(report.rejected[1].reason, 'missing field "completion"');
  assert.deepEqual([report.split.train, report.split.validation], [32, 8]);
  const steps = lines.filter((l) => l.step !== undefined && !l.eval);
  const evals = lines.filter((l) => l.eval).map((l) => l.eval);
  assert.equal(evals.length, 4);
  assert.ok(steps.slice(-5).reduce((a, s) => a + s.loss, 0) / 5 < steps.slice(0, 5).reduce((a, s) => a + s.loss, 0) / 5 - 0.5, 'the completion loss falls');
  assert.ok(evals.at(-1).valLoss < evals[0].valLoss + 1, 'validation is measured on the completions');

  const q = tabtune('train', '--model', fx('tiny-llama'), '--data', data, '--out', join(dir, 'q'), '--method', 'qlora', '--bits', '4', '--max-steps', '3', '--block-size', '16', '--json');
  assert.equal(q.status, 0, q.stderr);
  const quant = q.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((l) => l.quantized).quantized;
  assert.equal(quant.bits, 4);
  assert.ok(quant.bytesAfter < quant.bytesBefore);
  assert.deepEqual(readdirSync(join(dir, 'q')).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
  const bad = tabtune('train', '--model', fx('tiny-llama'), '--data', data, '--out', join(dir, 'q'), '--method', 'qlora', '--bits', '3');
  assert.match(bad.stderr, /--bits must be 8 or 4, got 3/);

  const recipe = join(dir, 'recipe');
  assert.equal(tabtune('recipe', '--model', fx('tiny-llama'), '--data', data, '--recipe', recipe, '--method', 'qlora', '--bits', '4', '--block-size', '16').status, 0);
  const records = readFileSync(join(recipe, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(records.length, 40);
  assert.deepEqual(records[0], { prompt: 'say cat once:', completion: ' cat' });
  const script = readFileSync(join(recipe, 'train_trl.py'), 'utf8');
  assert.ok(script.includes('completion_only_loss=True') && !script.includes('dataset_text_field'));
  assert.ok(script.includes('bnb_4bit_quant_type="nf4"'));
  const yaml = readFileSync(join(recipe, 'axolotl.yaml'), 'utf8').split('\n');
  for (const needle of ['adapter: qlora', 'load_in_4bit: true', 'train_on_inputs: false', '      field_instruction: prompt']) assert.ok(yaml.includes(needle), `axolotl.yaml has ${needle}`);

  // A separate validation file instead of a fraction.
  const valPath = join(dir, 'val.jsonl');
  writeFileSync(valPath, ['sea', 'ship', 'gull'].map((w) => JSON.stringify({ prompt: `say ${w} thrice:`, completion: ` ${w} ${w} ${w}` })).join('\n'));
  const testPath = join(dir, 'test.jsonl');
  writeFileSync(testPath, ['tide', 'sand'].map((w) => JSON.stringify({ prompt: `say ${w}:`, completion: ` ${w}` })).join('\n'));
  const withVal = tabtune('train', '--model', fx('tiny-gpt2'), '--data', data, '--out', join(dir, 'v'), '--val-data', valPath, '--test-data', testPath, '--eval-every', '2', '--max-steps', '4', '--block-size', '16', '--json');
  assert.equal(withVal.status, 0, withVal.stderr);
  const vLines = withVal.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const split = vLines[0].dataset;
  assert.deepEqual([split.split.train, split.split.validation, split.split.test, split.validationFile, split.testFile], [40, 3, 2, 'val.jsonl', 'test.jsonl']);
  assert.equal(vLines.filter((l) => l.eval).length, 2);
  assert.ok(vLines.find((l) => l.test).test.loss > 0, 'the test file is scored at the end');

  const csv = join(dir, 'qa.csv');
  writeFileSync(csv, 'question,answer\nsay cat:,cat\nsay dog:,dog\n');
  const unmapped = tabtune('train', '--model', fx('tiny-gpt2'), '--data', csv, '--out', join(dir, 'c'));
  assert.equal(unmapped.status, 1);
  assert.match(unmapped.stderr, /qa\.csv: cannot tell the format from its columns \(question, answer\)/);
  const mapped = tabtune('train', '--model', fx('tiny-gpt2'), '--data', csv, '--out', join(dir, 'c'), '--format', 'prompt_completion', '--map', 'prompt=question,completion=answer', '--max-steps', '2', '--block-size', '16');
  assert.equal(mapped.status, 0, mapped.stderr);
  assert.match(mapped.stdout, /qa\.csv: prompt_completion, 2 rows kept, 0 rejected/);
});

test('tabtune train --model: Ctrl-C stops after the current step and still writes the adapter', async () => {
  const fx = fileURLToPath(new URL('../fixtures/tiny-gpt2/', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-sigint-'));
  const data = join(dir, 'sea.txt');
  writeFileSync(data, 'the sea and the whale. the sea is the whale and the sea.\n'.repeat(20));
  const child = spawn(process.execPath, [BIN, 'train', '--model', fx, '--data', data, '--out', join(dir, 'out'), '--max-steps', '5000', '--block-size', '16', '--json']);
  let out = '';
  let err = '';
  let sent = false;
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (!sent && /"step":3,/.test(out)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    child.on('close', (c) => resolve(c));
  });
  assert.equal(code, 130, err);
  assert.match(err, /stopping after this step/);
  const lines = out.trim().split('\n').map((l) => JSON.parse(l));
  const stoppedAt = lines.find((l) => l.cancelled)?.cancelled.step;
  assert.ok(stoppedAt >= 3 && stoppedAt < 5000, `stopped at ${stoppedAt}`);
  assert.equal(lines.filter((l) => l.step !== undefined && !l.eval).length, stoppedAt);
  assert.deepEqual(readdirSync(join(dir, 'out')).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
});

test('tabtune data: the report as JSON, each rejected row by line, tokens with a model; exit 1 when no row can be used', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-data-'));
  const rows = Array.from({ length: 9500 }, (_, i) => JSON.stringify({ instruction: `say ${i}`, output: `${i}` }));
  rows[9411] = '{"instruction": "broken", ';
  rows[20] = JSON.stringify({ instruction: 'no output' });
  writeFileSync(join(dir, 'big.jsonl'), '\ufeff' + rows.join('\r\n') + '\r\n');
  const r = tabtune('data', join(dir, 'big.jsonl'), '--json');
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.deepEqual([report.format, report.rows, report.rejectedCount], ['alpaca', 9498, 2]);
  assert.deepEqual(report.rejected, [{ line: 21, reason: 'missing field "output"' }, { line: 9412, reason: report.rejected[1].reason }]);
  assert.match(report.rejected[1].reason, /^invalid JSON/);
  assert.equal(report.tokens, undefined, 'no model, no token counts');
  const fx = fileURLToPath(new URL('../fixtures/tiny-gpt2/', import.meta.url));
  const withModel = JSON.parse(tabtune('data', join(dir, 'big.jsonl'), '--model', fx, '--json').stdout);
  assert.ok(withModel.tokens > 9498 * 40, 'the Alpaca template and the answer, tokenized');
  assert.equal(withModel.truncatedCount, 9498, 'every templated row passes the fixture\'s context of 32');
  assert.equal(withModel.histogram.counts.at(-1), 9498);
  writeFileSync(join(dir, 'qa.csv'), 'question,answer\nx,y\n');
  const unmapped = tabtune('data', join(dir, 'qa.csv'));
  assert.equal(unmapped.status, 1);
  assert.match(JSON.parse(unmapped.stdout).error, /cannot tell the format from its columns \(question, answer\)/);
  const mapped = JSON.parse(tabtune('data', join(dir, 'qa.csv'), '--format', 'prompt_completion', '--map', 'prompt=question,completion=answer').stdout);
  assert.deepEqual([mapped.rows, mapped.preview[0]], [1, { line: 2, prompt: 'x', completion: 'y' }]);
  writeFileSync(join(dir, 'empty.jsonl'), '');
  const empty = tabtune('data', join(dir, 'empty.jsonl'));
  assert.equal(empty.status, 1);
  assert.match(empty.stderr, /empty\.jsonl is empty/);
});

test('tabtune data and train read Parquet (row groups, zstd), naming rows by number', () => {
  const pq = (n: string) => fileURLToPath(new URL(`../fixtures/datasets/${n}`, import.meta.url));
  const r = tabtune('data', pq('alpaca-zstd.parquet'), '--json');
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.deepEqual([report.kind, report.format, report.rows, report.rejected], ['parquet', 'alpaca', 24, [{ line: 8, reason: 'field "output" is empty' }]]);
  const out = mkdtempSync(join(tmpdir(), 'tabtune-pq-'));
  const t = tabtune('train', '--model', fileURLToPath(new URL('../fixtures/tiny-gpt2/', import.meta.url)), '--data', pq('chat.parquet'), '--out', out, '--max-steps', '2', '--block-size', '32', '--json');
  assert.equal(t.status, 0, t.stderr);
  assert.equal(JSON.parse(t.stdout.split('\n')[0]).dataset.format, 'chat');
  const bad = join(out, 'fake.parquet');
  writeFileSync(bad, 'instruction,output\n');
  const b = tabtune('data', bad);
  assert.equal(b.status, 1);
  assert.match(b.stderr, /fake\.parquet is not a Parquet file/);
});

test('the command line trains on WebGPU in Node through Dawn (here Chromium\'s SwiftShader), and auto passes a software adapter over for WASM', {
  skip: process.env.VK_ICD_FILENAMES ? false : 'VK_ICD_FILENAMES is not set (run through npm test with Debian chromium installed)',
}, () => {
  const state = mkdtempSync(join(tmpdir(), 'tabtune-webgpu-'));
  const r = tabtune('train', '--backend', 'webgpu', '--preset', 'tiny', '--steps', '3', '--state', state);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^backend webgpu: .*SwiftShader/m);
  const steps = [...r.stdout.matchAll(/^step +\d+\/3 +loss ([\d.]+).* tensors (\d+)$/gm)];
  assert.equal(steps.length, 3, r.stdout);
  assert.ok(steps.every((m) => Number.isFinite(Number(m[1]))), 'finite losses');
  assert.equal(new Set(steps.map((m) => m[2])).size, 1, 'tensor count flat across steps');
  const info = JSON.parse(tabtune('info').stdout);
  assert.equal(info.backend.name, 'wasm');
  assert.match(JSON.stringify(info.backend.fallbacks), /software \(CPU-emulated\) GPU/);
});

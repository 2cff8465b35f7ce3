/**
 * tabtune's command line: the same Studio as the browser's worker, on Node's tfjs backends
 * (WASM, else CPU), with runs and checkpoints kept in a folder instead of IndexedDB.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { isBackendRequest, selectBackend } from '../api/backend';
import type { BackendRequest } from '../api/protocol';
import { Studio } from '../api/studio';
import { ConfigError } from '../core/errors';
import { generate, SAMPLE_DEFAULTS, type SampleOptions } from '../core/generate';
import { applyAdapterFolder, mergedFolder } from '../core/io/export';
import { buildModel, inspectModel, loadWeights, type ModelSummary } from '../core/model/hf';
import { loadTokenizer, stopTokenIds } from '../core/tokenizer/hf';
import { DEMO_PRESETS } from '../core/presets';
import { folderFiles } from './files';
import { dataReport } from './data';
import { finetune, type FinetuneArgs } from './finetune';
import { fsKV } from '../store/fs';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const DEFAULT_TEXT = join(ROOT, 'public', 'samples', 'moby-dick-ch1.txt');

const HELP = `tabtune: fine-tuning studio, command line

Usage:
  tabtune info  [--backend B]
  tabtune train [--backend B] [--preset P] [--steps N] [--text FILE] [--state DIR] [--json]
  tabtune train --model DIR --data FILE --out DIR [--method lora|qlora|bitfit|prompt|full] [--r N] [--lora-alpha A]
                [--lora-dropout P] [--target-modules a,b|all-linear] [--use-rslora] [--lr LR]
                [--max-steps N] [--batch-size N] [--block-size N] [--warmup-steps N]
                [--weight-decay W] [--optimizer adamw|sgd] [--momentum M] [--grad-accum N]
                [--lr-scheduler cosine|linear|constant] [--seed S] [--json]
                [--eval-every N] [--val-fraction F] [--patience P] [--min-delta D] [--forgetting FILE]
                [--num-virtual-tokens N] [--bits 8|4] [--recipe DIR] [--test-fraction F]
                [--format F] [--map role=column,...] [--template none|alpaca|chatml|model]
                [--train-on-prompt] [--packing] [--val-data FILE] [--test-data FILE] [--exact-match N]
  tabtune data  FILE [--format F] [--map role=column,...] [--template T] [--model DIR] [--block-size N]
                the dataset report as JSON: format, rows kept, each rejected row with its line and
                reason; with a model, tokens, a length histogram and rows cut to the context;
                exits 1 when no row can be used
  tabtune recipe --model DIR --data FILE --recipe DIR [--base-name REPO] [the train flags]
                the run's data as JSONL plus the same run for TRL + PEFT (accelerate) and Axolotl
  tabtune logits   --model DIR [--adapter DIR] (--text "..." | --ids 1,2,3) [--backend B]
  tabtune merge    --model DIR --adapter DIR --out DIR
  tabtune generate --model DIR --prompt "..." [--max-tokens N] [--temperature T] [--top-k K]
                   [--top-p P] [--seed S] [--backend B]

Options:
  --backend B   auto (default), webgpu, wasm or cpu. WebGPU comes through Dawn (the webgpu
                package) from the system's Vulkan GPU; auto takes a hardware one, and passes
                a software one (SwiftShader) over for WASM unless webgpu is asked for
  --preset P    ${Object.entries(DEMO_PRESETS).map(([k, p]) => `${k} (${p.label})`).join(', ')}; default demo
  --steps N     total steps of a new run (default: the preset's)
  --text FILE   training text (default: the bundled Moby-Dick chapter)
  --state DIR   where runs and checkpoints are kept (default: .tabtune in this folder);
                an unfinished run there resumes from its latest checkpoint
  --json        print one JSON object per step instead of a table
  --model DIR   a Hugging Face model folder: config.json and model.safetensors (or shards
                with model.safetensors.index.json); model_type gpt2 or llama
  --data FILE   text (.txt: a token stream, the last --val-fraction held out) or rows
                (.jsonl, .json, .csv, .tsv; --data-kind overrides the extension) in a format
                detected from the columns or given with --format: text, prompt_completion,
                alpaca, chat (messages), sharegpt (conversations), preference (prompt, chosen,
                rejected), classification (text, label); --map names other columns. Rows become
                prompt/completion examples, split with a seeded shuffle; the loss is on the
                completions (and EOS) only unless --train-on-prompt. Rows are padded to the
                longest of their batch, or with --packing laid end to end into full blocks.
  --val-data F  a separate validation file (same format options) instead of --val-fraction;
                --test-data F likewise for the test split, scored once at the end
  --bits N      qlora: the frozen base in 8 bits (linear absmax) or 4 bits (NF4); default 8
  --ids LIST    token ids, comma-separated; logits prints {"ids": [...], "logits": [[...], ...]}
                with one row of vocabulary-sized logits per position
  --text S      text to tokenize with the model's tokenizer.json (special tokens added)
  --adapter DIR a PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors)
                applied to the model
  --out DIR     merge writes the model with the adapter folded in, as a Hugging Face folder
  --prompt S    generate continues it, printing tokens as they come, and stops at EOS;
                sampling: --temperature (0 = greedy, default ${SAMPLE_DEFAULTS.temperature}), --top-k (${SAMPLE_DEFAULTS.topK}),
                --top-p (${SAMPLE_DEFAULTS.topP}), --seed (${SAMPLE_DEFAULTS.seed}), --max-tokens (${SAMPLE_DEFAULTS.maxNewTokens})
`;

export async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        backend: { type: 'string', default: 'auto' },
        preset: { type: 'string', default: 'demo' },
        steps: { type: 'string' },
        text: { type: 'string', default: DEFAULT_TEXT },
        state: { type: 'string', default: '.tabtune' },
        json: { type: 'boolean', default: false },
        model: { type: 'string' },
        data: { type: 'string' },
        method: { type: 'string' },
        r: { type: 'string' },
        'lora-alpha': { type: 'string' },
        'lora-dropout': { type: 'string' },
        'target-modules': { type: 'string' },
        'use-rslora': { type: 'boolean' },
        lr: { type: 'string' },
        'max-steps': { type: 'string' },
        'batch-size': { type: 'string' },
        'block-size': { type: 'string' },
        'warmup-steps': { type: 'string' },
        'weight-decay': { type: 'string' },
        optimizer: { type: 'string' },
        momentum: { type: 'string' },
        'grad-accum': { type: 'string' },
        'lr-scheduler': { type: 'string' },
        'eval-every': { type: 'string' },
        'val-fraction': { type: 'string' },
        'test-fraction': { type: 'string' },
        'val-data': { type: 'string' },
        'test-data': { type: 'string' },
        'exact-match': { type: 'string' },
        format: { type: 'string' },
        template: { type: 'string' },
        map: { type: 'string' },
        'train-on-prompt': { type: 'boolean' },
        packing: { type: 'boolean' },
        'data-kind': { type: 'string' },
        bits: { type: 'string' },
        patience: { type: 'string' },
        'min-delta': { type: 'string' },
        forgetting: { type: 'string' },
        recipe: { type: 'string' },
        'num-virtual-tokens': { type: 'string' },
        'base-name': { type: 'string' },
        adapter: { type: 'string' },
        out: { type: 'string' },
        ids: { type: 'string' },
        prompt: { type: 'string' },
        'max-tokens': { type: 'string' },
        temperature: { type: 'string' },
        'top-k': { type: 'string' },
        'top-p': { type: 'string' },
        seed: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    process.stderr.write(`tabtune: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const [command] = args.positionals;
  if (args.values.help || !command) {
    process.stdout.write(HELP);
    return command || args.values.help ? 0 : 2;
  }
  const backend = args.values.backend!;
  if (!isBackendRequest(backend)) {
    process.stderr.write(`tabtune: --backend must be one of auto, webgpu, webgl, wasm, cpu; got "${backend}"\n`);
    return 2;
  }
  // PROD silences tfjs's console advice to install tfjs-node (which cannot install here).
  tf.env().set('PROD', true);
  const studio = new Studio({ kv: fsKV(resolve(args.values.state!)), selectBackend: (r: BackendRequest, onLost, exclude) => selectBackend(r, { onLost, exclude }) });

  try {
    if (command === 'logits') {
      if (!args.values.model) return usage('logits needs --model DIR');
      const textGiven = args.values.text !== DEFAULT_TEXT;
      if (!args.values.ids && !textGiven) return usage('logits needs --text "..." or --ids 1,2,3');
      let ids: number[];
      if (args.values.ids) {
        ids = args.values.ids.split(',').map((x) => Number(x.trim()));
        const bad = ids.findIndex((x) => !Number.isInteger(x) || x < 0);
        if (bad >= 0) return usage(`--ids must be non-negative whole numbers; item ${bad + 1} is "${args.values.ids.split(',')[bad]}"`);
      } else {
        ids = (await loadTokenizer(folderFiles(args.values.model))).encode(args.values.text!);
      }
      await studio.init(backend);
      process.stdout.write(JSON.stringify(await logits(args.values.model, ids, args.values.adapter)) + '\n');
      return 0;
    }
    if (command === 'merge') {
      if (!args.values.model || !args.values.adapter || !args.values.out) return usage('merge needs --model DIR --adapter DIR --out DIR');
      await studio.init(backend);
      const { model } = await loadModel(args.values.model, args.values.adapter);
      try {
        const files = await mergedFolder(model, folderFiles(args.values.model));
        const out = resolve(args.values.out);
        mkdirSync(out, { recursive: true });
        for (const [name, bytes] of files) writeFileSync(join(out, name), bytes);
        process.stdout.write(`wrote ${[...files.keys()].join(', ')} to ${out}\n`);
      } finally {
        model.dispose();
      }
      return 0;
    }
    if (command === 'generate') {
      if (!args.values.model) return usage('generate needs --model DIR');
      if (args.values.prompt === undefined) return usage('generate needs --prompt "..."');
      const numberOpt = (name: string, fallback: number) => {
        const raw = args.values[name as keyof typeof args.values];
        if (raw === undefined) return fallback;
        const v = Number(raw);
        if (!Number.isFinite(v)) throw new ConfigError(`--${name} must be a number, got "${raw}"`, { field: name });
        return v;
      };
      const options = {
        maxNewTokens: numberOpt('max-tokens', SAMPLE_DEFAULTS.maxNewTokens),
        temperature: numberOpt('temperature', SAMPLE_DEFAULTS.temperature),
        topK: numberOpt('top-k', SAMPLE_DEFAULTS.topK),
        topP: numberOpt('top-p', SAMPLE_DEFAULTS.topP),
        seed: numberOpt('seed', SAMPLE_DEFAULTS.seed),
      };
      await studio.init(backend);
      await generateText(args.values.model, args.values.prompt, options);
      return 0;
    }
    if (command === 'info') {
      const report = await studio.init(backend);
      const info = { tabtune: readVersion(), node: process.versions.node, tfjs: tf.version_core, backend: report };
      process.stdout.write(JSON.stringify(info, null, 2) + '\n');
      return 0;
    }
    if (command === 'data') {
      const file = args.positionals[1] ?? args.values.data;
      if (!file) return usage('data needs a FILE: tabtune data FILE [--format F] [--model DIR]');
      const { report, usable } = await dataReport(file, args.values as FinetuneArgs);
      process.stdout.write(JSON.stringify(report, null, args.values.json ? undefined : 2) + '\n');
      if (!usable) process.stderr.write(`tabtune: ${String(report.error)}\n`);
      return usable ? 0 : 1;
    }
    if (command === 'recipe') {
      if (!args.values.model || !args.values.recipe) return usage('recipe needs --model DIR --data FILE --recipe DIR');
      await finetune({ ...(args.values as FinetuneArgs & { model: string }), recipeOnly: true }, (line) => process.stdout.write(line + '\n'));
      return 0;
    }
    if (command === 'train' && args.values.model) {
      await studio.init(backend);
      return await finetune(args.values as FinetuneArgs & { model: string }, (line) => process.stdout.write(line + '\n'));
    }
    if (command === 'train') {
      const steps = args.values.steps === undefined ? undefined : Number(args.values.steps);
      if (steps !== undefined && !(Number.isInteger(steps) && steps > 0)) {
        process.stderr.write(`tabtune: --steps must be a positive whole number; got "${args.values.steps}"\n`);
        return 2;
      }
      const textFile = resolve(args.values.text!);
      let text: string;
      try {
        text = readFileSync(textFile, 'utf8');
      } catch (e) {
        process.stderr.write(`tabtune: cannot read --text ${textFile}: ${(e as Error).message}\n`);
        return 1;
      }
      const report = await studio.init(backend);
      const json = args.values.json;
      if (!json) {
        process.stdout.write(`backend ${report.name}: ${report.adapter}\n`);
        for (const f of report.fallbacks) process.stdout.write(`  skipped ${f.backend}: ${f.reason}\n`);
      }
      const preset = args.values.preset!;
      const before = await studio.getRun(preset);
      if (!json && before?.resumable) {
        process.stdout.write(`resuming ${before.id} from step ${before.step}\n`);
      }
      // Ctrl-C pauses: the current step finishes, a checkpoint is written, and the run can resume.
      let interrupted = false;
      const onSigint = () => {
        interrupted = true;
        process.stderr.write('\nstopping after this step and saving a checkpoint (Ctrl-C again to quit at once)\n');
        process.once('SIGINT', () => process.exit(130));
        void studio.stop();
      };
      process.once('SIGINT', onSigint);
      const run = await studio.train({ preset, text, dataset: basename(textFile), steps }, (r) => {
        if (json) process.stdout.write(JSON.stringify(r) + '\n');
        else {
          process.stdout.write(
            `step ${String(r.step).padStart(4)}/${r.totalSteps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  ` +
              `|g| ${r.gradNorm.toFixed(3)}  ${r.stepMs.toFixed(0)} ms  ${Math.round(r.tokensPerSec)} tok/s  tensors ${r.numTensors}\n`,
          );
        }
      });
      process.off('SIGINT', onSigint);
      if (!json) {
        const first = run.history[0]?.loss;
        const last = run.history.at(-1)?.loss;
        process.stdout.write(
          `${run.status}: ${run.id} at step ${run.step}/${run.train.steps}, loss ${first?.toFixed(4)} -> ${last?.toFixed(4)}, ` +
            `${run.numParams} parameters, checkpoints in ${resolve(args.values.state!)}\n`,
        );
      }
      return interrupted ? 130 : 0;
    }
    process.stderr.write(`tabtune: unknown command "${command}"\n\n${HELP}`);
    return 2;
  } catch (e) {
    const err = e as Error & { field?: string; file?: string };
    const where = err.field ? ` (${err.field})` : err.file ? ` (${err.file})` : '';
    process.stderr.write(`tabtune: ${err.name ?? 'Error'}${where}: ${err.message}\n`);
    return 1;
  }
}

function usage(message: string): number {
  process.stderr.write(`tabtune: ${message}\n\n${HELP}`);
  return 2;
}

/** Logits of every position for a Hugging Face model folder, read as it is on disk. */
/** A Hugging Face model folder, with a PEFT adapter folder applied when one is given. */
async function loadModel(dir: string, adapterDir?: string, known?: ModelSummary) {
  const files = folderFiles(dir);
  const summary = known ?? (await inspectModel(files));
  const model = buildModel(summary.spec, await loadWeights(files, summary));
  if (adapterDir) {
    try {
      await applyAdapterFolder(model, folderFiles(adapterDir));
    } catch (e) {
      model.dispose();
      throw e;
    }
  }
  return { model, summary };
}

/** Logits of every position for a Hugging Face model folder, read as it is on disk. */
async function logits(dir: string, ids: number[], adapterDir?: string): Promise<{ ids: number[]; logits: number[][] }> {
  const summary = await inspectModel(folderFiles(dir));
  if (ids.length > summary.contextLength) throw new ConfigError(`${ids.length} ids exceed the model's context of ${summary.contextLength}`, { field: 'ids' });
  const over = ids.find((i) => i >= summary.vocabSize);
  if (over !== undefined) throw new ConfigError(`id ${over} is outside the vocabulary (0 to ${summary.vocabSize - 1})`, { field: 'ids' });
  const { model } = await loadModel(dir, adapterDir, summary);
  try {
    const out = tf.tidy(() => model.forward(tf.tensor2d(ids, [1, ids.length], 'int32')));
    // Read back: the command prints them.
    const flat = await out.data();
    out.dispose();
    const V = summary.vocabSize;
    return { ids, logits: ids.map((_, t) => Array.from(flat.subarray(t * V, (t + 1) * V))) };
  } finally {
    model.dispose();
  }
}

/** Streams a continuation of the prompt to stdout, decoding as tokens arrive. */
async function generateText(dir: string, prompt: string, options: Partial<SampleOptions>): Promise<void> {
  const files = folderFiles(dir);
  const tokenizer = await loadTokenizer(files);
  const summary = await inspectModel(files);
  const stopIds = await stopTokenIds(files, tokenizer);
  const model = buildModel(summary.spec, await loadWeights(files, summary));
  try {
    const out: number[] = [];
    let printed = '';
    for await (const t of generate(model, tokenizer.encode(prompt), { ...options, stopIds })) {
      if (t.done === 'stop') break;
      out.push(t.id);
      // Decode the whole continuation each time: a character can span several tokens.
      const text = tokenizer.decode(out, { skipSpecialTokens: true });
      if (!text.endsWith('\ufffd')) {
        process.stdout.write(text.slice(printed.length));
        printed = text;
      }
    }
    process.stdout.write('\n');
  } finally {
    model.dispose();
  }
}

function readVersion(): string {
  return (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/**
 * `tabtune train --model DIR --data FILE ...`: fine-tunes a Hugging Face model folder on a text
 * or rows file, with an adapter method (writing PEFT's folder) or fully (a Hugging Face folder).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { resolveTrainConfig, type TrainConfig } from '../core/config';
import { checkTokens, type ExampleList } from '../core/data/batch';
import { DatasetBuilder, decodedPairs, splitDataset } from '../core/data/dataset';
import { type ChatMessage, type ColumnMapping, type DatasetFormat, type Template } from '../core/data/formats';
import { kindOf, type FileKind } from '../core/data/parse';
import { ConfigError } from '../core/errors';
import { adapterFolder, mergedFolder, promptFolder } from '../core/io/export';
import { scaleOutRecipe, type RecipeInput } from '../core/io/recipe';
import { buildModel, inspectModel, loadWeights, type ModelFiles, type ModelSummary } from '../core/model/hf';
import { resolveLoraConfig, type LoraConfig } from '../core/peft/lora';
import { loadTokenizer, stopTokenIds, type HFTokenizer } from '../core/tokenizer/hf';
import { exactMatch } from '../core/train/samples';
import { attachMethod, checkHeldOut, checkMethodFits, dataLoss, perplexityOn, defaultLearningRate, METHODS, runFinetune, type Method } from '../core/train/finetune';
import { feedBuilder, folderFiles } from './files';

export interface FinetuneArgs {
  model: string;
  data?: string;
  out?: string;
  method?: string;
  json?: boolean;
  /** Write the recipe (--recipe DIR) and stop before training. */
  recipeOnly?: boolean;
  [flag: string]: string | boolean | undefined;
}

function num(args: FinetuneArgs, flag: string): number | undefined {
  const raw = args[flag];
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(v)) throw new ConfigError(`--${flag} must be a number, got "${raw}"`, { field: flag });
  return v;
}

/** Returns 130 when Ctrl-C ended the run early (what was learned is still written), else 0. */
export async function finetune(args: FinetuneArgs, write: (line: string) => void): Promise<number> {
  if (!args.data) throw new ConfigError('train --model needs --data FILE (text, JSONL, JSON, CSV or TSV)', { field: 'data' });
  if (!args.out && !args.recipeOnly) throw new ConfigError('train --model needs --out DIR for what it writes', { field: 'out' });
  const method = (args.method ?? 'lora') as Method;
  if (!METHODS.includes(method)) throw new ConfigError(`--method must be lora, qlora, bitfit, prompt or full, got "${method}"`, { field: 'method' });
  const bits = num(args, 'bits') ?? 8;
  if (bits !== 8 && bits !== 4) throw new ConfigError(`--bits must be 8 or 4, got ${bits}`, { field: 'bits' });
  const files = folderFiles(args.model);
  const summary = await inspectModel(files);
  const tokenizer = await loadTokenizer(files);
  const dataName = basename(args.data);
  const evalEvery = num(args, 'eval-every') ?? 0;
  const valFraction = num(args, 'val-fraction') ?? (evalEvery > 0 && typeof args['val-data'] !== 'string' ? 0.1 : 0);
  const testFraction = num(args, 'test-fraction') ?? 0;
  if (valFraction < 0 || valFraction >= 1) throw new ConfigError(`--val-fraction must be at least 0 and below 1, got ${valFraction}`, { field: 'val-fraction' });
  if (evalEvery > 0 && valFraction === 0 && typeof args['val-data'] !== 'string') throw new ConfigError('--eval-every needs held-out data: give --val-fraction above 0 or --val-data FILE', { field: 'val-fraction' });
  const train: TrainConfig = resolveTrainConfig(
    {
      steps: num(args, 'max-steps') ?? 100,
      batch_size: num(args, 'batch-size') ?? 4,
      block_size: num(args, 'block-size') ?? Math.min(128, summary.contextLength),
      learning_rate: num(args, 'lr') ?? defaultLearningRate(method),
      min_lr: 0,
      warmup_steps: num(args, 'warmup-steps') ?? 0,
      weight_decay: num(args, 'weight-decay') ?? 0,
      checkpoint_every: 1_000_000,
      seed: num(args, 'seed') ?? 1337,
      momentum: num(args, 'momentum'),
      grad_accum_steps: num(args, 'grad-accum'),
      optimizer: args.optimizer as TrainConfig['optimizer'] | undefined,
      lr_scheduler: args['lr-scheduler'] as TrainConfig['lr_scheduler'] | undefined,
    },
    { n_positions: summary.contextLength },
  );
  const encode = (t: string, special = false) => tokenizer.encode(t, { addSpecialTokens: special });
  const readData = async (path: string) => {
    const name = basename(path);
    const builder = new DatasetBuilder(name, typeof args['data-kind'] === 'string' ? (args['data-kind'] as FileKind) : kindOf(name), {
      ...dataFormat(args, tokenizer),
      encode,
      blockSize: train.block_size,
    });
    await feedBuilder(path, builder);
    return builder.end();
  };
  const built = await readData(args.data);
  const valFile = typeof args['val-data'] === 'string' ? await readData(args['val-data']) : null;
  const testFile = typeof args['test-data'] === 'string' ? await readData(args['test-data']) : null;
  const { data, report, trainTexts, trainText } = splitDataset(built, { validation: valFraction, test: testFraction, seed: train.seed }, args['train-on-prompt'] !== true, args.packing === true, valFile, testFile);
  write(
    args.json
      ? JSON.stringify({ dataset: { ...report, rejected: report.rejected.slice(0, 100) } })
      : `${dataName}: ${report.format}, ${report.accepted} rows kept, ${report.rejectedCount} rejected, ${report.truncated} truncated; ${report.tokens.toLocaleString('en')} tokens; split ${report.split.train}/${report.split.validation}/${report.split.test}` +
          report.rejected.slice(0, 10).map((r) => `\n  line ${r.line}: ${r.reason}`).join(''),
  );
  if (data.kind === 'tokens') checkTokens(data.train, train.block_size, dataName);
  if (evalEvery > 0) checkHeldOut(data, 'validation', train.block_size);
  if (testFraction > 0 || testFile) checkHeldOut(data, 'test', train.block_size);
  // Exact match: greedy answers to the first N test prompts, compared with their completions.
  const matchLimit = num(args, 'exact-match') ?? 0;
  if (!Number.isInteger(matchLimit) || matchLimit < 0) throw new ConfigError(`--exact-match must be a whole number of test rows, got ${args['exact-match']}`, { field: 'exact-match' });
  if (matchLimit > 0 && !((testFraction > 0 || testFile) && data.kind === 'examples')) {
    throw new ConfigError('--exact-match scores a test part of rows with a prompt and a completion: add --test-data or --test-fraction', { field: 'exact-match' });
  }
  let forgetTokens: Int32Array | null = null;
  if (typeof args.forgetting === 'string') {
    try {
      forgetTokens = Int32Array.from(encode(readFileSync(resolve(args.forgetting), 'utf8')));
    } catch (e) {
      throw new ConfigError(`cannot read --forgetting ${args.forgetting}: ${(e as Error).message}`, { file: args.forgetting });
    }
    checkTokens(forgetTokens, train.block_size, basename(args.forgetting));
  }
  let lora: LoraConfig | null = null;
  if (method === 'lora' || method === 'qlora') {
    const targets = typeof args['target-modules'] === 'string' ? args['target-modules'] : undefined;
    lora = resolveLoraConfig(summary.spec.arch, {
      r: num(args, 'r'),
      lora_alpha: num(args, 'lora-alpha'),
      lora_dropout: num(args, 'lora-dropout'),
      target_modules: targets === undefined ? undefined : targets === 'all-linear' ? 'all-linear' : targets.split(',').map((t) => t.trim()),
      use_rslora: args['use-rslora'] === true,
    } as Partial<LoraConfig>);
  }
  const virtualTokens = num(args, 'num-virtual-tokens') ?? 8;
  checkMethodFits({ method, virtualTokens }, train.block_size, summary.contextLength);
  if (typeof args.recipe === 'string') {
    const recipe = scaleOutRecipe({
      baseModel: typeof args['base-name'] === 'string' ? args['base-name'] : resolve(args.model),
      method: (method === 'qlora' ? 'lora' : method) as RecipeInput['method'],
      quantBits: method === 'qlora' ? bits : undefined,
      lora,
      virtualTokens,
      train,
      // The training split only: what this run trains on.
      data: data.kind === 'tokens' ? { text: trainText! } : { pairs: trainTexts ?? decodedPairs(data.train, (ids) => tokenizer.decode(ids, { skipSpecialTokens: true })), completionOnly: data.completionOnly, packing: data.packing },
    });
    const dir = resolve(args.recipe);
    mkdirSync(dir, { recursive: true });
    for (const [name, body] of recipe) writeFileSync(join(dir, name), body);
    write(args.json ? JSON.stringify({ recipe: dir, files: [...recipe.keys()] }) : `wrote the scale-out recipe (${[...recipe.keys()].join(', ')}) to ${dir}`);
    if (args.recipeOnly) return 0;
  }
  const model = buildModel(summary.spec, await loadWeights(files, summary));
  try {
    // The forgetting check's "before" is the base's perplexity, measured before the method is attached.
    const perplexityBefore = forgetTokens ? await perplexityOn(model, forgetTokens, train.block_size) : null;
    const stopIds = matchLimit > 0 ? await stopTokenIds(files, tokenizer) : [];
    const decodeText = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });
    const score = async (what: string) => {
      const m = await exactMatch(model, (data as { test: ExampleList }).test, decodeText, stopIds, matchLimit);
      write(
        args.json
          ? JSON.stringify({ exactMatch: { what, correct: m.correct, total: m.total, rate: m.rate, examples: m.examples } })
          : `exact match ${what}: ${m.correct}/${m.total} (${(100 * m.rate).toFixed(1)}%)` + m.examples.map((x) => `\n  ${x.ok ? 'ok ' : 'no '} ${JSON.stringify(x.prompt)} -> ${JSON.stringify(x.got)} (want ${JSON.stringify(x.expected)})`).join(''),
      );
    };
    if (matchLimit > 0) await score('before');
    const attached = await attachMethod(model, { method, lora, virtualTokens, bits }, train.block_size, train.seed);
    if (attached.quantized) {
      const { bytesBefore, bytesAfter } = attached.quantized;
      const saved = bytesBefore - bytesAfter;
      write(args.json ? JSON.stringify({ quantized: attached.quantized }) : `${bits}-bit base: device memory ${(bytesBefore / 2 ** 20).toFixed(2)} MiB -> ${(bytesAfter / 2 ** 20).toFixed(2)} MiB (saved ${(saved / 2 ** 20).toFixed(2)} MiB, ${((100 * saved) / bytesBefore).toFixed(0)}%)`);
    }
    if (!args.json) {
      write(`trainable params: ${attached.trainable.toLocaleString('en')} || all params: ${attached.total.toLocaleString('en')} || trainable%: ${attached.percent.toFixed(4)}`);
    }
    const eos = await eosOf(files, tokenizer);
    // Ctrl-C: stop after the current step and still write what was learned (again: quit at once).
    let interrupted = false;
    const onSigint = () => {
      interrupted = true;
      process.stderr.write('\nstopping after this step and writing what was learned so far (Ctrl-C again to quit at once)\n');
      process.once('SIGINT', () => process.exit(130));
    };
    process.once('SIGINT', onSigint);
    const outcome = await runFinetune(model, train, data, eos, { evalEvery, patience: num(args, 'patience') ?? 0, minDelta: num(args, 'min-delta') ?? 0, forgetting: forgetTokens, perplexityBefore }, {
      onStep: async (r) => {
        write(args.json ? JSON.stringify(r) : `step ${String(r.step).padStart(5)}/${train.steps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  |g| ${r.gradNorm.toFixed(3)}  ${r.stepMs.toFixed(0)} ms`);
        // Let Ctrl-C in: on the CPU backends a step's read back resolves without a macrotask.
        await new Promise((res) => setImmediate(res));
      },
      onEval: (e) =>
        write(
          args.json
            ? JSON.stringify({ eval: { step: e.step, trainLoss: e.trainLoss, valLoss: e.valLoss, best: e.best.step, improved: e.improved, stop: e.stop, overfitting: e.overfitting } })
            : `eval at step ${e.step}: validation loss ${e.valLoss.toFixed(4)} (train ${e.trainLoss.toFixed(4)}), best ${e.best.valLoss.toFixed(4)} at step ${e.best.step}` +
                (e.overfitting ? '  OVERFITTING: validation loss rising while training loss falls' : ''),
        ),
      shouldStop: () => interrupted,
    }).finally(() => process.off('SIGINT', onSigint));
    if (outcome.cancelled) write(args.json ? JSON.stringify({ cancelled: { step: outcome.steps } }) : `stopped by Ctrl-C at step ${outcome.steps} of ${train.steps}`);
    if (outcome.stoppedEarly && !args.json) write(`early stopping: no improvement of ${num(args, 'min-delta') ?? 0} in ${num(args, 'patience')} evaluations`);
    if (outcome.restoredBest && outcome.best && !args.json) write(`keeping the best weights: step ${outcome.best.step}, validation loss ${outcome.best.valLoss.toFixed(4)}`);
    if (outcome.forgetting) {
      const { perplexityBefore: before, perplexityAfter: after } = outcome.forgetting;
      const change = (100 * (after - before)) / before;
      write(
        args.json
          ? JSON.stringify({ forgetting: { file: basename(String(args.forgetting)), ...outcome.forgetting } })
          : `forgetting check on ${basename(String(args.forgetting))}: perplexity ${before.toFixed(2)} before, ${after.toFixed(2)} after (${change >= 0 ? '+' : ''}${change.toFixed(1)}%)`,
      );
    }
    if (testFraction > 0 || testFile) {
      const testLoss = await dataLoss(model, data, 'test', train.block_size, eos);
      write(args.json ? JSON.stringify({ test: { loss: testLoss, perplexity: Math.exp(testLoss) } }) : `test split: loss ${testLoss.toFixed(4)}, perplexity ${Math.exp(testLoss).toFixed(2)}`);
    }
    if (matchLimit > 0) await score('after');
    const out = resolve(args.out!);
    const folder = lora
      ? await adapterFolder(model, lora, summary.source)
      : method === 'prompt'
        ? await promptFolder(model, summary.source, ...layersAndHeads(summary))
        : await mergedFolder(model, files);
    mkdirSync(out, { recursive: true });
    for (const [name, b] of folder) writeFileSync(join(out, name), b);
    if (!args.json) write(`wrote ${[...folder.keys()].join(', ')} to ${out}`);
    return outcome.cancelled ? 130 : 0;
  } finally {
    model.dispose();
  }
}

/** `--map prompt=question,completion=answer`: a format's roles to this file's columns. */
function parseMapping(raw: unknown): ColumnMapping | undefined {
  if (typeof raw !== 'string') return undefined;
  const out: ColumnMapping = {};
  for (const pair of raw.split(',')) {
    const [role, column] = pair.split('=').map((s) => s.trim());
    if (!role || !column) throw new ConfigError(`--map takes role=column pairs separated by commas (prompt=question,completion=answer); got "${pair}"`, { field: 'map' });
    out[role] = column;
  }
  return out;
}

/** The format, mapping and template flags, with the model's chat template. */
export function dataFormat(args: FinetuneArgs, tokenizer: HFTokenizer | null) {
  return {
    format: typeof args.format === 'string' ? (args.format as DatasetFormat) : undefined,
    mapping: parseMapping(args.map),
    template: typeof args.template === 'string' ? (args.template as Template) : undefined,
    renderChat: tokenizer?.chatTemplate ? (m: ChatMessage[], g: boolean) => tokenizer.applyChatTemplate(m, { addGenerationPrompt: g }) : null,
  };
}

/** The id the model ends a text with, which examples learn to produce. */
async function eosOf(files: ModelFiles, tokenizer: HFTokenizer): Promise<number> {
  const id = tokenizer.eosId ?? (await stopTokenIds(files, tokenizer))[0];
  if (id === undefined) throw new ConfigError('the model names no EOS token (tokenizer_config.json eos_token, or eos_token_id in config.json), so it cannot learn where an answer ends', { field: 'eos_token' });
  return id;
}

function layersAndHeads(summary: ModelSummary): [number, number] {
  const spec = summary.spec;
  return spec.arch === 'gpt2' ? [spec.config.n_layer, spec.config.n_head] : [spec.config.num_hidden_layers, spec.config.num_attention_heads];
}

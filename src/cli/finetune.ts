/**
 * `tabtune train --model DIR --data FILE ...`: fine-tunes a Hugging Face model folder on a text
 * file, with LoRA (writing a PEFT adapter folder) or fully (writing a Hugging Face folder).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { resolveTrainConfig, type TrainConfig } from '../core/config';
import { checkTokens } from '../core/data/batch';
import { ConfigError } from '../core/errors';
import { adapterFolder, mergedFolder } from '../core/io/export';
import { buildModel, inspectModel, loadWeights } from '../core/model/hf';
import { attachLora, resolveLoraConfig, trainableParameters, type LoraConfig } from '../core/peft/lora';
import { loadTokenizer } from '../core/tokenizer/hf';
import { Trainer } from '../core/train/trainer';
import { folderFiles } from './files';

export interface FinetuneArgs {
  model: string;
  data?: string;
  out?: string;
  method?: string;
  json?: boolean;
  [flag: string]: string | boolean | undefined;
}

function num(args: FinetuneArgs, flag: string): number | undefined {
  const raw = args[flag];
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(v)) throw new ConfigError(`--${flag} must be a number, got "${raw}"`, { field: flag });
  return v;
}

export async function finetune(args: FinetuneArgs, write: (line: string) => void): Promise<void> {
  if (!args.data) throw new ConfigError('train --model needs --data FILE (a text file)', { field: 'data' });
  if (!args.out) throw new ConfigError('train --model needs --out DIR for what it writes', { field: 'out' });
  const method = args.method ?? 'lora';
  if (method !== 'lora' && method !== 'full') throw new ConfigError(`--method must be lora or full, got "${method}"`, { field: 'method' });
  const files = folderFiles(args.model);
  const summary = await inspectModel(files);
  const tokenizer = await loadTokenizer(files);
  let text: string;
  try {
    text = readFileSync(resolve(args.data), 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read --data ${args.data}: ${(e as Error).message}`, { file: args.data });
  }
  const tokens = Int32Array.from(tokenizer.encode(text, { addSpecialTokens: false }));
  const train: TrainConfig = resolveTrainConfig(
    {
      steps: num(args, 'max-steps') ?? 100,
      batch_size: num(args, 'batch-size') ?? 4,
      block_size: num(args, 'block-size') ?? Math.min(128, summary.contextLength),
      learning_rate: num(args, 'lr') ?? (method === 'lora' ? 2e-4 : 5e-5),
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
  checkTokens(tokens, train.block_size, basename(args.data));
  const model = buildModel(summary.spec, await loadWeights(files, summary));
  let lora: LoraConfig | null = null;
  try {
    if (method === 'lora') {
      const targets = typeof args['target-modules'] === 'string' ? args['target-modules'] : undefined;
      lora = resolveLoraConfig(summary.spec.arch, {
        r: num(args, 'r'),
        lora_alpha: num(args, 'lora-alpha'),
        lora_dropout: num(args, 'lora-dropout'),
        target_modules: targets === undefined ? undefined : targets === 'all-linear' ? 'all-linear' : targets.split(',').map((t) => t.trim()),
        use_rslora: args['use-rslora'] === true,
      } as Partial<LoraConfig>);
      attachLora(model, lora, train.seed);
    }
    const counts = trainableParameters(model);
    if (!args.json) {
      write(`trainable params: ${counts.trainable.toLocaleString('en')} || all params: ${counts.total.toLocaleString('en')} || trainable%: ${counts.percent.toFixed(4)}`);
    }
    const trainer = new Trainer(model, train);
    try {
      for (let i = 0; i < train.steps; i++) {
        const r = await trainer.trainStep(tokens);
        write(args.json ? JSON.stringify(r) : `step ${String(r.step).padStart(5)}/${train.steps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  |g| ${r.gradNorm.toFixed(3)}  ${r.stepMs.toFixed(0)} ms`);
      }
    } finally {
      trainer.dispose();
    }
    const out = resolve(args.out);
    const folder = lora ? await adapterFolder(model, lora, summary.source) : await mergedFolder(model, files);
    mkdirSync(out, { recursive: true });
    for (const [name, bytes] of folder) writeFileSync(join(out, name), bytes);
    if (!args.json) write(`wrote ${[...folder.keys()].join(', ')} to ${out}`);
  } finally {
    model.dispose();
  }
}

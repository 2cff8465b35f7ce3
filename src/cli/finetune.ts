/**
 * `tabtune train --model DIR --data FILE ...`: fine-tunes a Hugging Face model folder on a text
 * file, with LoRA (writing a PEFT adapter folder) or fully (writing a Hugging Face folder).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { resolveTrainConfig, type TrainConfig } from '../core/config';
import { checkTokens } from '../core/data/batch';
import { ConfigError } from '../core/errors';
import { adapterFolder, mergedFolder, promptFolder } from '../core/io/export';
import { scaleOutRecipe, type RecipeInput } from '../core/io/recipe';
import { buildModel, inspectModel, loadWeights } from '../core/model/hf';
import { useBitFit } from '../core/peft/bitfit';
import { attachPromptTuning } from '../core/peft/prompt';
import { quantizeBase } from '../core/peft/quant';
import type { ModelSummary } from '../core/model/hf';
import { attachLora, resolveLoraConfig, trainableParameters, type LoraConfig } from '../core/peft/lora';
import { loadTokenizer } from '../core/tokenizer/hf';
import type { CausalLM } from '../core/model/base';
import { EarlyStopping, heldOutLoss } from '../core/train/evaluate';
import { Trainer } from '../core/train/trainer';
import * as tf from '@tensorflow/tfjs-core';
import { folderFiles } from './files';

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

export async function finetune(args: FinetuneArgs, write: (line: string) => void): Promise<void> {
  if (!args.data) throw new ConfigError('train --model needs --data FILE (a text file)', { field: 'data' });
  if (!args.out && !args.recipeOnly) throw new ConfigError('train --model needs --out DIR for what it writes', { field: 'out' });
  const method = args.method ?? 'lora';
  if (!['lora', 'qlora', 'full', 'bitfit', 'prompt'].includes(method)) {
    throw new ConfigError(`--method must be lora, qlora, bitfit, prompt or full, got "${method}"`, { field: 'method' });
  }
  const files = folderFiles(args.model);
  const summary = await inspectModel(files);
  const tokenizer = await loadTokenizer(files);
  let text: string;
  try {
    text = readFileSync(resolve(args.data), 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read --data ${args.data}: ${(e as Error).message}`, { file: args.data });
  }
  const allTokens = Int32Array.from(tokenizer.encode(text, { addSpecialTokens: false }));
  const evalEvery = num(args, 'eval-every') ?? 0;
  const valFraction = num(args, 'val-fraction') ?? (evalEvery > 0 ? 0.1 : 0);
  if (valFraction < 0 || valFraction >= 1) throw new ConfigError(`--val-fraction must be at least 0 and below 1, got ${valFraction}`, { field: 'val-fraction' });
  if (evalEvery > 0 && valFraction === 0) throw new ConfigError('--eval-every needs held-out data: give --val-fraction above 0', { field: 'val-fraction' });
  // The last part of the text is held out for validation: never trained on.
  const cut = Math.floor(allTokens.length * (1 - valFraction));
  const tokens = allTokens.subarray(0, cut);
  const valTokens = allTokens.subarray(cut);
  const train: TrainConfig = resolveTrainConfig(
    {
      steps: num(args, 'max-steps') ?? 100,
      batch_size: num(args, 'batch-size') ?? 4,
      block_size: num(args, 'block-size') ?? Math.min(128, summary.contextLength),
      // Usual starting points: adapters 2e-4, soft prompts much higher, whole models lower.
      learning_rate: num(args, 'lr') ?? (method === 'lora' || method === 'qlora' ? 2e-4 : method === 'prompt' ? 3e-2 : method === 'bitfit' ? 1e-3 : 5e-5),
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
  const virtualTokens = num(args, 'num-virtual-tokens') ?? 8;
  if (method === 'prompt' && virtualTokens + train.block_size > summary.contextLength) {
    throw new ConfigError(
      `${virtualTokens} virtual tokens plus --block-size ${train.block_size} exceed the model's context of ${summary.contextLength}; lower one of them`,
      { field: 'block-size' },
    );
  }
  if (evalEvery > 0) checkTokens(valTokens, train.block_size, `the held-out ${Math.round(valFraction * 100)}% of ${basename(args.data)}`);
  let forgetTokens: Int32Array | null = null;
  if (typeof args.forgetting === 'string') {
    try {
      forgetTokens = Int32Array.from(tokenizer.encode(readFileSync(resolve(args.forgetting), 'utf8'), { addSpecialTokens: false }));
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
  if (typeof args.recipe === 'string') {
    const recipe = scaleOutRecipe({
      baseModel: typeof args['base-name'] === 'string' ? args['base-name'] : resolve(args.model),
      method: (method === 'qlora' ? 'lora' : method) as RecipeInput['method'],
      lora,
      virtualTokens,
      train,
      text,
    });
    const dir = resolve(args.recipe);
    mkdirSync(dir, { recursive: true });
    for (const [name, body] of recipe) writeFileSync(join(dir, name), body);
    write(args.json ? JSON.stringify({ recipe: dir, files: [...recipe.keys()] }) : `wrote the scale-out recipe (${[...recipe.keys()].join(', ')}) to ${dir}`);
    if (args.recipeOnly) return;
  }
  const model = buildModel(summary.spec, await loadWeights(files, summary));
  try {
    if (method === 'qlora') {
      // The frozen base in 8 bits, dequantized as it is used; the adapters train in float32.
      const { bytesBefore, bytesAfter } = await quantizeBase(model);
      const saved = bytesBefore - bytesAfter;
      write(args.json ? JSON.stringify({ quantized: { bytesBefore, bytesAfter } }) : `8-bit base: device memory ${(bytesBefore / 2 ** 20).toFixed(2)} MiB -> ${(bytesAfter / 2 ** 20).toFixed(2)} MiB (saved ${(saved / 2 ** 20).toFixed(2)} MiB, ${((100 * saved) / bytesBefore).toFixed(0)}%)`);
    }
    if (lora) attachLora(model, lora, train.seed);
    if (method === 'bitfit') useBitFit(model);
    if (method === 'prompt') attachPromptTuning(model, virtualTokens, train.seed);
    const counts = trainableParameters(model);
    if (!args.json) {
      write(`trainable params: ${counts.trainable.toLocaleString('en')} || all params: ${counts.total.toLocaleString('en')} || trainable%: ${counts.percent.toFixed(4)}`);
    }
    // The cost of specialising, made visible: perplexity on general text before and after.
    const pplBefore = forgetTokens ? Math.exp(await heldOutLoss(model, forgetTokens, train.block_size)) : null;
    const stopping = new EarlyStopping(num(args, 'patience') ?? 0, num(args, 'min-delta') ?? 0);
    let best: Map<string, Float32Array> | null = null;
    const trainer = new Trainer(model, train);
    try {
      let recent: number[] = [];
      for (let i = 0; i < train.steps; i++) {
        const r = await trainer.trainStep(tokens);
        recent.push(r.loss);
        write(args.json ? JSON.stringify(r) : `step ${String(r.step).padStart(5)}/${train.steps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  |g| ${r.gradNorm.toFixed(3)}  ${r.stepMs.toFixed(0)} ms`);
        if (evalEvery > 0 && (r.step % evalEvery === 0 || r.step === train.steps)) {
          const point = { step: r.step, trainLoss: recent.reduce((a, b) => a + b, 0) / recent.length, valLoss: await heldOutLoss(model, valTokens, train.block_size, 32) };
          recent = [];
          const verdict = stopping.update(point);
          if (verdict.improved) best = await snapshot(model);
          write(
            args.json
              ? JSON.stringify({ eval: { ...point, best: stopping.best!.step, ...verdict } })
              : `eval at step ${point.step}: validation loss ${point.valLoss.toFixed(4)} (train ${point.trainLoss.toFixed(4)}), best ${stopping.best!.valLoss.toFixed(4)} at step ${stopping.best!.step}` +
                  (verdict.overfitting ? '  OVERFITTING: validation loss rising while training loss falls' : ''),
          );
          if (verdict.stop) {
            if (!args.json) write(`early stopping: no improvement of ${stopping.minDelta} in ${stopping.patience} evaluations`);
            break;
          }
        }
      }
    } finally {
      trainer.dispose();
    }
    if (best && stopping.best) {
      restore(model, best);
      if (!args.json) write(`keeping the best weights: step ${stopping.best.step}, validation loss ${stopping.best.valLoss.toFixed(4)}`);
    }
    if (forgetTokens && pplBefore !== null) {
      const pplAfter = Math.exp(await heldOutLoss(model, forgetTokens, train.block_size));
      const change = (100 * (pplAfter - pplBefore)) / pplBefore;
      write(
        args.json
          ? JSON.stringify({ forgetting: { file: basename(String(args.forgetting)), perplexityBefore: pplBefore, perplexityAfter: pplAfter } })
          : `forgetting check on ${basename(String(args.forgetting))}: perplexity ${pplBefore.toFixed(2)} before, ${pplAfter.toFixed(2)} after (${change >= 0 ? '+' : ''}${change.toFixed(1)}%)`,
      );
    }
    const out = resolve(args.out!);
    const folder = lora
      ? await adapterFolder(model, lora, summary.source)
      : method === 'prompt'
        ? await promptFolder(model, summary.source, ...layersAndHeads(summary))
        : await mergedFolder(model, files);
    mkdirSync(out, { recursive: true });
    for (const [name, bytes] of folder) writeFileSync(join(out, name), bytes);
    if (!args.json) write(`wrote ${[...folder.keys()].join(', ')} to ${out}`);
  } finally {
    model.dispose();
  }
}

/** The trainable weights read back to the CPU (a sync point, at evaluations only). */
async function snapshot(model: CausalLM): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, v] of model.trainableParams()) out.set(name, new Float32Array(await v.data()));
  return out;
}

function restore(model: CausalLM, weights: Map<string, Float32Array>): void {
  for (const [name, v] of model.trainableParams()) tf.tidy(() => v.assign(tf.tensor(weights.get(name)!, v.shape)));
}

function layersAndHeads(summary: ModelSummary): [number, number] {
  const spec = summary.spec;
  return spec.arch === 'gpt2' ? [spec.config.n_layer, spec.config.n_head] : [spec.config.num_hidden_layers, spec.config.num_attention_heads];
}

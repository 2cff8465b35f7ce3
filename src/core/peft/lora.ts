/**
 * LoRA as PEFT does it: a frozen linear layer W gets a trainable low-rank update,
 * out = W x + B A dropout(x) * scaling, with A [r, in] initialised Kaiming-uniform, B [out, r]
 * zeros (so a fresh adapter changes nothing), scaling = lora_alpha / r (or / sqrt(r) with rsLoRA).
 * Adapters save and load under PEFT's exact keys and config, and merge into the base weights.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { FieldSpec } from '../config';
import { ConfigError } from '../errors';
import type { AdapterLayer, CausalLM, LinearModule, NamedWeights } from '../model/base';
import { Rng } from '../rng';
import { dequantize } from './quant';

export interface LoraConfig {
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** Module name suffixes as PEFT matches them, or "all-linear". */
  target_modules: string[] | 'all-linear';
  use_rslora: boolean;
}

export const LORA_SPEC: Record<'r' | 'lora_alpha' | 'lora_dropout', FieldSpec> = {
  r: { default: 8, min: 1, max: 4096, integer: true, help: 'Rank of the update: the width of A and B. Higher learns more and costs more.' },
  lora_alpha: { default: 16, min: 0, max: 1e6, integer: false, help: 'Scale of the update: it is multiplied by lora_alpha / r.' },
  lora_dropout: { default: 0.05, min: 0, max: 0.99, integer: false, help: 'Dropout on the input of the adapter while training.' },
};

/** PEFT's defaults per architecture (its TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
export const DEFAULT_TARGETS: Record<string, string[]> = { gpt2: ['c_attn'], llama: ['q_proj', 'v_proj'] };

export function resolveLoraConfig(arch: string, partial: Partial<LoraConfig> = {}): LoraConfig {
  const cfg: LoraConfig = {
    r: LORA_SPEC.r.default,
    lora_alpha: LORA_SPEC.lora_alpha.default,
    lora_dropout: LORA_SPEC.lora_dropout.default,
    target_modules: DEFAULT_TARGETS[arch] ?? 'all-linear',
    use_rslora: false,
    // Only what is given: an undefined field keeps its default.
    ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)),
  };
  for (const key of ['r', 'lora_alpha', 'lora_dropout'] as const) {
    const f = LORA_SPEC[key];
    const v = cfg[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < f.min || v > f.max || (f.integer && !Number.isInteger(v))) {
      throw new ConfigError(
        `lora.${key} must be ${f.integer ? 'a whole number' : 'a number'} from ${f.min} to ${f.max}, got ${JSON.stringify(v)}`,
        { field: `lora.${key}` },
      );
    }
  }
  return cfg;
}

/** The linear layers a config targets: a name equal to a target, or ending in "." + target. */
export function targetedModules(model: CausalLM, targets: LoraConfig['target_modules']): LinearModule[] {
  const modules = model.linearModules();
  if (targets === 'all-linear') return modules;
  const chosen = modules.filter((m) => targets.some((t) => m.path === t || m.path.endsWith(`.${t}`)));
  if (chosen.length === 0) {
    const names = [...new Set(modules.map((m) => m.path.split('.').pop()))].join(', ');
    throw new ConfigError(`lora.target_modules ${JSON.stringify(targets)} match no layer of this model; its linear layers are ${names}`, {
      field: 'lora.target_modules',
    });
  }
  return chosen;
}

export function loraScaling(cfg: LoraConfig): number {
  return cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r;
}

/** Attaches fresh adapters (A Kaiming-uniform from the seed, B zeros) to the targeted layers. */
export function attachLora(model: CausalLM, cfg: LoraConfig, seed: number): void {
  if (model.adapters.size) throw new ConfigError('this model already has adapters; merge or remove them first', { field: 'lora' });
  const rng = new Rng(seed);
  for (const m of targetedModules(model, cfg.target_modules)) {
    // PEFT: kaiming_uniform_(A, a=sqrt(5)), whose bound is 1 / sqrt(fan_in).
    const bound = 1 / Math.sqrt(m.in);
    const a = new Float32Array(cfg.r * m.in);
    for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
    addAdapter(model, m, cfg, { A: a, B: new Float32Array(m.out * cfg.r) });
  }
}

function addAdapter(model: CausalLM, m: LinearModule, cfg: LoraConfig, data: { A: Float32Array; B: Float32Array }): void {
  model.adapters.set(m.path, makeLayer(model, m, cfg, data));
}

/**
 * One layer's A and B as variables. `tag` goes at the end of the variable names: two adapters held
 * for one model at once need names of their own (tfjs refuses a name twice).
 */
function makeLayer(model: CausalLM, m: LinearModule, cfg: LoraConfig, data: { A: Float32Array; B: Float32Array }, tag = ''): AdapterLayer {
  // tidy disposes the temporary tensors; the variables survive it.
  const make = (key: string, values: Float32Array, shape: [number, number]) =>
    tf.tidy(() => tf.variable(tf.tensor2d(values, shape), true, model.variableName(key) + tag));
  return {
    A: make(`${m.path}.lora_A.weight`, data.A, [cfg.r, m.in]),
    B: make(`${m.path}.lora_B.weight`, data.B, [m.out, cfg.r]),
    scaling: loraScaling(cfg),
    dropout: cfg.lora_dropout,
  };
}

/** Trainable and total parameters, as PEFT's print_trainable_parameters reports them. */
export function trainableParameters(model: CausalLM): { trainable: number; total: number; percent: number } {
  let trainable = 0;
  for (const v of model.trainableParams().values()) trainable += v.size;
  const base = model.numParams();
  // Adapters add parameters; BitFit and full fine-tuning train some or all of the base's own.
  const total = model.adapters.size || model.softPrompt ? base + trainable : base;
  return { trainable, total, percent: (100 * trainable) / total };
}

/** Adds (sign 1) or subtracts (sign -1) each listed adapter's update to its base weight. */
function foldAdapters(model: CausalLM, which: [string, AdapterLayer][], sign: 1 | -1): void {
  const modules = new Map(model.linearModules().map((m) => [m.path, m]));
  tf.tidy(() => {
    for (const [path, a] of which) {
      const name = `${path}.weight`;
      const delta = tf.mul(tf.matMul(a.B, a.A), sign * a.scaling); // [out, in]
      const update = modules.get(path)!.conv1d ? tf.transpose(delta) : delta;
      const w = model.params.get(name);
      if (w) {
        w.assign(tf.add(w, update));
        continue;
      }
      // A quantized base is merged into float32: the merged layer no longer fits its 8 or 4 bits.
      const q = model.quantized.get(name)!;
      model.params.set(name, tf.variable(tf.add(dequantize(q), update), false, model.variableName(name)));
      tf.dispose([q.packed, q.scales]);
      model.quantized.delete(name);
    }
  });
}

/**
 * PEFT's merge_adapter: folds each adapter into its base weight (W += scaling * B A, transposed
 * for Conv1D) and keeps it, marked merged, so that unmergeLora can take it out again. The model
 * computes what base + adapter computed, without the adapter's extra matmuls.
 */
export function mergeAdapters(model: CausalLM): void {
  const todo = [...model.adapters].filter(([, a]) => !a.merged);
  foldAdapters(model, todo, 1);
  for (const [, a] of todo) a.merged = true;
}

/** PEFT's unmerge_adapter: subtracts merged adapters from their base weights; the adapters work again. */
export function unmergeAdapters(model: CausalLM): void {
  const todo = [...model.adapters].filter(([, a]) => a.merged);
  foldAdapters(model, todo, -1);
  for (const [, a] of todo) a.merged = false;
}

/**
 * PEFT's merge_and_unload: folds each adapter into its base weight and removes the adapters.
 */
export function mergeLora(model: CausalLM): void {
  mergeAdapters(model);
  for (const a of model.adapters.values()) tf.dispose([a.A, a.B]);
  model.adapters.clear();
}

/** PEFT's adapter_config.json for this adapter. */
export function peftConfig(model: CausalLM, cfg: LoraConfig, baseName: string): Record<string, unknown> {
  const modules = targetedModules(model, cfg.target_modules);
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseName,
    r: cfg.r,
    lora_alpha: cfg.lora_alpha,
    lora_dropout: cfg.lora_dropout,
    target_modules: cfg.target_modules === 'all-linear' ? 'all-linear' : [...cfg.target_modules],
    bias: 'none',
    // GPT-2's Conv1D stores [in, out]: PEFT must transpose the base weight, not the adapter.
    fan_in_fan_out: modules.some((m) => m.conv1d),
    use_rslora: cfg.use_rslora,
    use_dora: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/** The adapter's tensors under PEFT's keys: base_model.model.<module>.lora_A.weight [r, in], lora_B.weight [out, r]. */
export async function peftTensors(model: CausalLM): Promise<NamedWeights> {
  const out: NamedWeights = {};
  for (const [path, a] of model.adapters) {
    const key = `base_model.model.${model.peftPath(path)}`;
    // Read back: the adapter is being written out.
    out[`${key}.lora_A.weight`] = { shape: a.A.shape.slice(), data: new Float32Array(await a.A.data()) };
    out[`${key}.lora_B.weight`] = { shape: a.B.shape.slice(), data: new Float32Array(await a.B.data()) };
  }
  return out;
}

/** An adapter read from PEFT's files and checked against a model, before any tensor is made. */
interface CheckedPeft {
  cfg: LoraConfig;
  layers: { module: LinearModule; A: Float32Array; B: Float32Array }[];
}

/**
 * Checks an adapter read from PEFT's files (adapter_config.json parsed, the safetensors' tensors)
 * against this model: every key names a layer of it, with the right shapes. Makes nothing, so a
 * refusal leaves everything as it was.
 */
function checkPeftAdapter(model: CausalLM, config: Record<string, unknown>, tensors: NamedWeights, file: string): CheckedPeft {
  const where = { file: 'adapter_config.json' };
  if (config.peft_type !== 'LORA') {
    throw new ConfigError(`adapter_config.json: peft_type ${JSON.stringify(config.peft_type)} is not LORA`, { ...where, field: 'peft_type' });
  }
  if (config.use_dora === true) throw new ConfigError('adapter_config.json: DoRA adapters are not supported', { ...where, field: 'use_dora' });
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = config[key];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) {
      throw new ConfigError(`adapter_config.json: per-layer ${key} is not supported yet`, { ...where, field: key });
    }
  }
  const rank = Number(config.r);
  const cfg = resolveLoraConfig('', {
    r: rank,
    // PEFT's LoraConfig default.
    lora_alpha: Number(config.lora_alpha ?? 8),
    lora_dropout: Number(config.lora_dropout ?? 0),
    target_modules: (config.target_modules as string[] | 'all-linear') ?? 'all-linear',
    use_rslora: config.use_rslora === true,
  });
  const byPeft = new Map(model.linearModules().map((m) => [`base_model.model.${model.peftPath(m.path)}`, m]));
  const found = new Map<string, { A?: NamedWeights[string]; B?: NamedWeights[string] }>();
  for (const [key, t] of Object.entries(tensors)) {
    // PEFT may write an adapter name into the key (".lora_A.default.weight"); both forms load.
    const m = /^(.*)\.lora_([AB])(?:\.[\w-]+)?\.weight$/.exec(key);
    if (!m || !byPeft.has(m[1])) throw new ConfigError(`${file}: tensor ${key} is not a LoRA weight of a layer of this model`, { file, field: key });
    const entry = found.get(m[1]) ?? {};
    entry[m[2] as 'A' | 'B'] = t;
    found.set(m[1], entry);
  }
  if (found.size === 0) throw new ConfigError(`${file} holds no LoRA weights`, { file });
  const layers: CheckedPeft['layers'] = [];
  for (const [key, { A, B }] of found) {
    const mod = byPeft.get(key)!;
    const want = { A: [rank, mod.in], B: [mod.out, rank] };
    for (const [which, t] of [['A', A], ['B', B]] as const) {
      if (!t) throw new ConfigError(`${file}: ${key} lacks lora_${which}`, { file, field: key });
      if (t.shape.join() !== want[which].join()) {
        throw new ConfigError(`${file}: ${key}.lora_${which}.weight has shape [${t.shape}], expected [${want[which]}] for r=${rank}`, {
          file,
          field: `${key}.lora_${which}.weight`,
        });
      }
    }
    layers.push({ module: mod, A: A!.data, B: B!.data });
  }
  return { cfg, layers };
}

/**
 * Attaches an adapter read from PEFT's files (adapter_config.json parsed, the safetensors'
 * tensors), checking that every key names a layer of this model with the right shapes.
 */
export function loadPeftAdapter(
  model: CausalLM,
  config: Record<string, unknown>,
  tensors: NamedWeights,
  file = 'adapter_model.safetensors',
): LoraConfig {
  const { cfg, layers } = checkPeftAdapter(model, config, tensors, file);
  if (model.adapters.size) throw new ConfigError('this model already has adapters; merge or remove them first', { field: 'lora' });
  for (const l of layers) addAdapter(model, l.module, cfg, l);
  return cfg;
}

/**
 * An adapter read from PEFT's files as layers of its own, not attached to the model: several can
 * be held for one base (src/core/peft/adapters.ts). Everything is checked before a tensor is made.
 */
export function buildPeftLayers(
  model: CausalLM,
  config: Record<string, unknown>,
  tensors: NamedWeights,
  tag: string,
  file = 'adapter_model.safetensors',
): { cfg: LoraConfig; layers: Map<string, AdapterLayer> } {
  const { cfg, layers } = checkPeftAdapter(model, config, tensors, file);
  return { cfg, layers: new Map(layers.map((l) => [l.module.path, makeLayer(model, l.module, cfg, l, tag)])) };
}

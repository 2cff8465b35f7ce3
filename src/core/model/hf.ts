/**
 * Hugging Face checkpoints as they are on disk: config.json, model.safetensors or shards listed
 * in model.safetensors.index.json. Reads the headers first (so the size is known before anything
 * big is read), then the tensors, converted to float32 and keyed by tabtune's parameter names.
 */
import { ConfigError } from '../errors';
import { SafetensorsError, decodeTensor, headerLength, parseHeader, type SafetensorsHeader } from '../io/safetensors';
import { CausalLM, countParams, type ModelOptions, type NamedWeights } from './base';
import { GPT2, gpt2ParamShapes } from './gpt2';
import type { GPT2Config } from '../config';
import { Llama, llamaParamShapes, type LlamaConfig } from './llama';

export type ModelSpec = { arch: 'gpt2'; config: GPT2Config } | { arch: 'llama'; config: LlamaConfig };

/** Where a model's files come from: a folder in Node, dropped files in the browser, a download. */
export interface ModelFiles {
  /** A name for messages: the folder or repository. */
  readonly name: string;
  has(path: string): Promise<boolean>;
  size(path: string): Promise<number>;
  text(path: string): Promise<string>;
  /** Bytes [start, end) of a file. */
  read(path: string, start: number, end: number): Promise<Uint8Array>;
}

type Json = Record<string, unknown>;

function num(cfg: Json, key: string, file: string, fallback?: number): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ConfigError(`${file}: "${key}" must be a number, got ${JSON.stringify(cfg[key])}`, { file, field: key });
  }
  return v;
}

function int(cfg: Json, key: string, file: string, fallback?: number): number {
  const v = num(cfg, key, file, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`${file}: "${key}" must be a positive whole number, got ${v}`, { file, field: key });
  return v;
}

function refuse(file: string, key: string, why: string): never {
  throw new ConfigError(`${file}: ${why}`, { file, field: key });
}

/** Reads a config.json into an architecture and its config; anything tabtune cannot run is named. */
export function parseHFConfig(json: unknown, file = 'config.json'): ModelSpec {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) refuse(file, 'model_type', 'is not a JSON object');
  const cfg = json as Json;
  const type = cfg.model_type;
  if (type === 'gpt2') {
    const n_embd = int(cfg, 'n_embd', file);
    const n_head = int(cfg, 'n_head', file);
    if (n_embd % n_head !== 0) refuse(file, 'n_embd', `n_embd (${n_embd}) is not divisible by n_head (${n_head})`);
    const act = cfg.activation_function ?? 'gelu_new';
    if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') refuse(file, 'activation_function', `activation_function "${act}" is not supported (gelu_new is)`);
    if (cfg.n_inner != null && cfg.n_inner !== 4 * n_embd) refuse(file, 'n_inner', `n_inner ${cfg.n_inner} is not supported (4 * n_embd is)`);
    if (cfg.tie_word_embeddings === false) refuse(file, 'tie_word_embeddings', 'GPT-2 with an untied lm_head is not supported');
    for (const flag of ['scale_attn_by_inverse_layer_idx', 'reorder_and_upcast_attn'] as const) {
      if (cfg[flag] === true) refuse(file, flag, `${flag} is not supported`);
    }
    if (cfg.scale_attn_weights === false) refuse(file, 'scale_attn_weights', 'attention without 1/sqrt(d) scaling is not supported');
    return {
      arch: 'gpt2',
      config: {
        vocab_size: int(cfg, 'vocab_size', file), n_positions: int(cfg, 'n_positions', file), n_embd,
        n_layer: int(cfg, 'n_layer', file), n_head, layer_norm_epsilon: num(cfg, 'layer_norm_epsilon', file, 1e-5),
      },
    };
  }
  if (type === 'llama') {
    const hidden = int(cfg, 'hidden_size', file);
    const heads = int(cfg, 'num_attention_heads', file);
    const kv = int(cfg, 'num_key_value_heads', file, heads);
    if (heads % kv !== 0) refuse(file, 'num_key_value_heads', `num_attention_heads (${heads}) is not a multiple of num_key_value_heads (${kv})`);
    const headDim = int(cfg, 'head_dim', file, Math.floor(hidden / heads));
    if (headDim % 2 !== 0) refuse(file, 'head_dim', `head_dim ${headDim} must be even for rotary embeddings`);
    if ((cfg.hidden_act ?? 'silu') !== 'silu') refuse(file, 'hidden_act', `hidden_act "${cfg.hidden_act}" is not supported (silu is)`);
    if (cfg.rope_scaling != null) refuse(file, 'rope_scaling', `rope_scaling ${JSON.stringify(cfg.rope_scaling)} is not supported yet`);
    if (cfg.attention_bias === true) refuse(file, 'attention_bias', 'attention_bias is not supported for llama');
    if (cfg.mlp_bias === true) refuse(file, 'mlp_bias', 'mlp_bias is not supported for llama');
    return {
      arch: 'llama',
      config: {
        vocab_size: int(cfg, 'vocab_size', file), hidden_size: hidden, intermediate_size: int(cfg, 'intermediate_size', file),
        num_hidden_layers: int(cfg, 'num_hidden_layers', file), num_attention_heads: heads, num_key_value_heads: kv,
        head_dim: headDim, max_position_embeddings: int(cfg, 'max_position_embeddings', file, 2048),
        rms_norm_eps: num(cfg, 'rms_norm_eps', file, 1e-6), rope_theta: num(cfg, 'rope_theta', file, 10000),
        tie_word_embeddings: cfg.tie_word_embeddings === true,
      },
    };
  }
  const known = 'gpt2, llama';
  if (typeof type !== 'string') refuse(file, 'model_type', `has no "model_type" (tabtune reads ${known})`);
  return refuse(file, 'model_type', `model_type "${type}" is not supported yet (tabtune reads ${known})`);
}

export function paramShapes(spec: ModelSpec): [string, number[]][] {
  return spec.arch === 'gpt2' ? gpt2ParamShapes(spec.config) : llamaParamShapes(spec.config);
}

export function contextLength(spec: ModelSpec): number {
  return spec.arch === 'gpt2' ? spec.config.n_positions : spec.config.max_position_embeddings;
}

export function vocabSize(spec: ModelSpec): number {
  return spec.config.vocab_size;
}

/**
 * tabtune's name for a tensor in a checkpoint, or null for a tensor that is not a parameter.
 * GPT-2 files come with or without the "transformer." prefix, and older ones carry the causal
 * mask as attn.bias / attn.masked_bias buffers; a tied lm_head copy is the embedding again.
 */
export function parameterName(spec: ModelSpec, name: string): string | null {
  if (spec.arch === 'gpt2') {
    const n = name.startsWith('transformer.') ? name.slice('transformer.'.length) : name;
    if (/^h\.\d+\.attn\.(bias|masked_bias)$/.test(n) || n === 'lm_head.weight') return null;
    return n;
  }
  if (/\.rotary_emb\.inv_freq$/.test(name)) return null;
  if (name === 'lm_head.weight' && spec.config.tie_word_embeddings) return null;
  return name;
}

export function buildModel(spec: ModelSpec, weights: NamedWeights, opts: ModelOptions = {}): CausalLM {
  return spec.arch === 'gpt2' ? new GPT2(spec.config, weights, opts) : new Llama(spec.config, weights, opts);
}

export interface WeightFile {
  path: string;
  header: SafetensorsHeader;
}

export interface ModelSummary {
  source: string;
  spec: ModelSpec;
  numParams: number;
  /** float32 bytes the parameters take on the device. */
  paramBytes: number;
  /** Bytes of the weight files as stored (their dtype). */
  fileBytes: number;
  dtypes: string[];
  vocabSize: number;
  contextLength: number;
  files: WeightFile[];
}

/** Reads config.json and every weight file's header: everything but the weights themselves. */
export async function inspectModel(files: ModelFiles): Promise<ModelSummary> {
  if (!(await files.has('config.json'))) throw new ConfigError(`${files.name} has no config.json`, { file: 'config.json' });
  const configText = await files.text('config.json');
  let json: unknown;
  try {
    json = JSON.parse(configText);
  } catch (e) {
    throw new ConfigError(`${files.name}/config.json is not valid JSON: ${(e as Error).message}`, { file: 'config.json' });
  }
  const spec = parseHFConfig(json);
  const paths = await weightPaths(files);
  const weightFiles: WeightFile[] = [];
  for (const path of paths) weightFiles.push({ path, header: await readFileHeader(files, path) });
  const shapes = paramShapes(spec);
  const numParams = countParams(shapes);
  const dtypes = [...new Set(weightFiles.flatMap((f) => f.header.tensors.map((t) => t.dtype)))].sort();
  let fileBytes = 0;
  for (const f of weightFiles) fileBytes += await files.size(f.path);
  return {
    source: files.name, spec, numParams, paramBytes: numParams * 4, fileBytes, dtypes,
    vocabSize: vocabSize(spec), contextLength: contextLength(spec), files: weightFiles,
  };
}

/** model.safetensors, or the shards that model.safetensors.index.json names. */
async function weightPaths(files: ModelFiles): Promise<string[]> {
  if (await files.has('model.safetensors')) return ['model.safetensors'];
  const indexPath = 'model.safetensors.index.json';
  if (!(await files.has(indexPath))) {
    throw new SafetensorsError(`${files.name} has neither model.safetensors nor ${indexPath}`, { file: 'model.safetensors' });
  }
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(await files.text(indexPath));
  } catch (e) {
    throw new SafetensorsError(`${indexPath} is not valid JSON: ${(e as Error).message}`, { file: indexPath });
  }
  const shards = [...new Set(Object.values(index.weight_map ?? {}))].sort();
  if (shards.length === 0) throw new SafetensorsError(`${indexPath} has an empty weight_map`, { file: indexPath, field: 'weight_map' });
  for (const s of shards) if (!(await files.has(s))) throw new SafetensorsError(`${indexPath} lists ${s}, which is missing`, { file: s });
  return shards;
}

async function readFileHeader(files: ModelFiles, path: string): Promise<SafetensorsHeader> {
  const size = await files.size(path);
  const n = headerLength(await files.read(path, 0, Math.min(8, size)), size, path);
  return parseHeader(await files.read(path, 8, 8 + n), size, path);
}

export interface LoadProgress {
  bytesRead: number;
  bytesTotal: number;
  tensor: string;
}

/** One parameter's bytes as stored in its file, under tabtune's name. */
export interface ParameterBytes {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * Reads the parameters of a summary's files one tensor at a time, in their stored dtype.
 * Tensors that are not parameters (mask buffers, a tied lm_head copy) are skipped; a tensor
 * this architecture does not have is an error naming it.
 */
export async function* readParameters(
  files: ModelFiles, summary: ModelSummary, onProgress?: (p: LoadProgress) => void, skip?: (name: string) => boolean,
): AsyncGenerator<ParameterBytes> {
  const wanted = new Map(paramShapes(summary.spec));
  const bytesTotal = summary.files.reduce((n, f) => n + f.header.tensors.reduce((m, t) => m + t.end - t.begin, 0), 0);
  let bytesRead = 0;
  for (const f of summary.files) {
    for (const t of f.header.tensors) {
      const name = parameterName(summary.spec, t.name);
      bytesRead += t.end - t.begin;
      if (name === null) continue;
      if (!wanted.has(name)) {
        throw new SafetensorsError(`${f.path}: tensor ${t.name} is not a parameter of this ${summary.spec.arch} model`, { file: f.path, field: t.name });
      }
      if (skip?.(name)) continue;
      const bytes = await files.read(f.path, f.header.dataStart + t.begin, f.header.dataStart + t.end);
      yield { name, dtype: t.dtype, shape: t.shape.slice(), bytes };
      onProgress?.({ bytesRead, bytesTotal, tensor: t.name });
    }
  }
}

/** Decodes one parameter to float32 into `weights`; a parameter given twice is an error. */
export function addParameter(weights: NamedWeights, p: ParameterBytes, source: string): void {
  if (weights[p.name]) throw new SafetensorsError(`${source}: parameter ${p.name} appears twice`, { field: p.name });
  const entry = { name: p.name, dtype: p.dtype, shape: p.shape, begin: 0, end: p.bytes.byteLength };
  weights[p.name] = { shape: p.shape, data: decodeTensor(entry, p.bytes, source) };
}

/** The weights, once every parameter of the architecture is among them; else an error naming the missing. */
export function checkComplete(spec: ModelSpec, weights: NamedWeights, source: string): NamedWeights {
  const missing = paramShapes(spec).map(([n]) => n).filter((n) => !weights[n]);
  if (missing.length) {
    throw new SafetensorsError(
      `${source}: the weights lack ${missing.length} parameter(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
      { field: missing[0] },
    );
  }
  return weights;
}

/** float32 weights from parameter bytes; every parameter of the architecture must be there once. */
export function decodeParameters(spec: ModelSpec, params: Iterable<ParameterBytes>, source: string): NamedWeights {
  const weights: NamedWeights = {};
  for (const p of params) addParameter(weights, p, source);
  return checkComplete(spec, weights, source);
}

/** Every parameter of a summary's files as float32 under tabtune's names, decoded as each is read. */
export async function loadWeights(files: ModelFiles, summary: ModelSummary, onProgress?: (p: LoadProgress) => void): Promise<NamedWeights> {
  const weights: NamedWeights = {};
  for await (const p of readParameters(files, summary, onProgress)) addParameter(weights, p, summary.source);
  return checkComplete(summary.spec, weights, summary.source);
}

/**
 * Files that leave tabtune in the ecosystem's formats: a PEFT adapter folder, and a merged model
 * as a Hugging Face folder (the base's config and tokenizer files, the merged weights).
 */
import type { CausalLM, NamedWeights } from '../model/base';
import type { ModelFiles } from '../model/hf';
import { ConfigError } from '../errors';
import { loadPeftAdapter, mergeLora, peftConfig, peftTensors, type LoraConfig } from '../peft/lora';
import { loadPromptTuning, promptTensors, promptTuningConfig } from '../peft/prompt';
import { readSafetensors, writeSafetensors } from './safetensors';

/** The small files of a model folder that a merged copy keeps as they are. */
export const COPIED_FILES = [
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'chat_template.jinja', 'vocab.json', 'merges.txt', 'tokenizer.model',
];

const encoder = new TextEncoder();

/** adapter_config.json and adapter_model.safetensors, as PEFT's save_pretrained writes them. */
export async function adapterFolder(model: CausalLM, cfg: LoraConfig, baseName: string): Promise<Map<string, Uint8Array>> {
  return new Map([
    ['adapter_config.json', encoder.encode(JSON.stringify(peftConfig(model, cfg, baseName), null, 2) + '\n')],
    ['adapter_model.safetensors', writeSafetensors(await peftTensors(model), { format: 'pt' })],
  ]);
}

/** PEFT's prompt-tuning files: adapter_config.json and adapter_model.safetensors (prompt_embeddings). */
export async function promptFolder(model: CausalLM, baseName: string, layers: number, heads: number): Promise<Map<string, Uint8Array>> {
  return new Map([
    ['adapter_config.json', encoder.encode(JSON.stringify(promptTuningConfig(model, baseName, layers, heads), null, 2) + '\n')],
    ['adapter_model.safetensors', writeSafetensors(await promptTensors(model), { format: 'pt' })],
  ]);
}

/**
 * The model with its adapters folded in, as a folder transformers loads: model.safetensors in
 * float32 under the Hugging Face names, and the base folder's config and tokenizer files.
 * The adapters are merged into the model in place.
 */
export async function mergedFolder(model: CausalLM, base: ModelFiles): Promise<Map<string, Uint8Array>> {
  mergeLora(model);
  const out = new Map<string, Uint8Array>();
  for (const p of COPIED_FILES) if (await base.has(p)) out.set(p, encoder.encode(await base.text(p)));
  out.set('model.safetensors', writeSafetensors(await model.exportWeights(), { format: 'pt' }));
  return out;
}

/**
 * Reads a PEFT adapter folder (adapter_config.json and adapter_model.safetensors, LoRA or prompt
 * tuning, from tabtune or Python PEFT); what is missing or unreadable is named by file.
 */
export async function readAdapterFolder(adapter: ModelFiles): Promise<{ peftType: 'LORA' | 'PROMPT_TUNING'; config: Record<string, unknown>; tensors: NamedWeights }> {
  for (const p of ['adapter_config.json', 'adapter_model.safetensors']) {
    if (!(await adapter.has(p))) throw new ConfigError(`${adapter.name} has no ${p}; a PEFT adapter is adapter_config.json plus adapter_model.safetensors`, { file: p });
  }
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await adapter.text('adapter_config.json'));
  } catch (e) {
    throw new ConfigError(`adapter_config.json is not valid JSON: ${(e as Error).message}`, { file: 'adapter_config.json' });
  }
  const path = 'adapter_model.safetensors';
  const tensors = readSafetensors(await adapter.read(path, 0, await adapter.size(path)), path).tensors;
  return { peftType: config.peft_type === 'PROMPT_TUNING' ? 'PROMPT_TUNING' : 'LORA', config, tensors };
}

/** Applies a PEFT adapter folder to a base model; what is wrong is named by file. */
export async function applyAdapterFolder(model: CausalLM, adapter: ModelFiles): Promise<{ peftType: 'LORA' | 'PROMPT_TUNING'; config: Record<string, unknown> }> {
  const { peftType, config, tensors } = await readAdapterFolder(adapter);
  if (peftType === 'PROMPT_TUNING') loadPromptTuning(model, config, tensors);
  else loadPeftAdapter(model, config, tensors);
  return { peftType, config };
}

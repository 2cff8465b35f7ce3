/**
 * Prompt tuning (Lester et al., 2021) as PEFT stores it: N trainable virtual-token vectors put
 * before every sequence, everything else frozen. Saved as `prompt_embeddings` [N, C].
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors';
import type { CausalLM, NamedWeights } from '../model/base';
import { Rng } from '../rng';

/**
 * Adds N virtual tokens, initialised as copies of N embedding rows drawn from the vocabulary
 * (a start the paper found far better than random vectors).
 */
export function attachPromptTuning(model: CausalLM, numVirtualTokens: number, seed: number): void {
  if (!Number.isInteger(numVirtualTokens) || numVirtualTokens < 1) {
    throw new ConfigError(`prompt_tuning.num_virtual_tokens must be a whole number of at least 1, got ${numVirtualTokens}`, { field: 'prompt_tuning.num_virtual_tokens' });
  }
  if (numVirtualTokens >= model.contextLength) {
    throw new ConfigError(`${numVirtualTokens} virtual tokens leave no room in a context of ${model.contextLength}`, { field: 'prompt_tuning.num_virtual_tokens' });
  }
  if (model.softPrompt || model.adapters.size) throw new ConfigError('this model already has a trainable method attached', { field: 'method' });
  const rng = new Rng(seed);
  const rows = Array.from({ length: numVirtualTokens }, () => rng.int(model.vocabSize));
  const ids = tf.tensor2d(rows, [1, numVirtualTokens], 'int32');
  const init = tf.tidy(() => model.tokenEmbeddings(ids)); // [N, C]
  ids.dispose();
  model.softPrompt = tf.variable(init, true, model.variableName('prompt_embeddings'));
  init.dispose();
}

/** PEFT's adapter_config.json for prompt tuning. */
export function promptTuningConfig(model: CausalLM, baseName: string, layers: number, heads: number): Record<string, unknown> {
  const [N, C] = model.softPrompt!.shape;
  return {
    peft_type: 'PROMPT_TUNING',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseName,
    num_virtual_tokens: N,
    token_dim: C,
    num_transformer_submodules: 1,
    num_attention_heads: heads,
    num_layers: layers,
    // PEFT's name for an init from sampled vocabulary rows, as attachPromptTuning does.
    prompt_tuning_init: 'SAMPLE_VOCAB',
    inference_mode: true,
  };
}

export async function promptTensors(model: CausalLM): Promise<NamedWeights> {
  const p = model.softPrompt!;
  // Read back: the prompt is being written out.
  return { prompt_embeddings: { shape: p.shape.slice(), data: new Float32Array(await p.data()) } };
}

/** Checks a prompt read from PEFT's files against the model; makes nothing. */
function checkPromptTuning(model: CausalLM, config: Record<string, unknown>, tensors: NamedWeights, file: string): NamedWeights[string] {
  if (config.peft_type !== 'PROMPT_TUNING') throw new ConfigError(`adapter_config.json: peft_type ${JSON.stringify(config.peft_type)} is not PROMPT_TUNING`, { file: 'adapter_config.json', field: 'peft_type' });
  const t = tensors.prompt_embeddings;
  if (!t) throw new ConfigError(`${file} has no prompt_embeddings`, { file, field: 'prompt_embeddings' });
  const C = model.hiddenSize;
  if (t.shape.length !== 2 || t.shape[1] !== C || t.shape[0] !== Number(config.num_virtual_tokens ?? t.shape[0])) {
    throw new ConfigError(`${file}: prompt_embeddings has shape [${t.shape}], expected [${config.num_virtual_tokens}, ${C}]`, { file, field: 'prompt_embeddings' });
  }
  if (t.shape[0] >= model.contextLength) {
    throw new ConfigError(`${file}: ${t.shape[0]} virtual tokens leave no room in a context of ${model.contextLength}`, { file, field: 'prompt_embeddings' });
  }
  return t;
}

/** Attaches a prompt read from PEFT's files. */
export function loadPromptTuning(model: CausalLM, config: Record<string, unknown>, tensors: NamedWeights, file = 'adapter_model.safetensors'): void {
  const t = checkPromptTuning(model, config, tensors, file);
  if (model.softPrompt || model.adapters.size) throw new ConfigError('this model already has a trainable method attached', { field: 'method' });
  model.softPrompt = buildPrompt(model, t, '');
}

/** A prompt read from PEFT's files as a variable of its own (`tag` ends its name), not attached. */
export function buildPromptVariable(model: CausalLM, config: Record<string, unknown>, tensors: NamedWeights, tag: string, file = 'adapter_model.safetensors'): tf.Variable {
  return buildPrompt(model, checkPromptTuning(model, config, tensors, file), tag);
}

function buildPrompt(model: CausalLM, t: NamedWeights[string], tag: string): tf.Variable {
  return tf.tidy(() => tf.variable(tf.tensor2d(t.data, t.shape as [number, number]), true, model.variableName('prompt_embeddings') + tag));
}

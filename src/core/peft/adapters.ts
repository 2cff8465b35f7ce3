/**
 * Several adapters held for one base at once, one of them (or none) active: what comparing a base
 * with its fine-tunes needs. LoRA layers only add to a frozen base (W x + B A x * scaling) and a soft
 * prompt only goes before the input, so switching is swapping which layers `model.adapters` holds
 * (or which prompt `model.softPrompt` is): the base weights are never read, copied or rebuilt.
 * Every held adapter's tensors belong to the bank: removing one disposes them.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors';
import type { AdapterLayer, CausalLM, NamedWeights } from '../model/base';
import { buildPeftLayers } from './lora';
import { buildPromptVariable } from './prompt';

export interface HeldAdapter {
  id: string;
  name: string;
  peftType: 'LORA' | 'PROMPT_TUNING';
  /** adapter_config.json as given (or as PEFT would write it for an adapter trained here). */
  config: Record<string, unknown>;
  /** LoRA layers by module path (empty for prompt tuning). */
  layers: Map<string, AdapterLayer>;
  softPrompt: tf.Variable | null;
  /** The fine-tuning run it came from, if any. */
  runId: string | null;
  /** Parameters it adds to the base. */
  size: number;
}

/** What a held adapter is, without its tensors. */
export type AdapterSummary = Omit<HeldAdapter, 'layers' | 'softPrompt'> & { r: number | null; targetModules: string[]; active: boolean };

export class AdapterBank {
  private readonly held = new Map<string, HeldAdapter>();
  private activeId: string | null = null;
  /** Why the base no longer is the base (full fine-tuning, BitFit, a merge, a quantized copy); null while it is. */
  private changedBy: string | null = null;
  /** The change is held only in memory: reading the base again would lose it. */
  private lossy = false;

  constructor(private model: CausalLM) {}

  get active(): string | null {
    return this.activeId;
  }

  has(id: string): boolean {
    return this.held.has(id);
  }

  get(id: string): HeldAdapter | undefined {
    return this.held.get(id);
  }

  list(): AdapterSummary[] {
    return [...this.held.values()].map((a) => summary(a, a.id === this.activeId));
  }

  /**
   * The base weights were changed in place: adapters held for the base no longer give base +
   * adapter on it, so switching is refused until the base is loaded again (moveTo).
   */
  markBaseChanged(why: string, lossy = false): void {
    this.changedBy = why;
    this.lossy = lossy;
  }

  /**
   * Why switching is refused now (null: it is not), and whether reading the base again would lose
   * work held only in memory (the weights full fine-tuning or BitFit changed).
   */
  blocker(): { why: string; lossy: boolean } | null {
    const why = this.whyNotSwitchable();
    return why ? { why, lossy: this.lossy || !!this.model.trainableFilter } : null;
  }

  /**
   * Holds a LoRA or prompt-tuning adapter read from PEFT's files, not active. Everything is checked
   * before a tensor is made: an adapter for another base is refused naming the file and the field,
   * and nothing held changes.
   */
  add(id: string, name: string, config: Record<string, unknown>, tensors: NamedWeights, opts: { runId?: string | null; file?: string } = {}): AdapterSummary {
    if (this.held.has(id)) throw new ConfigError(`an adapter "${id}" is already held; remove it first`, { field: 'adapter' });
    // Variable names of their own: the same layer's A may be held several times.
    const tag = `@${id}`;
    const file = opts.file ?? 'adapter_model.safetensors';
    let held: HeldAdapter;
    if (config.peft_type === 'PROMPT_TUNING') {
      const softPrompt = buildPromptVariable(this.model, config, tensors, tag, file);
      held = { id, name, peftType: 'PROMPT_TUNING', config, layers: new Map(), softPrompt, runId: opts.runId ?? null, size: softPrompt.size };
    } else {
      const { layers } = buildPeftLayers(this.model, config, tensors, tag, file);
      held = { id, name, peftType: 'LORA', config, layers, softPrompt: null, runId: opts.runId ?? null, size: sizeOf(layers) };
    }
    this.held.set(id, held);
    return summary(held, false);
  }

  /**
   * Takes what fine-tuning left attached to the model (LoRA layers or a soft prompt) into the bank
   * as an adapter, active. The variables are renamed (a new variable on the same data, the old one
   * disposed), so that the next run can attach fresh layers under the usual names.
   */
  adopt(id: string, name: string, config: Record<string, unknown>, runId: string | null): AdapterSummary {
    const m = this.model;
    if (this.activeId !== null) throw new ConfigError('the model has a held adapter active; nothing was trained to adopt', { field: 'adapter' });
    // A resumed run finishes as the same adapter: the copy held from before goes.
    if (this.held.has(id)) this.remove(id);
    const tag = `@${id}`;
    if ([...m.adapters.values()].some((a) => a.merged)) throw new ConfigError('the trained adapter is merged into the base; it cannot be held apart from it', { field: 'adapter' });
    const rename = (v: tf.Variable) => {
      const out = tf.variable(v, true, v.name + tag);
      v.dispose();
      return out;
    };
    let held: HeldAdapter;
    if (m.softPrompt) {
      const softPrompt = rename(m.softPrompt);
      m.softPrompt = softPrompt;
      held = { id, name, peftType: 'PROMPT_TUNING', config, layers: new Map(), softPrompt, runId, size: softPrompt.size };
    } else if (m.adapters.size) {
      const layers = new Map<string, AdapterLayer>();
      for (const [path, a] of m.adapters) layers.set(path, { A: rename(a.A), B: rename(a.B), scaling: a.scaling, dropout: a.dropout });
      m.adapters.clear();
      for (const [path, a] of layers) m.adapters.set(path, a);
      held = { id, name, peftType: 'LORA', config, layers, softPrompt: null, runId, size: sizeOf(layers) };
    } else {
      throw new ConfigError('the model has no adapter attached to keep', { field: 'adapter' });
    }
    this.held.set(id, held);
    this.activeId = id;
    return summary(held, true);
  }

  /**
   * Makes one held adapter active, or none (null: the base exactly). Only which layers the model
   * consults changes; nothing is made or disposed.
   */
  use(id: string | null): void {
    if (id !== null && !this.held.has(id)) throw new ConfigError(`no adapter "${id}" is held for this model`, { field: 'adapter' });
    // Checked even when nothing would move: "the base" of a changed model is not the base.
    const why = this.whyNotSwitchable();
    if (why) throw new ConfigError(`${why}: its adapters cannot be switched on it. Load the model again to compare adapters on its base (the held adapters stay).`, { field: 'adapter' });
    if (id === this.activeId) return;
    this.detach();
    if (id === null) return;
    const a = this.held.get(id)!;
    for (const [path, layer] of a.layers) this.model.adapters.set(path, layer);
    this.model.softPrompt = a.softPrompt;
    this.activeId = id;
  }

  /** Disposes a held adapter's tensors; if it was active, the model is the base again. */
  remove(id: string): void {
    const a = this.held.get(id);
    if (!a) throw new ConfigError(`no adapter "${id}" is held for this model`, { field: 'adapter' });
    if (this.activeId === id) this.detach();
    this.held.delete(id);
    disposeHeld(a);
  }

  /**
   * Forgets the active adapter without disposing it: a merge consumed its tensors (mergeLora
   * disposes the layers it folds in). The base is changed from then on.
   */
  forgetActive(why: string): void {
    if (this.activeId !== null) this.held.delete(this.activeId);
    this.activeId = null;
    this.changedBy = why;
  }

  /** Takes the active adapter off the model, which is about to be disposed: its tensors stay the bank's. */
  letGo(): void {
    this.detach();
  }

  /**
   * The same base was loaded again (a new model object, its weights as stored): the held adapters
   * go with it, none active. The old model is left without them, so disposing it spares them.
   */
  moveTo(model: CausalLM): void {
    this.detach();
    this.model = model;
    this.changedBy = null;
    this.lossy = false;
  }

  dispose(): void {
    this.detach();
    for (const a of this.held.values()) disposeHeld(a);
    this.held.clear();
  }

  /** The model consults exactly the active adapter's layers (or none), and nothing else. */
  private attachedAreOurs(): boolean {
    const m = this.model;
    const a = this.activeId === null ? null : this.held.get(this.activeId)!;
    if ((a?.softPrompt ?? null) !== m.softPrompt) return false;
    const layers = a?.layers ?? new Map<string, AdapterLayer>();
    if (layers.size !== m.adapters.size) return false;
    for (const [path, layer] of layers) if (m.adapters.get(path) !== layer) return false;
    return true;
  }

  private whyNotSwitchable(): string | null {
    const m = this.model;
    if (this.changedBy) return `the held model was changed by ${this.changedBy}`;
    if ([...m.adapters.values()].some((a) => a.merged)) return 'an adapter is merged into the held model';
    if (m.trainableFilter) return 'the held model was changed by BitFit';
    if (m.quantized.size) return "the held model's base is quantized (QLoRA)";
    if (!this.attachedAreOurs()) return 'the held model has a method attached by a fine-tuning run';
    return null;
  }

  /** Takes the active adapter's layers (only its own) off the model. */
  private detach(): void {
    const m = this.model;
    const a = this.activeId === null ? null : this.held.get(this.activeId);
    if (a) {
      for (const [path, layer] of a.layers) if (m.adapters.get(path) === layer) m.adapters.delete(path);
      if (a.softPrompt && m.softPrompt === a.softPrompt) m.softPrompt = null;
    }
    this.activeId = null;
  }
}

function sizeOf(layers: Map<string, AdapterLayer>): number {
  let n = 0;
  for (const a of layers.values()) n += a.A.size + a.B.size;
  return n;
}

function disposeHeld(a: HeldAdapter): void {
  for (const l of a.layers.values()) tf.dispose([l.A, l.B]);
  a.layers.clear();
  a.softPrompt?.dispose();
  a.softPrompt = null;
}

function summary(a: HeldAdapter, active: boolean): AdapterSummary {
  const c = a.config;
  const targets = Array.isArray(c.target_modules) ? c.target_modules.map(String) : typeof c.target_modules === 'string' ? [c.target_modules] : [];
  return {
    id: a.id, name: a.name, peftType: a.peftType, config: a.config, runId: a.runId, size: a.size,
    r: typeof c.r === 'number' ? c.r : null, targetModules: targets, active,
  };
}

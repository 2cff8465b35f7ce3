import type { StudioClient } from '../api/client';
import type { AdapterInfo, FileEntry, GenerateResult, SamplingOptions } from '../api/protocol';
import { message } from './errors';
import type { ModelsState } from './models.svelte';

/** One column of a comparison: the text as it streams, then how long it took. */
export interface CompareSide {
  text: string;
  state: 'idle' | 'waiting' | 'running' | 'done' | 'stopped' | 'failed';
  result: GenerateResult | null;
}

const idle = (): CompareSide => ({ text: '', state: 'idle', result: null });

/**
 * Compare: one prompt through the base model and through a tuned one (an adapter held for the same
 * base), with the same sampling settings and seed, streamed side by side. The worker runs one
 * generation at a time, so the base goes first, then the tuned model; switching adapters never
 * reads the base again.
 */
export class CompareState {
  prompt = $state('The sea');
  /** Shared by both sides: the same settings and seed, so only the adapter differs. */
  sampling = $state<SamplingOptions>({ maxNewTokens: 40, temperature: 0.8, topK: 50, topP: 0.95, seed: 0 });
  /** Use the model's chat template (instruct models). */
  chat = $state(false);
  /** The adapters held for the loaded model. */
  adapters = $state.raw<AdapterInfo[]>([]);
  /** The adapter the tuned column uses (an id of `adapters`). */
  chosen = $state<string | null>(null);
  base = $state<CompareSide>(idle());
  tuned = $state<CompareSide>(idle());
  /** The prompt the shown columns continue (the box may have changed since). */
  shownPrompt = $state('');
  /** The adapter the shown tuned column used. */
  shownAdapter = $state<AdapterInfo | null>(null);
  running = $state(false);
  /** An adapter is being added or listed. */
  busy = $state(false);
  error = $state<string | null>(null);
  /** One sentence for screen readers when a comparison or an addition ends. */
  announcement = $state('');

  readonly models: ModelsState;
  private readonly client: StudioClient;
  private stopping = false;

  constructor(client: StudioClient, models: ModelsState) {
    this.client = client;
    this.models = models;
  }

  /** The chosen adapter, as listed. */
  adapter = $derived(this.adapters.find((a) => a.id === this.chosen) ?? null);

  /** Kept runs of the loaded model whose adapter is not held yet: they can be added. */
  runsToAdd = $derived.by(() =>
    this.models.tuneRuns.filter((r) => r.modelId === this.models.loadedId && r.hasFiles && !this.adapters.some((a) => a.runId === r.id)),
  );

  /** Why Compare cannot run now (null: it can). */
  blocker = $derived.by((): string | null => {
    if (!this.models.loaded) return 'Load a model first.';
    if (this.models.tuning) return 'Fine-tuning is running: compare when it ends.';
    // One thing at a time in the worker: an import, a load, an adapter being applied, a generation.
    if (this.models.busy) return 'The model is being loaded or changed: compare when that ends.';
    if (this.models.generating) return 'A generation is running on the Models screen: compare when it ends, or stop it.';
    if (!this.adapters.length) return 'Fine-tune the model, or add an adapter, to have something to compare with the base.';
    if (!this.adapter) return 'Choose an adapter.';
    if (!this.prompt.trim()) return 'Type a prompt.';
    const s = this.sampling;
    if (!Number.isInteger(s.maxNewTokens) || s.maxNewTokens < 1 || s.maxNewTokens > 2048) return 'Max tokens must be a whole number from 1 to 2048.';
    if (typeof s.temperature !== 'number' || !(s.temperature >= 0 && s.temperature <= 5)) return 'Temperature must be from 0 to 5.';
    if (!Number.isInteger(s.topK) || s.topK < 0) return 'Top-k must be a whole number, 0 for all.';
    if (typeof s.topP !== 'number' || !(s.topP > 0 && s.topP <= 1)) return 'Top-p must be above 0 and at most 1.';
    if (!Number.isInteger(s.seed) || s.seed < 0) return 'Seed must be a whole number of 0 or more.';
    return null;
  });

  /** The adapters held for the loaded model; the choice stays if it is still held, else the newest. */
  async refresh(): Promise<void> {
    const id = this.models.loadedId;
    if (!id) {
      this.adapters = [];
      this.chosen = null;
      return;
    }
    try {
      const list = await this.client.listAdapters(id);
      // The model may have changed while the list came.
      if (this.models.loadedId !== id) return;
      this.adapters = list;
      if (!list.some((a) => a.id === this.chosen)) this.chosen = list.at(-1)?.id ?? null;
    } catch {
      // Not held in the worker yet (a resumed run loads it first): nothing to list, and nothing the person did wrong.
      this.adapters = [];
    }
  }

  /** Holds an adapter from PEFT files (the two files, or a zip) for the loaded base, and chooses it. */
  async addFiles(files: FileEntry[]): Promise<void> {
    if (!files.length) return;
    await this.adding((id) => this.client.addAdapter(id, files));
  }

  /** Holds the adapter a kept run finished with, and chooses it. */
  async addRun(runId: string): Promise<void> {
    await this.adding((id) => this.client.addAdapter(id, { runId }));
  }

  private async adding(add: (modelId: string) => Promise<AdapterInfo>): Promise<void> {
    const id = this.models.loadedId;
    if (!id || this.busy || this.running || this.models.tuning) return;
    this.busy = true;
    this.error = null;
    try {
      const info = await add(id);
      await this.refresh();
      this.chosen = info.id;
      this.announcement = `Adapter ${info.name} is held for comparison.`;
    } catch (e) {
      this.error = message(e);
    } finally {
      this.busy = false;
    }
  }

  /** Lets go of a held adapter (and its memory). */
  async remove(adapterId: string): Promise<void> {
    const id = this.models.loadedId;
    if (!id || this.busy || this.running) return;
    this.busy = true;
    this.error = null;
    try {
      await this.client.removeAdapter(id, adapterId);
      // The Models screen's "applied" line no longer holds for it.
      if (this.models.adapter?.id === adapterId) this.models.adapter = null;
      await this.refresh();
    } catch (e) {
      this.error = message(e);
    } finally {
      this.busy = false;
    }
  }

  /** The prompt through the base, then through base + the chosen adapter, each streamed as it comes. */
  async run(): Promise<void> {
    if (this.running || this.busy) return;
    if (this.blocker) {
      this.error = this.blocker;
      return;
    }
    const modelId = this.models.loadedId!;
    const adapter = this.adapter!;
    this.running = this.models.comparing = true;
    this.stopping = false;
    this.error = null;
    this.shownPrompt = this.prompt;
    this.shownAdapter = adapter;
    this.base = { ...idle(), state: 'waiting' };
    this.tuned = { ...idle(), state: 'waiting' };
    const request = { modelId, prompt: this.prompt, options: { ...this.sampling }, chat: this.chat && (this.models.loaded?.chatTemplate ?? false) };
    const side = async (which: 'base' | 'tuned', adapterId: string | null) => {
      if (this.stopping) {
        this[which] = { ...idle(), state: 'stopped' };
        return;
      }
      this[which] = { ...idle(), state: 'running' };
      try {
        const result = await this.client.generate({ ...request, adapter: adapterId }, (p) => {
          this[which].text = p.text;
        });
        this[which] = { text: result.text, state: result.stopReason === 'cancelled' ? 'stopped' : 'done', result };
      } catch (e) {
        this[which] = { ...this[which], state: 'failed' };
        throw e;
      }
    };
    try {
      await side('base', null);
      await side('tuned', adapter.id);
      const b = this.base.result;
      const t = this.tuned.result;
      this.announcement = this.stopping
        ? 'Comparison stopped.'
        : `Comparison done: the base wrote ${b?.ids.length ?? 0} tokens, ${adapter.name} wrote ${t?.ids.length ?? 0}.`;
    } catch (e) {
      this.error = message(e);
      if (this.tuned.state === 'waiting') this.tuned = { ...idle(), state: 'stopped' };
      this.announcement = `Comparison failed: ${this.error}`;
    } finally {
      this.running = this.models.comparing = false;
    }
  }

  /** Ends the generation in progress after its token; the side not started yet does not start. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.stopping = true;
    await this.client.stopGenerating().catch(() => undefined);
  }
}

/** "12 tokens · 35.1 tokens/s · first token after 40 ms" */
export function describeTiming(r: GenerateResult): string {
  return `${r.ids.length} tokens · ${r.tokensPerSec.toFixed(1)} tokens/s · first token after ${Math.round(r.firstTokenMs)} ms`;
}

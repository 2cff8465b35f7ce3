import type { StudioClient } from '../api/client';
import { message } from './errors';
import type { FileEntry, FinetuneMethod, FinetuneResult, GenerateResult, ModelInfo, ModelProgress, SamplingOptions } from '../api/protocol';

/** Bring-your-own models: pick or drop a Hugging Face folder, see it, import it, generate with it. */
export class ModelsState {
  models = $state<ModelInfo[]>([]);
  /** Files picked, or a hub repository looked up, but not yet imported, with what they hold. */
  pending = $state.raw<({ kind: 'files'; files: FileEntry[] } | { kind: 'hub'; repo: string }) & { info: ModelInfo } | null>(null);
  repo = $state('');
  progress = $state<ModelProgress | null>(null);
  loadedId = $state<string | null>(null);
  busy = $state(false);
  error = $state<string | null>(null);

  prompt = $state('The sea');
  /** Use the model's chat template (instruct models). */
  chat = $state(false);
  /** The prompt the shown output continues (the box may have changed since). */
  shownPrompt = $state('');
  /** One sentence for screen readers when an import, load or generation ends. */
  announcement = $state('');
  sampling = $state<SamplingOptions>({ maxNewTokens: 40, temperature: 0.8, topK: 50, topP: 0.95, seed: 0 });
  output = $state('');
  generating = $state(false);
  result = $state<GenerateResult | null>(null);

  /** Fine-tuning the loaded model: the settings, the live losses, and the files it gives. */
  tune = $state({ method: 'lora' as FinetuneMethod, steps: 30, learningRate: 2e-3, r: 8, virtualTokens: 8, text: '' });
  tuneLosses = $state.raw<number[]>([]);
  tuning = $state(false);
  tuneResult = $state.raw<FinetuneResult | null>(null);
  downloads = $state.raw<{ name: string; url: string }[]>([]);

  loaded = $derived(this.models.find((m) => m.id === this.loadedId) ?? null);

  private readonly client: StudioClient;
  /** A hub mirror (like HF_ENDPOINT); the Hugging Face Hub when undefined. */
  readonly hubEndpoint: string | undefined;

  constructor(client: StudioClient, hubEndpoint?: string) {
    this.client = client;
    this.hubEndpoint = hubEndpoint;
  }

  async refresh(): Promise<void> {
    try {
      this.models = await this.client.listModels();
    } catch (e) {
      this.error = message(e);
    }
  }

  /** Reads config.json and the safetensors headers of the chosen files: nothing big yet. */
  async choose(files: FileEntry[]): Promise<void> {
    if (this.busy) {
      this.error = 'An import is running; wait for it to finish before choosing another model.';
      return;
    }
    this.error = null;
    this.pending = null;
    if (files.length === 0) {
      this.error = 'No files were chosen. Choose the files of one model folder, or the folder itself.';
      return;
    }
    try {
      this.pending = { kind: 'files', files, info: await this.client.inspectModelFiles(files) };
    } catch (e) {
      this.error = message(e);
    }
  }

  /** Reads a hub repository's config.json and safetensors headers (a few kilobytes). */
  async lookUp(): Promise<void> {
    this.error = null;
    this.pending = null;
    const repo = this.repo.trim();
    if (!repo) {
      this.error = 'Type a repository name, like HuggingFaceTB/SmolLM2-135M.';
      return;
    }
    await this.run(async () => {
      this.progress = { phase: 'reading', done: 0, total: 1, detail: `${repo}: config and headers` };
      this.pending = { kind: 'hub', repo, info: await this.client.inspectHubModel(repo, this.hubEndpoint) };
    });
  }

  async importPending(): Promise<void> {
    if (!this.pending || this.busy) return;
    const p = this.pending;
    await this.run(async () => {
      const onProgress = (x: ModelProgress) => (this.progress = x);
      try {
        const info = p.kind === 'files' ? await this.client.importModel(p.files, onProgress) : await this.client.importHubModel(p.repo, this.hubEndpoint, onProgress);
        this.pending = null;
        this.loadedId = info.id;
        await this.refresh();
        this.announcement = `${info.name} is imported, kept in this browser, and loaded.`;
      } catch (e) {
        // What was read is kept; the same action continues from there.
        throw new Error(`${message(e)} What was already ${p.kind === 'hub' ? 'downloaded' : 'read'} is kept: press the button again to continue.`);
      }
    });
  }

  async load(id: string): Promise<void> {
    await this.run(async () => {
      const info = await this.client.loadModel(id, (p) => (this.progress = p));
      this.loadedId = info.id;
      this.announcement = `${info.name} is loaded.`;
    });
  }

  async remove(id: string): Promise<void> {
    await this.run(async () => {
      await this.client.deleteModel(id);
      if (this.loadedId === id) this.loadedId = null;
      await this.refresh();
    });
  }

  async generate(): Promise<void> {
    if (!this.loadedId || this.generating) return;
    this.generating = true;
    this.error = null;
    this.output = '';
    this.result = null;
    this.shownPrompt = this.prompt;
    try {
      const chat = this.chat && (this.loaded?.chatTemplate ?? false);
      this.result = await this.client.generate({ modelId: this.loadedId, prompt: this.prompt, options: { ...this.sampling }, chat }, (p) => {
        this.output = p.text;
      });
      this.output = this.result.text;
      this.announcement = `Generated ${this.result.ids.length} tokens.`;
    } catch (e) {
      this.error = message(e);
    } finally {
      this.generating = false;
    }
  }

  async finetune(): Promise<void> {
    if (!this.loadedId || this.tuning || this.generating) return;
    this.tuning = true;
    this.error = null;
    this.tuneLosses = [];
    this.tuneResult = null;
    for (const d of this.downloads) URL.revokeObjectURL(d.url);
    this.downloads = [];
    const t = this.tune;
    try {
      this.tuneResult = await this.client.finetuneModel(
        {
          modelId: this.loadedId,
          text: t.text,
          dataset: 'the training text',
          method: t.method,
          lora: { r: t.r, lora_alpha: 2 * t.r },
          train: { steps: t.steps, learning_rate: t.learningRate },
          numVirtualTokens: t.virtualTokens,
        },
        (r) => (this.tuneLosses = [...this.tuneLosses, r.loss]),
      );
      this.downloads = this.tuneResult.files.map((f) => ({ name: f.name, url: URL.createObjectURL(new Blob([f.bytes as BlobPart])) }));
      this.announcement = `Fine-tuning finished after ${this.tuneResult.steps} steps.`;
    } catch (e) {
      this.error = message(e);
    } finally {
      this.tuning = false;
    }
  }

  async stop(): Promise<void> {
    await this.client.stopGenerating().catch(() => undefined);
  }

  private async run(work: () => Promise<void>): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.error = null;
    try {
      await work();
    } catch (e) {
      this.error = message(e);
    } finally {
      this.busy = false;
      this.progress = null;
    }
  }
}


/** "reading 45% (12 MB of 27 MB)" */
export function describeProgress(p: ModelProgress): string {
  const pct = p.total > 0 ? Math.floor((100 * p.done) / p.total) : 0;
  const verb = { reading: 'Reading weights', storing: 'Storing', loading: 'Loading from this browser', ready: 'Ready' }[p.phase];
  return `${verb}: ${pct}% (${formatBytes(p.done)} of ${formatBytes(p.total)})`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

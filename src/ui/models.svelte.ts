import type { StudioClient } from '../api/client';
import type { FileEntry, GenerateResult, ModelInfo, ModelProgress, SamplingOptions } from '../api/protocol';

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
  /** Use the model's chat template (instruct models); on by default when it has one. */
  chat = $state(false);
  sampling = $state<SamplingOptions>({ maxNewTokens: 40, temperature: 0.8, topK: 50, topP: 0.95, seed: 0 });
  output = $state('');
  generating = $state(false);
  result = $state<GenerateResult | null>(null);

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
    this.error = null;
    this.pending = null;
    if (files.length === 0) return;
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
    if (!repo) return;
    await this.run(async () => {
      this.progress = { phase: 'reading', done: 0, total: 1, detail: `${repo}: config and headers` };
      this.pending = { kind: 'hub', repo, info: await this.client.inspectHubModel(repo, this.hubEndpoint) };
    });
  }

  async importPending(): Promise<void> {
    if (!this.pending || this.busy) return;
    await this.run(async () => {
      const p = this.pending!;
      const onProgress = (x: ModelProgress) => (this.progress = x);
      const info = p.kind === 'files' ? await this.client.importModel(p.files, onProgress) : await this.client.importHubModel(p.repo, this.hubEndpoint, onProgress);
      this.pending = null;
      this.loadedId = info.id;
      await this.refresh();
    });
  }

  async load(id: string): Promise<void> {
    await this.run(async () => {
      const info = await this.client.loadModel(id, (p) => (this.progress = p));
      this.loadedId = info.id;
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
    try {
      const chat = this.chat && (this.loaded?.chatTemplate ?? false);
      this.result = await this.client.generate({ modelId: this.loadedId, prompt: this.prompt, options: { ...this.sampling }, chat }, (p) => {
        this.output = p.text;
      });
      this.output = this.result.text;
    } catch (e) {
      this.error = message(e);
    } finally {
      this.generating = false;
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

function message(e: unknown): string {
  if (e instanceof Error) return e.name && e.name !== 'Error' ? `${e.name}: ${e.message}` : e.message;
  return String(e);
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

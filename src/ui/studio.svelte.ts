import type { StudioClient } from '../api/client';
import type { BackendReport, BackendRequest, RunInfo, StepReport } from '../api/protocol';

export const BACKEND_CHOICES: BackendRequest[] = ['auto', 'webgpu', 'webgl', 'wasm', 'cpu'];

/** localStorage key of the backend chosen in the header (a page setting, not user data). */
export const BACKEND_SETTING = 'tabtune.backend';

export interface PageOptions {
  backend: BackendRequest;
  preset: string;
  /** Total steps for a new run (the preset's default when absent). */
  steps?: number;
  sampleUrl: string;
  sampleName: string;
  /** Something about the page's own settings the user should know (an unknown URL parameter). */
  notice?: string;
}

export type Phase = 'starting' | 'ready' | 'training' | 'stopping' | 'failed-to-start';

/** The page's state: what the worker reported, and what the user is doing. */
export class StudioState {
  backend = $state<BackendReport | null>(null);
  run = $state<RunInfo | null>(null);
  points = $state<StepReport[]>([]);
  phase = $state<Phase>('starting');
  error = $state<string | null>(null);

  latest = $derived(this.points.at(-1) ?? null);
  resumable = $derived(this.run?.resumable ?? false);

  private readonly client: StudioClient;
  readonly options: PageOptions;

  constructor(client: StudioClient, options: PageOptions) {
    this.client = client;
    this.options = options;
  }

  get totalSteps(): number {
    return this.latest?.totalSteps ?? this.run?.train.steps ?? this.options.steps ?? 0;
  }

  async start(): Promise<void> {
    try {
      this.backend = await this.client.init(this.options.backend);
      await this.refreshRun();
      this.phase = 'ready';
    } catch (e) {
      this.error = `The training worker could not start: ${message(e)}`;
      this.phase = 'failed-to-start';
    }
  }

  async train(): Promise<void> {
    if (this.phase !== 'ready') return;
    this.phase = 'training';
    this.error = null;
    if (!this.resumable) this.points = [];
    try {
      const res = await fetch(this.options.sampleUrl);
      if (!res.ok) throw new Error(`could not load ${this.options.sampleName}: HTTP ${res.status}`);
      const text = await res.text();
      this.run = await this.client.train(
        { preset: this.options.preset, text, dataset: this.options.sampleName, steps: this.options.steps },
        (r) => {
          this.points.push(r);
        },
      );
    } catch (e) {
      this.error = message(e);
      await this.refreshRun().catch(() => undefined);
    } finally {
      // The backend can change under a run (a lost GPU device): show what is in use now.
      this.backend = await this.client.backend().catch(() => this.backend);
      this.phase = 'ready';
    }
  }

  async stop(): Promise<void> {
    if (this.phase !== 'training') return;
    this.phase = 'stopping';
    await this.client.stop();
  }

  async reset(): Promise<void> {
    if (this.phase !== 'ready') return;
    try {
      await this.client.deleteRun(this.options.preset);
      await this.refreshRun();
    } catch (e) {
      this.error = message(e);
    }
  }

  private async refreshRun(): Promise<void> {
    this.run = await this.client.getRun(this.options.preset);
    this.points = this.run ? this.run.history.slice() : [];
  }
}

function message(e: unknown): string {
  if (e instanceof Error) return e.name && e.name !== 'Error' ? `${e.name}: ${e.message}` : e.message;
  return String(e);
}

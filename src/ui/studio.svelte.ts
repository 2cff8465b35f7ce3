import type { StudioClient } from '../api/client';
import { message } from './errors';
import type { BackendReport, BackendRequest, PresetInfo, RunInfo, StepReport } from '../api/protocol';

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
  preset = $state<PresetInfo | null>(null);
  run = $state<RunInfo | null>(null);
  /** Step reports to draw; replaced wholesale or appended, never deeply mutated. */
  points = $state.raw<StepReport[]>([]);
  phase = $state<Phase>('starting');
  error = $state<string | null>(null);
  notices = $state<string[]>([]);
  /** One short sentence for screen readers at each change that matters (not every step). */
  announcement = $state('');

  /** The checkpoint step this session of training started from (0 for a new run). */
  private startedFrom = $state<number | null>(null);

  latest = $derived(this.points.at(-1) ?? null);
  resumable = $derived(this.run?.resumable ?? false);
  elsewhere = $derived(this.run?.status === 'elsewhere');
  /** Training, but the first step of this session has not come back yet (kernels compiling). */
  preparing = $derived(this.phase === 'training' && (this.latest === null || this.latest.step <= (this.startedFrom ?? 0)));

  private readonly client: StudioClient;
  readonly options: PageOptions;

  constructor(client: StudioClient, options: PageOptions) {
    this.client = client;
    this.options = options;
    if (options.notice) this.notices = [options.notice];
  }

  get totalSteps(): number {
    return this.latest?.totalSteps ?? this.run?.train.steps ?? this.options.steps ?? this.preset?.steps ?? 0;
  }

  async start(): Promise<void> {
    try {
      this.backend = await this.client.init(this.options.backend);
      const presets = await this.client.presets();
      this.preset = presets.find((p) => p.name === this.options.preset) ?? null;
      if (!this.preset) {
        this.notices = [
          ...this.notices,
          `Unknown preset "${this.options.preset}"; using "demo". Known: ${presets.map((p) => p.name).join(', ')}.`,
        ];
        this.options.preset = 'demo';
        this.preset = presets.find((p) => p.name === 'demo') ?? presets[0];
      }
      await this.refreshRun();
      this.phase = 'ready';
      this.announce(`Ready. Training runs on ${this.backend.name}.`);
    } catch (e) {
      this.error = `The training worker could not start: ${message(e)}`;
      this.phase = 'failed-to-start';
    }
  }

  async train(): Promise<void> {
    if (this.phase !== 'ready' || this.elsewhere) return;
    this.phase = 'training';
    this.error = null;
    const resuming = this.resumable;
    this.startedFrom = resuming ? (this.run?.step ?? 0) : 0;
    if (!resuming) this.points = [];
    this.announce(resuming ? `Resuming from step ${this.startedFrom}.` : 'Training started.');
    try {
      const res = await fetch(this.options.sampleUrl);
      if (!res.ok) throw new Error(`could not load ${this.options.sampleName}: HTTP ${res.status}`);
      const text = await res.text();
      this.run = await this.client.train(
        { preset: this.options.preset, text, dataset: this.options.sampleName, steps: this.options.steps },
        (r) => {
          this.points = [...this.points, r];
        },
      );
      const last = this.latest;
      this.announce(
        this.run.status === 'done'
          ? `Run finished at step ${this.run.step}, loss ${last?.loss.toFixed(3)}.`
          : `Paused at step ${this.run.step}; a checkpoint is saved.`,
      );
    } catch (e) {
      this.error = message(e);
      this.announce(`Training stopped: ${this.error}`);
      await this.refreshRun().catch(() => undefined);
    } finally {
      // The backend can change under a run (a lost GPU device): show what is in use now.
      this.backend = await this.client.backend().catch(() => this.backend);
      this.startedFrom = null;
      this.phase = 'ready';
    }
  }

  async stop(): Promise<void> {
    if (this.phase !== 'training') return;
    this.phase = 'stopping';
    this.announce('Pausing after the current step.');
    try {
      await this.client.stop();
    } catch (e) {
      this.error = message(e);
    }
  }

  async deleteRun(): Promise<void> {
    if (this.phase !== 'ready') return;
    try {
      await this.client.deleteRun(this.options.preset);
      await this.refreshRun();
      this.announce('Run deleted.');
    } catch (e) {
      this.error = message(e);
    }
  }

  /** Looks again at the stored run (another tab may have finished or released it). */
  async refreshRun(): Promise<void> {
    this.run = await this.client.getRun(this.options.preset);
    this.points = this.run ? this.run.history.slice() : [];
  }

  private announce(text: string): void {
    this.announcement = text;
  }
}


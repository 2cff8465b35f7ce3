/**
 * The Studio: StudioApi implemented with the core (model, trainer) and the store (runs,
 * checkpoints). It knows nothing of comlink or of where it runs: the worker and the CLI
 * each construct one with their own backend chooser and key-value store.
 */
import * as tf from '@tensorflow/tfjs-core';
import { resolveGPT2Config, resolveTrainConfig } from '../core/config';
import { checkTokens } from '../core/data/batch';
import { BackendError, TabtuneError } from '../core/errors';
import { GPT2 } from '../core/model/gpt2';
import { DEMO_PRESETS, isPresetName } from '../core/presets';
import { ByteTokenizer } from '../core/tokenizer/bytes';
import { Trainer, type StepReport } from '../core/train/trainer';
import type { KV } from '../store/kv';
import {
  SCHEMA_VERSION, deleteRun, listCheckpoints, loadCheckpoint, loadRun, saveCheckpoint, saveRun, type RunRecord,
} from '../store/runs';
import type { BackendFallback, BackendReport, BackendRequest, Diagnostics, RunInfo, StudioApi, TrainRequest } from './protocol';

export interface StudioDeps {
  kv: KV;
  selectBackend: (request: BackendRequest, onLost: (reason: string) => void, exclude: BackendFallback[]) => Promise<BackendReport>;
}

const runIdFor = (preset: string) => `demo-${preset}`;

export class Studio implements StudioApi {
  private current: BackendReport | null = null;
  private request: BackendRequest = 'auto';
  /** Backends lost during this Studio's life; never chosen again by it. */
  private readonly lost: BackendFallback[] = [];
  private active: { id: string; stopRequested: boolean } | null = null;
  private readonly tokenizer = new ByteTokenizer();

  constructor(private readonly deps: StudioDeps) {}

  /** Chooses the backend once per Studio; later calls return the same report. */
  async init(request: BackendRequest): Promise<BackendReport> {
    if (!this.current) {
      this.request = request;
      await this.choose();
    }
    return this.backend();
  }

  async backend(): Promise<BackendReport> {
    if (!this.current) throw new BackendError('init() has not chosen a backend yet');
    return { ...this.current, fallbacks: [...this.current.fallbacks] };
  }

  private async choose(): Promise<void> {
    this.current = await this.deps.selectBackend(
      this.request,
      (reason) => {
        if (this.current) this.lost.push({ backend: this.current.name, reason });
      },
      this.lost,
    );
  }

  async getRun(preset: string): Promise<RunInfo | null> {
    const run = await loadRun(this.deps.kv, runIdFor(preset));
    return run ? this.toInfo(run) : null;
  }

  async train(req: TrainRequest, onStep: (r: StepReport) => void): Promise<RunInfo> {
    if (!this.current) throw new BackendError('init() must choose a backend before training');
    // After a lost device, the next run falls back to the next backend and resumes from its checkpoint.
    if (this.current.lost) await this.choose();
    const backend = this.current;
    if (this.active) throw new TabtuneError(`run ${this.active.id} is already training; stop it first`);
    if (!isPresetName(req.preset)) throw new TabtuneError(`unknown preset "${req.preset}"`, { field: 'preset' });
    const kv = this.deps.kv;
    const id = runIdFor(req.preset);
    const active = { id, stopRequested: false };
    this.active = active;
    let model: GPT2 | null = null;
    let trainer: Trainer | null = null;
    let run: RunRecord | undefined;
    // Set once this call has changed stored state; before that, a refusal must leave storage as it was.
    let started = false;
    try {
      const preset = DEMO_PRESETS[req.preset];
      const stored = await loadRun(kv, id);
      // Unfinished (stopped, interrupted by a reload or crash, or failed): continue from its checkpoint.
      const resuming = stored !== undefined && stored.step > 0 && stored.step < stored.train.steps;
      const modelCfg = resuming ? stored.model : resolveGPT2Config(preset.model);
      const cfg = resuming ? stored.train : resolveTrainConfig({ ...preset.train, ...(req.steps ? { steps: req.steps } : {}) }, modelCfg);
      const tokens = this.tokenizer.encode(req.text);
      checkTokens(tokens, cfg.block_size, req.dataset);

      let history: StepReport[];
      if (resuming) {
        const ckpt = await loadCheckpoint(kv, stored);
        if (!ckpt) throw new TabtuneError(`run ${id} points at checkpoint ${stored.latestCheckpoint}, which is missing`);
        model = new GPT2(modelCfg, ckpt.weights);
        trainer = new Trainer(model, cfg);
        trainer.restore(ckpt);
        history = stored.history.slice();
        run = stored;
      } else {
        model = GPT2.random(modelCfg, cfg.seed);
        trainer = new Trainer(model, cfg);
        history = [];
        const now = Date.now();
        run = {
          schema: SCHEMA_VERSION, id, preset: req.preset, dataset: req.dataset, model: modelCfg, train: cfg,
          numParams: model.numParams(), status: 'running', step: 0, latestCheckpoint: null, history,
          backend: backend.name, error: null, createdAt: now, updatedAt: now,
        };
        // A finished run is replaced: clear its checkpoints so their steps cannot outrank the new ones.
        started = true;
        if (stored) await deleteRun(kv, id);
      }
      started = true;
      run = { ...run, status: 'running', dataset: req.dataset, backend: backend.name, error: null };
      await saveRun(kv, run);

      while (trainer.step < cfg.steps && !active.stopRequested) {
        if (backend.lost) {
          throw new BackendError(`${backend.lost}. Press Resume to continue from step ${run.step} on the next backend.`);
        }
        const report = await trainer.trainStep(tokens);
        history.push(report);
        // Fire and forget: the UI's callback must never hold up training.
        void Promise.resolve(onStep(report)).catch(() => undefined);
        if (report.step % cfg.checkpoint_every === 0 || report.step === cfg.steps) {
          run = await saveCheckpoint(kv, run, await trainer.checkpoint(), history);
        }
        // Let stop() and other messages in: on CPU-like backends data() resolves without a macrotask.
        await new Promise((r) => setTimeout(r, 0));
      }
      if (trainer.step > run.step) run = await saveCheckpoint(kv, run, await trainer.checkpoint(), history);
      run = { ...run, status: trainer.step >= cfg.steps ? 'done' : 'stopped' };
      await saveRun(kv, run);
      return this.toInfo(run);
    } catch (e) {
      // A lost device makes the step itself fail with whatever the driver says; name the real cause.
      const err = backend.lost && !(e instanceof BackendError)
        ? new BackendError(`${backend.lost}. Press Resume to continue from step ${run?.step ?? 0} on the next backend.`)
        : e;
      if (run && started) {
        await saveRun(kv, { ...run, status: 'failed', error: err instanceof Error ? err.message : String(err) }).catch(() => undefined);
      }
      throw err;
    } finally {
      trainer?.dispose();
      model?.dispose();
      this.active = null;
    }
  }

  async stop(): Promise<void> {
    if (this.active) this.active.stopRequested = true;
  }

  async deleteRun(preset: string): Promise<void> {
    const id = runIdFor(preset);
    if (this.active?.id === id) throw new TabtuneError(`run ${id} is training; stop it before deleting`);
    await deleteRun(this.deps.kv, id);
  }

  async diagnostics(): Promise<Diagnostics> {
    const mem = tf.memory();
    const checkpoints = [];
    for (const preset of Object.keys(DEMO_PRESETS)) checkpoints.push(...(await listCheckpoints(this.deps.kv, runIdFor(preset))));
    const g = globalThis as { WorkerGlobalScope?: unknown; window?: unknown };
    return {
      backend: tf.getBackend(),
      numTensors: mem.numTensors,
      numBytes: mem.numBytes,
      checkpoints,
      inWorker: g.WorkerGlobalScope !== undefined && g.window === undefined,
    };
  }

  private toInfo(run: RunRecord): RunInfo {
    const interrupted = run.status === 'running' && this.active?.id !== run.id;
    const preset = isPresetName(run.preset) ? DEMO_PRESETS[run.preset] : null;
    return {
      id: run.id, preset: run.preset, presetLabel: preset?.label ?? run.preset, dataset: run.dataset,
      model: run.model, train: run.train, numParams: run.numParams,
      status: interrupted ? 'interrupted' : run.status, step: run.step, history: run.history,
      backend: run.backend, error: run.error, updatedAt: run.updatedAt,
    };
  }
}

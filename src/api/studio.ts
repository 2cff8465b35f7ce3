/**
 * The Studio: StudioApi implemented with the core (model, trainer) and the store (runs,
 * checkpoints). It knows nothing of comlink or of where it runs: the worker and the CLI
 * each construct one with their own backend chooser and key-value store.
 */
import * as tf from '@tensorflow/tfjs-core';
import { resolveGPT2Config, resolveTrainConfig, TRAIN_SPEC } from '../core/config';
import { LORA_SPEC } from '../core/peft/lora';
import { checkTokens } from '../core/data/batch';
import { BackendError, CheckpointError, DataError, TabtuneError } from '../core/errors';
import { countParams } from '../core/model/base';
import { GPT2, gpt2ParamShapes, validateGPT2Weights } from '../core/model/gpt2';
import { DEMO_PRESETS, isPresetName } from '../core/presets';
import { ByteTokenizer } from '../core/tokenizer/bytes';
import { Trainer, type StepReport } from '../core/train/trainer';
import type { KV } from '../store/kv';
import { adapterFiles, blobFiles } from './blob-files';
import { hubFiles, parseRepo } from './hub';
import { FINETUNE_DEFAULTS, ModelLibrary, newTuneRunId, tuneDatasetIds, type TuneHooks } from './library';
import { listModels, saveModel } from '../store/models';
import { benchShape, measure, type BenchShape } from '../core/bench';
import { initGPT2Weights } from '../core/model/gpt2';
import { listDatasets, loadDatasetRecord } from '../store/datasets';
import { deleteTuneCheckpoints, deleteTuneRun, isTuneResumable, tuneCheckpointBytes, listTuneRuns, loadTuneFiles, loadTuneRun, migrateTuneRun, saveTuneFiles, saveTuneRun, type TuneRunRecord } from '../store/tunes';
import { metricsCsv, type MetricEval } from '../core/io/metrics';
import { unzipFiles, zipFiles } from '../core/io/zip';

/** The channel fine-tuning runs are told on, for other tabs of this site. */
export const RUNS_CHANNEL = 'tabtune-runs';

/** Names the kind of file exportTuneRun writes. */
const RUN_FILE_FORMAT = 'tabtune-run';
import type { RunLocks } from './locks';
import {
  SCHEMA_VERSION, deleteRun, isResumable, listCheckpoints, loadCheckpoint, loadRun, saveCheckpoint, saveRun,
  type CheckpointRecord, type RunRecord,
} from '../store/runs';
import type {
  AdapterInfo, RunBroadcast, StorageInfo, StorageItem, TuneRunInfo, BackendFallback, BackendReport, DataProgress, DatasetInfo, DatasetPreview, DatasetRequest, SaveDatasetRequest, BackendRequest, BenchRequest, BenchResult, Diagnostics, EvalInfo, SampleInfo, ScoreProgress, FileEntry, FinetuneRequest, FinetuneResult, GenerateRequest, GenerateResult, GeneratedPiece,
  ModelInfo, ModelProgress, PresetInfo, RunInfo, StudioApi, TrainRequest, SettingSpec, TuneEstimate, TuneEstimateRequest, TuneRunSettings, FinetuneMethod,
} from './protocol';

export interface StudioDeps {
  kv: KV;
  /** Cross-tab run ownership (Web Locks in the browser); without it, only this Studio's own runs are known. */
  locks?: RunLocks | null;
  selectBackend: (request: BackendRequest, onLost: (reason: string) => void, exclude: BackendFallback[]) => Promise<BackendReport>;
}

const runIdFor = (preset: string) => `demo-${preset}`;

/** A watcher's callback that can never hold up or fail the work it watches. */
function quiet<T>(fn: (x: T) => void): (x: T) => void {
  return (x) => {
    try {
      void Promise.resolve(fn(x)).catch(() => undefined);
    } catch {
      // the watcher's problem, not the work's
    }
  };
}

interface Session {
  run: RunRecord;
  model: GPT2;
  trainer: Trainer;
  tokens: Int32Array;
  backend: BackendReport;
}

function lostError(s: Session): BackendError {
  return new BackendError(`${s.backend.lost}. Press Resume to continue from step ${s.run.step} on the next backend.`);
}

/** Identifies the training data, so a resumed run is refused other data than it started on. */
export function fingerprintTokens(tokens: Int32Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < tokens.length; i++) {
    h ^= tokens[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `${tokens.length}:${h.toString(16).padStart(8, '0')}`;
}

/** What a kept run was asked for, as plain settings (its data is kept apart, by id). */
function settingsOf(r: TuneRunRecord): TuneRunSettings {
  const q = r.request as Partial<FinetuneRequest>;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return {
    method: (q.method ?? 'lora') as FinetuneMethod, bits: q.bits ?? null, lora: { ...(q.lora ?? {}) }, train: { ...(q.train ?? {}) },
    numVirtualTokens: num(q.numVirtualTokens), datasetId: r.datasetId, validation: num(q.validation), test: num(q.test), evalEvery: num(q.evalEvery),
    patience: num(q.patience), exactMatch: num(q.exactMatch), samples: q.samples ? { every: q.samples.every, prompts: q.samples.prompts } : null,
    // The rows as the run read them (its request keeps the format and template it detected).
    completionOnly: q.completionOnly ?? null, packing: q.packing ?? null, format: q.format ?? null, mapping: q.mapping ?? null, template: q.template ?? null,
    forgetting: !!q.forgetting,
  };
}

export class Studio implements StudioApi {
  private readonly library: ModelLibrary;
  /** What holds the model now (a generation or a fine-tuning run), and its stop flag. */
  private generating: { stop: boolean; what: 'a generation' | 'a fine-tuning run' | 'a benchmark' } | null = null;
  /** A pause of the fine-tuning run: its gate, until resumed. */
  private tuningPause: { promise: Promise<void>; resolve: () => void } | null = null;
  /** The fine-tuning run this Studio trains now. */
  private tuningId: string | null = null;
  /** A checkpoint of the fine-tuning run was asked for (the tab is being hidden). */
  private checkpointAsked = false;
  private current: BackendReport | null = null;
  private request: BackendRequest = 'auto';
  /** Backends lost during this Studio's life; never chosen again by it. */
  private readonly lost: BackendFallback[] = [];
  private active: { id: string; stopRequested: boolean } | null = null;
  private readonly tokenizer = new ByteTokenizer();

  constructor(private readonly deps: StudioDeps) {
    this.library = new ModelLibrary(deps.kv, () => this.current?.maxBufferBytes ?? null);
  }

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
    if (!run) return null;
    const elsewhere = run.status === 'running' && this.active?.id !== run.id && (await this.deps.locks?.isHeld(run.id)) === true;
    return this.toInfo(run, elsewhere);
  }

  async train(req: TrainRequest, onStep: (r: StepReport) => void): Promise<RunInfo> {
    if (!this.current) throw new BackendError('init() must choose a backend before training');
    if (this.active) throw new TabtuneError(`run ${this.active.id} is already training; stop it first`);
    if (this.generating?.what === 'a benchmark') throw new TabtuneError('a benchmark is running; training waits for it');
    if (!isPresetName(req.preset)) throw new TabtuneError(`unknown preset "${req.preset}"`, { field: 'preset' });
    const id = runIdFor(req.preset);
    if (!this.deps.locks) return this.trainOwned(req, id, onStep);
    const r = await this.deps.locks.tryWith(id, () => this.trainOwned(req, id, onStep));
    if (r.held) throw new TabtuneError(`run ${id} is training in another tab; pause it there, or wait for it to finish`);
    return r.value;
  }

  private async trainOwned(req: TrainRequest, id: string, onStep: (r: StepReport) => void): Promise<RunInfo> {
    if (this.active) throw new TabtuneError(`run ${this.active.id} is already training; stop it first`);
    const active = { id, stopRequested: false };
    this.active = active;
    let session: Session | null = null;
    try {
      // After a lost device, the next run falls back to the next backend and resumes from its checkpoint.
      if (this.current!.lost) await this.choose();
      session = await this.open(req, id, this.current!);
      return await this.loop(session, active, onStep);
    } catch (e) {
      throw await this.fail(session, e);
    } finally {
      session?.trainer.dispose();
      session?.model.dispose();
      this.active = null;
    }
  }

  /**
   * Opens the run to train: the unfinished one from its newest readable checkpoint, or a new one.
   * Everything that can refuse the request (config, data, checkpoints) happens before the first
   * write, so a refusal leaves storage exactly as it was.
   */
  private async open(req: TrainRequest, id: string, backend: BackendReport): Promise<Session> {
    const kv = this.deps.kv;
    const tokens = this.tokenizer.encode(req.text);
    const fingerprint = fingerprintTokens(tokens);
    const stored = await loadRun(kv, id);
    if (stored && isResumable(stored)) {
      if (stored.dataFingerprint !== fingerprint) {
        throw new DataError(
          `${req.dataset} is not the data run ${id} was trained on (${stored.dataset}); resuming needs the same data. Delete the run to start over with new data.`,
          { file: req.dataset },
        );
      }
      checkTokens(tokens, stored.train.block_size, req.dataset);
      const { ckpt, key } = await this.newestReadable(stored);
      const model = new GPT2(stored.model, ckpt.weights);
      const trainer = new Trainer(model, stored.train);
      trainer.restore(ckpt);
      const run: RunRecord = {
        ...stored, step: ckpt.step, latestCheckpoint: key, history: stored.history.filter((h) => h.step <= ckpt.step),
        status: 'running', backend: backend.name, error: null,
      };
      await saveRun(kv, run);
      return { run, model, trainer, tokens, backend };
    }
    const preset = DEMO_PRESETS[req.preset as keyof typeof DEMO_PRESETS];
    const modelCfg = resolveGPT2Config(preset.model);
    const cfg = resolveTrainConfig({ ...preset.train, ...(req.steps ? { steps: req.steps } : {}) }, modelCfg);
    checkTokens(tokens, cfg.block_size, req.dataset);
    // A finished run is replaced: clear its checkpoints so their steps cannot outrank the new ones.
    if (stored) await deleteRun(kv, id);
    const model = GPT2.random(modelCfg, cfg.seed);
    const trainer = new Trainer(model, cfg);
    const now = Date.now();
    const run: RunRecord = {
      schema: SCHEMA_VERSION, id, preset: req.preset, dataset: req.dataset, dataFingerprint: fingerprint,
      model: modelCfg, train: cfg, numParams: model.numParams(), status: 'running', step: 0, latestCheckpoint: null,
      history: [], backend: backend.name, error: null, createdAt: now, updatedAt: now,
    };
    await saveRun(kv, run);
    return { run, model, trainer, tokens, backend };
  }

  /** The latest checkpoint, or an older kept one when the latest cannot be read or does not fit. */
  private async newestReadable(run: RunRecord): Promise<{ ckpt: CheckpointRecord; key: string }> {
    const keys = (await listCheckpoints(this.deps.kv, run.id)).reverse();
    if (run.latestCheckpoint) keys.sort((a, b) => Number(b === run.latestCheckpoint) - Number(a === run.latestCheckpoint));
    const problems: string[] = [];
    for (const key of keys) {
      try {
        const ckpt = await loadCheckpoint(this.deps.kv, key);
        if (!ckpt) throw new Error('missing');
        validateGPT2Weights(run.model, ckpt.weights);
        return { ckpt, key };
      } catch (e) {
        problems.push(`${key}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    throw new CheckpointError(
      `run ${run.id} has no readable checkpoint (${problems.join('; ') || 'none stored'}). Delete the run to start over.`,
    );
  }

  private async loop(s: Session, active: { stopRequested: boolean }, onStep: (r: StepReport) => void): Promise<RunInfo> {
    const kv = this.deps.kv;
    const cfg = s.run.train;
    const history = s.run.history.slice();
    while (s.trainer.step < cfg.steps && !active.stopRequested) {
      if (s.backend.lost) throw lostError(s);
      const report = await s.trainer.trainStep(s.tokens);
      history.push(report);
      quiet(onStep)(report);
      if (report.step % cfg.checkpoint_every === 0 || report.step === cfg.steps) {
        s.run = await saveCheckpoint(kv, s.run, await s.trainer.checkpoint(), history);
      }
      // Let stop() and other messages in: on CPU-like backends data() resolves without a macrotask.
      await new Promise((r) => setTimeout(r, 0));
    }
    if (s.trainer.step > s.run.step) s.run = await saveCheckpoint(kv, s.run, await s.trainer.checkpoint(), history);
    s.run = { ...s.run, status: s.trainer.step >= cfg.steps ? 'done' : 'stopped' };
    await saveRun(kv, s.run);
    return this.toInfo(s.run);
  }

  /** Marks an opened run failed (it stays resumable from its checkpoint) and names the real cause. */
  private async fail(s: Session | null, e: unknown): Promise<unknown> {
    // A lost device makes the step itself fail with whatever the driver says.
    const err = s?.backend.lost && !(e instanceof BackendError) ? lostError(s) : e;
    if (s) {
      const message = err instanceof Error ? err.message : String(err);
      await saveRun(this.deps.kv, { ...s.run, status: 'failed', error: message }).catch(() => undefined);
    }
    return err;
  }

  async stop(): Promise<void> {
    if (this.active) this.active.stopRequested = true;
  }

  async deleteRun(preset: string): Promise<void> {
    const id = runIdFor(preset);
    if (this.active?.id === id || (await this.deps.locks?.isHeld(id))) {
      throw new TabtuneError(`run ${id} is training; pause it before deleting`);
    }
    await deleteRun(this.deps.kv, id);
  }

  async presets(): Promise<PresetInfo[]> {
    return Object.entries(DEMO_PRESETS).map(([name, p]) => {
      const model = resolveGPT2Config(p.model);
      const train = resolveTrainConfig(p.train, model);
      const numParams = countParams(gpt2ParamShapes(model));
      return { name, label: p.label, help: p.help, steps: train.steps, numParams };
    });
  }

  async inspectModelFiles(files: FileEntry[]): Promise<ModelInfo> {
    return this.library.inspect(blobFiles(files));
  }

  async importModel(files: FileEntry[], onProgress: (p: ModelProgress) => void): Promise<ModelInfo> {
    this.requireIdleModel();
    return this.library.import(blobFiles(files), quiet(onProgress));
  }

  async inspectHubModel(repo: string, endpoint?: string): Promise<ModelInfo> {
    return this.library.inspect(hubFiles(parseRepo(repo), { endpoint }));
  }

  async importHubModel(repo: string, endpoint: string | undefined, onProgress: (p: ModelProgress) => void): Promise<ModelInfo> {
    this.requireIdleModel();
    return this.library.import(hubFiles(parseRepo(repo), { endpoint }), quiet(onProgress));
  }

  async listModels(): Promise<ModelInfo[]> {
    return this.library.list();
  }

  async loadModel(id: string, onProgress: (p: ModelProgress) => void): Promise<ModelInfo> {
    this.requireIdleModel();
    return this.library.load(id, quiet(onProgress));
  }

  async deleteModel(id: string): Promise<void> {
    this.requireIdleModel();
    await this.library.delete(id);
  }

  async logits(modelId: string, input: { ids?: number[]; text?: string }) {
    return this.library.logits(modelId, input);
  }

  async generate(req: GenerateRequest, onPiece: (p: GeneratedPiece) => void): Promise<GenerateResult> {
    if (this.generating) throw new TabtuneError(`${this.generating.what} is running; stop it first`);
    const state = { stop: false, what: 'a generation' as const };
    this.generating = state;
    try {
      return await this.library.generate(req, quiet(onPiece), () => state.stop);
    } finally {
      this.generating = null;
    }
  }

  async stopGenerating(): Promise<void> {
    if (this.generating) this.generating.stop = true;
    // A paused fine-tuning run stops too: it is let through its gate to see the stop.
    this.releasePause();
  }

  async finetuneModel(req: FinetuneRequest, onStep: (r: StepReport) => void, onEval?: (e: EvalInfo) => void, onSample?: (s: SampleInfo) => void, onScore?: (p: ScoreProgress) => void): Promise<FinetuneResult> {
    const id = newTuneRunId(req.modelId, req.method);
    if (!this.deps.locks) return this.tune(id, (hooks) => this.library.finetune(req, hooks, id), onStep, onEval, onSample, onScore);
    // The run belongs to this tab while it trains: another tab sees it, and cannot resume it.
    const r = await this.deps.locks.tryWith(id, () => this.tune(id, (hooks) => this.library.finetune(req, hooks, id), onStep, onEval, onSample, onScore));
    if (r.held) throw new TabtuneError(`run ${id} is already training`);
    return r.value;
  }

  /** Continues a kept fine-tuning run from its latest checkpoint (after a reload, a crash, a stop). */
  async resumeTuneRun(runId: string, onStep: (r: StepReport) => void, onEval?: (e: EvalInfo) => void, onSample?: (s: SampleInfo) => void, onScore?: (p: ScoreProgress) => void): Promise<FinetuneResult> {
    if (!this.deps.locks) return this.tune(runId, (hooks) => this.library.resumeTuneRun(runId, hooks), onStep, onEval, onSample, onScore);
    const r = await this.deps.locks.tryWith(runId, () => this.tune(runId, (hooks) => this.library.resumeTuneRun(runId, hooks), onStep, onEval, onSample, onScore));
    if (r.held) throw new TabtuneError(`run ${runId} is training in another tab; pause it there, or wait for it to finish`);
    return r.value;
  }

  private async tune(
    runId: string,
    work: (hooks: TuneHooks) => Promise<FinetuneResult>,
    onStep: (r: StepReport) => void,
    onEval?: (e: EvalInfo) => void,
    onSample?: (s: SampleInfo) => void,
    onScore?: (p: ScoreProgress) => void,
  ): Promise<FinetuneResult> {
    this.requireIdleModel();
    if (this.active) throw new TabtuneError(`run ${this.active.id} is training; pause it first`);
    // The same flag as generation: while the model trains, nothing else may swap or use it.
    const state = { stop: false, what: 'a fine-tuning run' as const };
    this.generating = state;
    this.tuningId = runId;
    this.tuningPause = null;
    this.checkpointAsked = false;
    // Other tabs of this site watch the run live, read-only.
    // One channel for the Studio's life: closing it right after the last message could drop that message.
    if (this.channel === undefined) {
      this.channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(RUNS_CHANNEL) : null;
      // In Node an open channel would keep the process alive after the work is done.
      (this.channel as { unref?: () => void } | null)?.unref?.();
    }
    const channel = this.channel;
    const tell = (m: Omit<RunBroadcast, 'tab'>) => channel?.postMessage({ ...m, tab: this.tab });
    try {
      return await work({
        onStep: (r) => {
          quiet(onStep)(r);
          tell({ type: 'step', runId, step: r.step, loss: r.loss, totalSteps: r.totalSteps });
        },
        onEval: quiet(onEval ?? (() => undefined)),
        onSample: quiet(onSample ?? (() => undefined)),
        onScore: quiet(onScore ?? (() => undefined)),
        shouldStop: () => state.stop,
        gate: () => this.tuningPause?.promise ?? Promise.resolve(),
        // A pause and a hidden tab both write a checkpoint before waiting.
        wantsCheckpoint: () => {
          const asked = this.checkpointAsked || this.tuningPause !== null;
          this.checkpointAsked = false;
          return asked;
        },
      });
    } finally {
      this.generating = null;
      this.tuningId = null;
      this.releasePause();
      tell({ type: 'end', runId, step: 0, loss: 0, totalSteps: 0 });
    }
  }

  private channel: BroadcastChannel | null | undefined;
  private readonly tab = `${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;

  async bench(req: BenchRequest): Promise<BenchResult> {
    const backend = (await this.backend()).name;
    if (this.active || this.generating || this.tuningId) throw new TabtuneError(`${this.generating?.what ?? 'a run'} is running: a bench measures an idle worker`);
    // The worker is busy while it measures: a run or a model change waits, with this reason.
    this.generating = { stop: false, what: 'a benchmark' };
    try {
      if (req.kind === 'load') return { kind: 'load', backend, ...(await this.benchLoad(benchShape(req.shape))) };
      return { ...(await measure(req)), backend };
    } finally {
      this.generating = null;
    }
  }

  /**
   * A random GPT-2 of the shape stored as an import stores it, then read back onto the device by a
   * library that holds nothing (as after a reload), timed; then deleted.
   */
  private async benchLoad(shape: BenchShape): Promise<Record<string, unknown>> {
    const id = `bench-${shape.name}`;
    const config = resolveGPT2Config(shape.model);
    const weights = initGPT2Weights(config, 1);
    const hf = { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], ...config, n_ctx: config.n_positions, activation_function: 'gelu_new', tie_word_embeddings: true };
    async function* tensors() {
      for (const [name, w] of Object.entries(weights)) yield { name, dtype: 'F32', shape: w.shape, bytes: new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength) };
    }
    const t0 = performance.now();
    const record = await saveModel(this.deps.kv, id, id, { 'config.json': JSON.stringify(hf) }, tensors());
    const storeMs = performance.now() - t0;
    const library = new ModelLibrary(this.deps.kv, () => this.current?.maxBufferBytes ?? null);
    try {
      const t1 = performance.now();
      await library.load(id, () => undefined);
      return { shape: shape.name, bytes: record.storedBytes, storeMs, loadMs: performance.now() - t1 };
    } finally {
      await library.delete(id);
    }
  }

  async tabId(): Promise<string> {
    return this.tab;
  }

  async storageInfo(): Promise<StorageInfo | null> {
    const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
    if (!storage?.estimate) return null;
    const { usage = 0, quota = 0 } = await storage.estimate();
    const persisted = storage.persisted ? await storage.persisted().catch(() => null) : null;
    return { usage, quota, persisted };
  }

  /**
   * What can go to make room, biggest first: each run's checkpoints (a finished run does not need
   * them), models and datasets, each with what deleting it costs and whether a run still needs it.
   */
  async storageItems(): Promise<StorageItem[]> {
    const kv = this.deps.kv;
    const runs = await listTuneRuns(kv);
    const resumable = runs.filter(isTuneResumable);
    const items: StorageItem[] = [];
    for (const r of runs) {
      const { bytes, count } = await tuneCheckpointBytes(kv, r.id);
      if (!count) continue;
      const training = r.id === this.tuningId || (await this.deps.locks?.isHeld(r.id)) === true;
      const adapter = (await loadTuneFiles(kv, r.id))?.length;
      items.push({
        kind: 'checkpoints', id: r.id, name: `checkpoints of ${r.modelName} · ${String(r.request.method)} · ${r.datasetName}`, bytes,
        detail: !adapter
          ? `everything this run learned (${r.step} steps) is lost: it has no adapter to keep; only its metrics stay`
          : isTuneResumable(r)
            ? `the run can no longer resume from step ${r.step}; its metrics and adapter stay`
            : `the run is ${r.status}; its metrics and adapter stay`,
        blockedBy: training ? 'it is training now' : null,
      });
    }
    const neededBy = (pred: (r: TuneRunRecord) => boolean) => {
      const r = resumable.find(pred);
      return r ? `run ${r.id} needs it to resume (step ${r.step} of ${r.totalSteps})` : null;
    };
    for (const m of await listModels(kv)) {
      items.push({ kind: 'model', id: m.id, name: m.name, bytes: m.storedBytes, detail: 'import it again to use it', blockedBy: neededBy((r) => r.modelId === m.id) });
    }
    for (const d of await listDatasets(kv)) {
      items.push({ kind: 'dataset', id: d.id, name: d.name, bytes: d.bytes, detail: `${d.summary.rows.toLocaleString('en')} rows; choose the file again to use it`, blockedBy: neededBy((r) => tuneDatasetIds(r).includes(d.id)) });
    }
    return items.sort((a, b) => b.bytes - a.bytes);
  }

  async deleteTuneCheckpoints(runId: string): Promise<void> {
    if (runId === this.tuningId || (await this.deps.locks?.isHeld(runId))) throw new TabtuneError(`run ${runId} is training; stop it before deleting its checkpoints`);
    await deleteTuneCheckpoints(this.deps.kv, runId);
  }

  /** Writes a checkpoint of the fine-tuning run after its current step (the tab is being hidden or closed). */
  async checkpointNow(): Promise<void> {
    if (this.generating?.what === 'a fine-tuning run') this.checkpointAsked = true;
  }

  async listTuneRuns(): Promise<TuneRunInfo[]> {
    const held = async (id: string) => (await this.deps.locks?.isHeld(id)) === true;
    const out: TuneRunInfo[] = [];
    for (const r of await listTuneRuns(this.deps.kv)) {
      const here = r.id === this.tuningId;
      const elsewhere = r.status === 'running' && !here && (await held(r.id));
      // A run still marked running that no tab holds was interrupted (a reload, a crash).
      const status = r.status === 'running' && !here && !elsewhere ? 'interrupted' : elsewhere ? 'elsewhere' : r.status;
      out.push({
        id: r.id, modelId: r.modelId, modelName: r.modelName, dataset: r.datasetName, method: String(r.request.method), status,
        step: r.step, totalSteps: r.totalSteps, best: r.best, history: r.history, evals: r.evals as unknown as EvalInfo[], samples: r.samples,
        resumable: isTuneResumable(r) && status !== 'elsewhere', hasFiles: r.status === 'done' || r.status === 'stopped', error: r.error, updatedAt: r.updatedAt,
        settings: settingsOf(r),
      });
    }
    return out;
  }

  async deleteTuneRun(runId: string): Promise<void> {
    if (await this.deps.locks?.isHeld(runId)) throw new TabtuneError(`run ${runId} is training; stop it before deleting`);
    await deleteTuneRun(this.deps.kv, runId);
  }

  /** A run's metrics as CSV: one row per step, with the validation loss where it was checked. */
  async tuneRunMetrics(runId: string): Promise<string> {
    const r = await loadTuneRun(this.deps.kv, runId);
    if (!r) throw new TabtuneError(`no kept run "${runId}"`, { field: 'run' });
    return metricsCsv(r.history, r.evals as unknown as MetricEval[]);
  }

  /**
   * A whole run as one file (a zip): run.json (settings, the datasets it names, full metrics and
   * outcome), metrics.csv, and the adapter it finished with. Checkpoints stay behind: an imported
   * run is a record to read and to use the adapter of, not one to resume.
   */
  async exportTuneRun(runId: string): Promise<{ name: string; bytes: Uint8Array }> {
    const r = await loadTuneRun(this.deps.kv, runId);
    if (!r) throw new TabtuneError(`no kept run "${runId}"`, { field: 'run' });
    const enc = new TextEncoder();
    const req = r.request as { datasetId?: string; validationFile?: { datasetId?: string }; testFile?: { datasetId?: string } };
    const datasets = [];
    for (const id of [req.datasetId, req.validationFile?.datasetId, req.testFile?.datasetId]) {
      const d = id ? await loadDatasetRecord(this.deps.kv, id) : undefined;
      if (d) datasets.push({ id: d.id, name: d.name, bytes: d.bytes, options: d.options, split: d.split, summary: d.summary });
    }
    const files: [string, Uint8Array][] = [
      ['run.json', enc.encode(JSON.stringify({ format: RUN_FILE_FORMAT, schema: r.schema, run: { ...r, latestCheckpoint: null }, datasets }, null, 1))],
      ['metrics.csv', enc.encode(metricsCsv(r.history, r.evals as unknown as MetricEval[]))],
    ];
    for (const f of (await loadTuneFiles(this.deps.kv, runId)) ?? []) files.push([`adapter/${f.name}`, f.bytes]);
    return { name: `${runId}.tabtune-run.zip`, bytes: zipFiles(files, new Date()) };
  }

  /** A run file made by exportTuneRun, kept again (under a new id if the old one is taken). */
  async importTuneRun(file: Blob, name = 'run.zip'): Promise<TuneRunInfo> {
    const entries = await unzipFiles(new Uint8Array(await file.arrayBuffer()), name);
    const json = entries.get('run.json');
    if (!json) throw new DataError(`${name} has no run.json; it is not a tabtune run file`, { file: name });
    let parsed: { format?: string; schema?: number; run?: TuneRunRecord };
    try {
      parsed = JSON.parse(new TextDecoder().decode(json));
    } catch (e) {
      throw new DataError(`${name}: run.json is not valid JSON (${(e as Error).message})`, { file: name, field: 'run.json' });
    }
    if (parsed.format !== RUN_FILE_FORMAT || !parsed.run) throw new DataError(`${name}: run.json is not a tabtune run (format ${JSON.stringify(parsed.format)})`, { file: name, field: 'format' });
    const run = migrateTuneRun(parsed.run, name);
    const taken = await loadTuneRun(this.deps.kv, run.id).catch(() => undefined);
    const id = taken ? `${run.id}-imported-${Date.now().toString(36)}` : run.id;
    const files = [...entries].filter(([k]) => k.startsWith('adapter/')).map(([k, bytes]) => ({ name: k.slice('adapter/'.length), bytes }));
    if (files.length) await saveTuneFiles(this.deps.kv, id, files);
    await saveTuneRun(this.deps.kv, { ...run, id, latestCheckpoint: null, status: run.status === 'running' || run.status === 'paused' ? 'stopped' : run.status });
    return (await this.listTuneRuns()).find((x) => x.id === id)!;
  }

  /** A kept run's scale-out recipe, made again from its kept data (its model must be loaded). */
  async tuneRunRecipe(runId: string): Promise<{ name: string; bytes: Uint8Array }> {
    this.requireIdleModel();
    return this.library.tuneRunRecipe(runId);
  }

  /** The files a finished run gave, kept with it. */
  async tuneRunFiles(runId: string): Promise<{ name: string; bytes: Uint8Array }[]> {
    return (await loadTuneFiles(this.deps.kv, runId)) ?? [];
  }

  private releasePause(): void {
    this.tuningPause?.resolve();
    this.tuningPause = null;
  }

  async saveDataset(req: SaveDatasetRequest, onProgress: (p: DataProgress) => void): Promise<DatasetInfo> {
    return this.library.saveDataset(req, quiet(onProgress));
  }

  async listDatasets(): Promise<DatasetInfo[]> {
    return this.library.listDatasets();
  }

  async updateDataset(id: string, change: Partial<Pick<DatasetInfo, 'options' | 'split' | 'summary'>>): Promise<DatasetInfo> {
    return this.library.updateDataset(id, change);
  }

  async deleteDataset(id: string): Promise<void> {
    return this.library.deleteDataset(id);
  }

  async inspectDataset(req: DatasetRequest, onProgress: (p: DataProgress) => void): Promise<DatasetPreview> {
    this.requireIdleModel();
    return this.library.inspectDataset(req, quiet(onProgress));
  }

  async estimateTune(req: TuneEstimateRequest): Promise<TuneEstimate> {
    return this.library.estimateTune(req);
  }

  async settingSpecs(): Promise<SettingSpec[]> {
    // A fine-tuning run's defaults, where they differ from training from scratch; lora_alpha follows r (2 x r) in the page.
    const fine: Record<string, number> = FINETUNE_DEFAULTS;
    const train = Object.entries(TRAIN_SPEC).map(([name, f]): SettingSpec => ({ section: 'train', name, ...f, default: fine[name] ?? f.default }));
    const lora = Object.entries(LORA_SPEC).map(([name, f]): SettingSpec => ({ section: 'lora', name, ...f }));
    const rslora: SettingSpec = { section: 'lora', name: 'use_rslora', default: false, help: 'Rank-stabilised LoRA: scale the update by lora_alpha / sqrt(r) instead of lora_alpha / r, so higher ranks keep learning.' };
    return [...train, ...lora, rslora];
  }

  async exportMerged(modelId: string, adapterId: string | null = null): Promise<{ name: string; bytes: Uint8Array }> {
    this.requireIdleModel();
    return this.library.exportMerged(modelId, adapterId);
  }

  async applyAdapter(modelId: string, files: FileEntry[]): Promise<AdapterInfo> {
    this.requireIdleModel();
    return this.library.applyAdapter(modelId, await adapterFiles(files));
  }

  async addAdapter(modelId: string, from: FileEntry[] | { runId: string }): Promise<AdapterInfo> {
    this.requireIdleModel();
    if (Array.isArray(from)) return this.library.addAdapter(modelId, await adapterFiles(from));
    return this.library.addRunAdapter(modelId, from.runId);
  }

  async listAdapters(modelId: string): Promise<AdapterInfo[]> {
    return this.library.listAdapters(modelId);
  }

  async useAdapter(modelId: string, adapterId: string | null): Promise<AdapterInfo | null> {
    this.requireIdleModel();
    return this.library.useAdapter(modelId, adapterId);
  }

  async removeAdapter(modelId: string, adapterId: string): Promise<void> {
    this.requireIdleModel();
    this.library.removeAdapter(modelId, adapterId);
  }

  /** Holds the fine-tuning run after its current step, with everything it learned, until resumeFinetune(). */
  async pauseFinetune(): Promise<void> {
    if (!this.generating || this.tuningPause) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.tuningPause = { promise, resolve };
  }

  async resumeFinetune(): Promise<void> {
    this.releasePause();
  }

  /** Loading, importing or deleting replaces the held model: never under a running generation. */
  private requireIdleModel(): void {
    if (!this.current) throw new BackendError('init() must choose a backend first');
    if (this.generating) throw new TabtuneError(`${this.generating.what} is running; stop it before changing or deleting models`);
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
      modelLoads: this.library.modelLoads,
    };
  }

  private toInfo(run: RunRecord, elsewhere = false): RunInfo {
    const interrupted = run.status === 'running' && this.active?.id !== run.id && !elsewhere;
    const preset = isPresetName(run.preset) ? DEMO_PRESETS[run.preset] : null;
    return {
      id: run.id, preset: run.preset, presetLabel: preset?.label ?? run.preset, dataset: run.dataset,
      model: run.model, train: run.train, numParams: run.numParams,
      status: elsewhere ? 'elsewhere' : interrupted ? 'interrupted' : run.status, step: run.step,
      resumable: !elsewhere && isResumable(run), history: run.history,
      backend: run.backend, error: run.error, updatedAt: run.updatedAt,
    };
  }
}

/**
 * The contract between the UI thread and the worker. Types only: plain data crosses,
 * never tensors. Progress comes back through a callback (a comlink proxy in the browser).
 */
import type { GPT2Config, TrainConfig } from '../core/config';
import type { StepReport } from '../core/train/trainer';
import type { MemoryEstimate } from '../core/train/memory';
import type { RunStatus } from '../store/runs';

export type { GPT2Config, TrainConfig, StepReport, RunStatus };

export type BackendName = 'webgpu' | 'webgl' | 'wasm' | 'cpu';
export type BackendRequest = BackendName | 'auto';

export interface BackendFallback {
  backend: BackendName;
  reason: string;
}

export interface BackendReport {
  /** The backend tfjs runs on, read from tf.getBackend() inside the worker. */
  name: BackendName;
  requested: BackendRequest;
  /** Human description of the device: the GPU adapter, WebGL renderer, or WASM features. */
  adapter: string;
  /** A CPU-emulated GPU (SwiftShader, llvmpipe, a WebGPU fallback adapter). */
  software: boolean;
  /** Every backend tried before this one and why it was passed over, in order. */
  fallbacks: BackendFallback[];
  /** Set when the GPU device was lost after start; training stops with this reason. */
  lost: string | null;
  /**
   * The largest buffer the device binds (WebGPU's maxStorageBufferBindingSize and maxBufferSize);
   * tables larger than this are split. Null where the backend has no such limit.
   */
  maxBufferBytes: number | null;
  tfjsVersion: string;
}

export interface RunInfo {
  id: string;
  preset: string;
  presetLabel: string;
  dataset: string;
  model: GPT2Config;
  train: TrainConfig;
  numParams: number;
  /**
   * 'interrupted': stored as running, but no one is training it (a reload or a crash).
   * 'elsewhere': another tab is training it now.
   */
  status: RunStatus | 'interrupted' | 'elsewhere';
  /** Step of the latest complete checkpoint. */
  step: number;
  /** Stopped before its last step, with a checkpoint to continue from. */
  resumable: boolean;
  history: StepReport[];
  backend: string;
  error: string | null;
  updatedAt: number;
}

export interface TrainRequest {
  preset: string;
  /** The training text and where it came from (shown in errors). */
  text: string;
  dataset: string;
  /** Override of the preset's total steps. */
  steps?: number;
}

export interface PresetInfo {
  name: string;
  label: string;
  help: string;
  /** Total steps of a new run. */
  steps: number;
  numParams: number;
}

export interface Diagnostics {
  /** tf.getBackend() as the worker sees it. */
  backend: string;
  numTensors: number;
  numBytes: number;
  /** Keys of checkpoint records found in storage. */
  checkpoints: string[];
  /** Whether the code answering runs in a worker scope rather than a window. */
  inWorker: boolean;
  /** Times a model was built from its weights (an import or a load) by this Studio; switching adapters adds none. */
  modelLoads: number;
}

/** A file of a model folder, as the page got it (a File from a picker or a drop). */
export interface FileEntry {
  path: string;
  file: Blob;
}

export interface ModelInfo {
  id: string;
  name: string;
  arch: 'gpt2' | 'llama';
  numParams: number;
  /** float32 bytes the parameters take on the device. */
  paramBytes: number;
  /** Bytes of the weights as stored in the files (their dtype). */
  fileBytes: number;
  dtypes: string[];
  vocabSize: number;
  contextLength: number;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  hasTokenizer: boolean;
  chatTemplate: boolean;
  files: string[];
  /** Kept in IndexedDB: loads on the next visit without the files. */
  stored: boolean;
  storedBytes: number;
}

export interface ModelProgress {
  phase: 'reading' | 'storing' | 'loading' | 'ready';
  done: number;
  total: number;
  detail: string;
}

export interface SamplingOptions {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

export interface GenerateRequest {
  modelId: string;
  prompt: string;
  options: Partial<SamplingOptions>;
  /** Wrap the prompt as a user message with the model's chat template (instruct models). */
  chat?: boolean;
  /**
   * A held adapter (its id) to generate with, or null for the base; the active adapter is put
   * back afterwards. Absent: the model as it is (the active adapter, if any).
   */
  adapter?: string | null;
}

export interface GeneratedPiece {
  id: number;
  /** The whole continuation decoded so far. */
  text: string;
}

export interface GenerateResult {
  text: string;
  /** The exact text the model read: the prompt, or the chat template's rendering of it. */
  input: string;
  ids: number[];
  promptTokens: number;
  stopReason: 'stop' | 'length' | 'context' | 'cancelled';
  firstTokenMs: number;
  tokensPerSec: number;
}

export type FinetuneMethod = 'lora' | 'qlora' | 'bitfit' | 'prompt' | 'full';

export type DatasetFormatName = 'text' | 'prompt_completion' | 'alpaca' | 'chat' | 'sharegpt' | 'preference' | 'classification';

/** Where data comes from, and how its rows are read. */
export interface DataSource {
  /** The data file's name (named in errors and reports; its extension tells the kind). */
  dataset: string;
  /** Its contents: a dataset kept in this browser, a File (read in the worker as it streams), the bytes, or pasted text (JSON Lines when it starts with "{"). */
  datasetId?: string;
  file?: Blob;
  bytes?: Uint8Array;
  text?: string;
  /** Row formats: detected from the columns unless given; a mapping from role to column. */
  format?: DatasetFormatName;
  mapping?: Record<string, string>;
  template?: 'none' | 'alpaca' | 'chatml' | 'model';
}

/** A dataset kept in this browser: the file, how its rows are read, its split. */
export interface DatasetInfo {
  id: string;
  name: string;
  bytes: number;
  options: { format?: DatasetFormatName; mapping?: Record<string, string>; template?: 'none' | 'alpaca' | 'chatml' | 'model' };
  split: { validation: number; test: number; seed: number };
  summary: { format: string; rows: number; rejected: number };
  createdAt: number;
}

export interface SaveDatasetRequest extends DataSource {
  split: { validation: number; test: number; seed: number };
  summary: { format: string; rows: number; rejected: number };
}

export interface DataProgress {
  done: number;
  total: number;
  rows: number;
}

export interface DatasetRequest extends DataSource {
  modelId: string;
  blockSize?: number;
  batchSize?: number;
  validation?: number;
  test?: number;
  packing?: boolean;
  previewRows?: number;
}

export interface DatasetPreview {
  file: string;
  kind: string;
  format: string;
  template: string;
  columns: string[];
  rows: number;
  rejected: { line: number; reason: string }[];
  rejectedCount: number;
  truncated: number[];
  truncatedCount: number;
  tokens: number;
  histogram: { edges: number[]; counts: number[] };
  bytes: number;
  lines: number;
  blockSize: number;
  /** The first rows and the exact text they train on: the prompt part is masked from the loss when learning answers only. */
  preview: { line: number; fields: Record<string, unknown>; prompt: string; completion: string; promptTokens: number; completionTokens: number }[];
  /** Why the rows cannot be read as they are (a format or column mapping to choose), with `columns` to choose from; null when they can. */
  problem: string | null;
  /** Steps per epoch at this batch and block, and the time they take here (forward passes timed, backward estimated). */
  estimate: { stepsPerEpoch: number; msPerStep: number | null; secondsPerEpoch: number | null };
}

export interface FinetuneRequest extends DataSource {
  modelId: string;
  /** Loss on completions only (default true); off trains on the prompts too. */
  completionOnly?: boolean;
  /** Rows packed end to end into full blocks, instead of one padded row per sequence. */
  packing?: boolean;
  /** Held-out fractions (rows shuffled with the run's seed; text: its end). */
  validation?: number;
  test?: number;
  /** A separate validation file (read with the same format options) instead of the validation fraction. */
  validationFile?: { dataset: string; datasetId?: string; file?: Blob; bytes?: Uint8Array; text?: string };
  /** A separate test file, scored once at the end, instead of the test fraction. */
  testFile?: { dataset: string; datasetId?: string; file?: Blob; bytes?: Uint8Array; text?: string };
  method: FinetuneMethod;
  /** LoRA settings by PEFT's names (r, lora_alpha, lora_dropout, target_modules, use_rslora). */
  lora?: Record<string, unknown>;
  /** Trainer settings by their config names (steps, learning_rate, batch_size, block_size, ...). */
  train?: Record<string, unknown>;
  numVirtualTokens?: number;
  /** QLoRA: the frozen base in 8 bits or 4 (NF4). */
  bits?: 8 | 4;
  /** Validation every N steps (0: never); early stopping after `patience` evaluations without an improvement of minDelta. */
  evalEvery?: number;
  patience?: number;
  minDelta?: number;
  /** General text whose perplexity is measured before and after (the forgetting check). */
  forgetting?: { name: string; text: string };
  /**
   * Greedy continuations of fixed prompts before training, every `every` steps and at the end,
   * kept with the run. No prompts: the first held-out prompts (or the held-out text's start).
   */
  samples?: { every: number; prompts?: string[]; maxNewTokens?: number };
  /**
   * Exact match on the test part (rows with prompt and completion): greedy answers to at most this
   * many test prompts, from the base before training and from the tuned model after. 0: not scored.
   */
  exactMatch?: number;
}

/** A setting of the Train form: its config name, section, range or choices, default and help. */
export interface SettingSpec {
  section: 'train' | 'lora';
  name: string;
  /** The value used when the field is left empty. */
  'default': number | string | boolean;
  min?: number;
  max?: number;
  integer?: boolean;
  choices?: readonly string[];
  help: string;
}

/** The settings that decide how much memory a fine-tuning run needs. */
export interface TuneEstimateRequest {
  modelId: string;
  method: FinetuneMethod;
  r: number;
  /** LoRA's target_modules ('all-linear', names; undefined: the model's default). */
  targetModules?: 'all-linear' | string[];
  bits?: 8 | 4;
  virtualTokens?: number;
  batch: number;
  block: number;
}

/** Bytes a run needs on the device, by part (the core's estimate), and why it will not fit here (null: it fits). */
export interface TuneEstimate extends MemoryEstimate {
  backend: string;
  /** This GPU's largest buffer (null: no such limit). */
  limit: number | null;
  refusal: string | null;
}

export interface ExactMatchInfo {
  correct: number;
  total: number;
  rate: number;
  examples: { prompt: string; expected: string; got: string; ok: boolean }[];
}

/** Where the exact-match scoring is: the base before training, or the tuned model after. */
export interface ScoreProgress {
  what: 'before' | 'after';
  done: number;
  total: number;
}

/** What the model wrote for a watched prompt at a step of a run (step 0: before training). */
export interface SampleInfo {
  step: number;
  prompt: string;
  text: string;
  /** The model as the run kept it, at the end (after early stopping, the weights of the best step). */
  final?: boolean;
}

export interface DatasetReportInfo {
  file: string;
  kind: string;
  format: string;
  template: string;
  accepted: number;
  /** The first rejected rows (line and reason) and how many there are in all. */
  rejected: { line: number; reason: string }[];
  rejectedCount: number;
  truncated: number;
  tokens: number;
  split: { train: number; validation: number; test: number; seed: number };
  validationFile?: string;
  testFile?: string;
}

export interface EvalInfo {
  step: number;
  trainLoss: number;
  valLoss: number;
  improved: boolean;
  stop: boolean;
  overfitting: boolean;
  best: { step: number; valLoss: number };
}

export interface FinetuneResult {
  /** The run as kept in this browser (its metrics, checkpoints and files). */
  runId: string;
  steps: number;
  trainable: number;
  total: number;
  dataset: DatasetReportInfo;
  /** PEFT's files for adapter methods (LoRA, QLoRA, prompt tuning), ready to save. */
  files: { name: string; bytes: Uint8Array }[];
  /** The same files as one zip archive (null when there are none). */
  zip: Uint8Array | null;
  /** Device bytes before and after quantizing the base (QLoRA). */
  quantized: { bits: 8 | 4; bytesBefore: number; bytesAfter: number } | null;
  evals: EvalInfo[];
  best: { step: number; valLoss: number } | null;
  stoppedEarly: boolean;
  cancelled: boolean;
  restoredBest: boolean;
  forgetting: { file: string; perplexityBefore: number; perplexityAfter: number } | null;
  /** Loss on the test split, after training (null without one). */
  testLoss: number | null;
  /** What the model wrote for the watched prompts, before training and as it went. */
  samples: SampleInfo[];
  /** Exact match on the test part, before and after (when asked for). */
  /** before: the base (null when a resumed run did not keep it); after: null when the run was stopped. */
  exactMatch: { before: ExactMatchInfo | null; after: ExactMatchInfo | null } | null;
  /** The scale-out recipe as a zip: the training split as JSONL, a TRL + PEFT script, an Axolotl YAML. */
  recipe: Uint8Array;
}

/** This site's storage in the browser: bytes used, the quota, whether it is persistent. */
export interface StorageInfo {
  usage: number;
  quota: number;
  persisted: boolean | null;
}

/** One thing kept in this browser and the room it takes: what "free space" offers to delete. */
export interface StorageItem {
  kind: 'checkpoints' | 'model' | 'dataset';
  /** The run (checkpoints), model or dataset id. */
  id: string;
  name: string;
  bytes: number;
  /** What deleting it costs the person, in a few words. */
  detail: string;
  /** Why it cannot be deleted now (a resumable run needs it), or null. */
  blockedBy: string | null;
}

/** What a tab training a run tells the other tabs, on the BroadcastChannel "tabtune-runs". */
export interface RunBroadcast {
  /** The Studio (the tab) that trains it: a tab ignores its own runs. */
  tab: string;
  type: 'step' | 'end';
  runId: string;
  step: number;
  loss: number;
  totalSteps: number;
}

/** A fine-tuning run kept in this browser. */
export interface TuneRunInfo {
  id: string;
  modelId: string;
  modelName: string;
  dataset: string;
  method: string;
  /** interrupted: it was running when the page went away; elsewhere: another tab trains it now. */
  status: 'running' | 'paused' | 'stopped' | 'done' | 'failed' | 'interrupted' | 'elsewhere';
  /** The step of its latest checkpoint. */
  step: number;
  totalSteps: number;
  best: { step: number; valLoss: number } | null;
  history: StepReport[];
  evals: EvalInfo[];
  samples: SampleInfo[];
  resumable: boolean;
  hasFiles: boolean;
  error: string | null;
  updatedAt: number;
  /** The settings it was started with (no data inside: the kept dataset by id), to run it again with changes. */
  settings: TuneRunSettings;
}

/** A run's settings as it was asked for: the Train form's fields by their config names. */
export interface TuneRunSettings {
  method: FinetuneMethod;
  bits: 8 | 4 | null;
  lora: Record<string, unknown>;
  train: Record<string, unknown>;
  numVirtualTokens: number | null;
  datasetId: string | null;
  validation: number | null;
  test: number | null;
  evalEvery: number | null;
  patience: number | null;
  exactMatch: number | null;
  samples: { every: number; prompts?: string[] } | null;
  completionOnly: boolean | null;
  packing: boolean | null;
  format: DatasetFormatName | null;
  mapping: Record<string, string> | null;
  template: 'none' | 'alpaca' | 'chatml' | 'model' | null;
  forgetting: boolean;
}

/** An adapter held for the loaded model's base. */
export interface AdapterInfo {
  /** Its id among the held adapters (a run's adapter: the run id). */
  id: string;
  name: string;
  peftType: 'LORA' | 'PROMPT_TUNING';
  r: number | null;
  targetModules: string[];
  baseModel: string | null;
  /** The fine-tuning run it came from, if any. */
  runId: string | null;
  /** Generation uses it now. */
  active: boolean;
  trainable: number;
  total: number;
}

/** One measurement `npm run bench` asks the studio's worker for (src/core/bench.ts does the work). */
export type BenchRequest =
  | { kind: 'matmul'; n: number; reps?: number }
  | { kind: 'train'; shape: string; method: 'lora' | 'qlora' | 'full'; warmup: number; steps: number }
  | { kind: 'generate'; shape: string; promptTokens: number; newTokens: number; context?: number }
  /** A random GPT-2 of the shape kept in IndexedDB as the studio keeps an import, then loaded back (timed). */
  | { kind: 'load'; shape: string };

/** What a bench request measured, as plain numbers (src/core/bench.ts's results, or the load's). */
export type BenchResult = Record<string, unknown> & { kind: BenchRequest['kind']; backend: string };

export interface StudioApi {
  /** Runs one benchmark measurement on this worker's backend: for `npm run bench`, not the studio's screens. */
  bench(req: BenchRequest): Promise<BenchResult>;
  /** Chooses the backend (once); returns what was chosen and why. */
  init(request: BackendRequest): Promise<BackendReport>;
  /** The backend in use now: it changes when a lost GPU device forces a fallback. */
  backend(): Promise<BackendReport>;
  /** The demo runs on offer, with their sizes. */
  presets(): Promise<PresetInfo[]>;
  getRun(preset: string): Promise<RunInfo | null>;
  /** Trains the preset's run, resuming from its latest checkpoint when it is unfinished. */
  train(req: TrainRequest, onStep: (r: StepReport) => void): Promise<RunInfo>;
  /** Stops after the current step and writes a checkpoint (a pause: train() resumes). */
  stop(): Promise<void>;
  deleteRun(preset: string): Promise<void>;
  diagnostics(): Promise<Diagnostics>;

  /** Architecture, size, vocabulary, context, chat template: from config.json and headers only. */
  inspectModelFiles(files: FileEntry[]): Promise<ModelInfo>;
  /** Reads the weights (progress), stores them in IndexedDB, and holds the model ready. */
  importModel(files: FileEntry[], onProgress: (p: ModelProgress) => void): Promise<ModelInfo>;
  /** The same, for a Hugging Face repository ("owner/name" or its URL) on the hub or a mirror. */
  inspectHubModel(repo: string, endpoint?: string): Promise<ModelInfo>;
  /** Downloads (resuming an interrupted download), stores and holds a hub model. */
  importHubModel(repo: string, endpoint: string | undefined, onProgress: (p: ModelProgress) => void): Promise<ModelInfo>;
  listModels(): Promise<ModelInfo[]>;
  /** A stored model onto the device. */
  loadModel(id: string, onProgress: (p: ModelProgress) => void): Promise<ModelInfo>;
  deleteModel(id: string): Promise<void>;
  /** Logits at every position; `logits` is positions x vocabulary, row by row. */
  logits(modelId: string, input: { ids?: number[]; text?: string }): Promise<{ ids: number[]; logits: Float32Array; vocabSize: number }>;
  generate(req: GenerateRequest, onPiece: (p: GeneratedPiece) => void): Promise<GenerateResult>;
  /** Ends the generation in progress after its current token. */
  stopGenerating(): Promise<void>;
  /**
   * Fine-tunes the loaded model on text: the method is attached to it (so generation afterwards
   * uses the result), and an adapter's PEFT files come back.
   */
  finetuneModel(
    req: FinetuneRequest,
    onStep: (r: StepReport) => void,
    onEval?: (e: EvalInfo) => void,
    onSample?: (s: SampleInfo) => void,
    onScore?: (p: ScoreProgress) => void,
  ): Promise<FinetuneResult>;
  /** The held model with its fine-tuning folded in, as a zipped Hugging Face folder. */
  /** The held model with an adapter folded in: `adapterId` (a run's id, or a held adapter's), else the active one. */
  exportMerged(modelId: string, adapterId?: string | null): Promise<{ name: string; bytes: Uint8Array }>;
  /** Keeps a data file in this browser with how it is read and split (a run can then name it by id). */
  saveDataset(req: SaveDatasetRequest, onProgress: (p: DataProgress) => void): Promise<DatasetInfo>;
  listDatasets(): Promise<DatasetInfo[]>;
  updateDataset(id: string, change: Partial<Pick<DatasetInfo, 'options' | 'split' | 'summary'>>): Promise<DatasetInfo>;
  deleteDataset(id: string): Promise<void>;
  /** Reads a data file as the run will (streamed, in the worker) and reports what it will teach. */
  inspectDataset(req: DatasetRequest, onProgress: (p: DataProgress) => void): Promise<DatasetPreview>;
  /** The memory a fine-tuning run of these settings needs on the held model, and whether it fits. */
  estimateTune(req: TuneEstimateRequest): Promise<TuneEstimate>;
  /** Every training and LoRA setting with its default, range and help text (the same the CLI and validation use). */
  settingSpecs(): Promise<SettingSpec[]>;
  /** A PEFT adapter (its two files, a folder, or a zip of them) applied to the held model's base: held and made active. */
  applyAdapter(modelId: string, files: FileEntry[]): Promise<AdapterInfo>;
  /**
   * Holds another adapter for the loaded model's base, not active: from PEFT files (two files, a
   * folder, a zip) or from a kept fine-tuning run. Several are held at once.
   */
  addAdapter(modelId: string, from: FileEntry[] | { runId: string }): Promise<AdapterInfo>;
  /** The adapters held for the loaded model (a run trained in this session among them). */
  listAdapters(modelId: string): Promise<AdapterInfo[]>;
  /** Makes a held adapter active, or none (null: the base), without reading the base again. */
  useAdapter(modelId: string, adapterId: string | null): Promise<AdapterInfo | null>;
  /** Lets go of a held adapter and its memory. */
  removeAdapter(modelId: string, adapterId: string): Promise<void>;
  /** Tells this Studio's runs apart from other tabs' on the runs channel. */
  tabId(): Promise<string>;
  /** Storage used and allowed (null where the platform does not say, as in Node). */
  storageInfo(): Promise<StorageInfo | null>;
  /** Everything kept here that can be deleted to make room, biggest first. */
  storageItems(): Promise<StorageItem[]>;
  /** Deletes a run's checkpoints and best weights (it keeps its metrics, samples and adapter, but can no longer resume). */
  deleteTuneCheckpoints(runId: string): Promise<void>;
  /** Continues a kept fine-tuning run from its latest checkpoint. */
  resumeTuneRun(
    runId: string,
    onStep: (r: StepReport) => void,
    onEval?: (e: EvalInfo) => void,
    onSample?: (s: SampleInfo) => void,
    onScore?: (p: ScoreProgress) => void,
  ): Promise<FinetuneResult>;
  /** The fine-tuning runs kept in this browser, newest first. */
  listTuneRuns(): Promise<TuneRunInfo[]>;
  deleteTuneRun(runId: string): Promise<void>;
  /** A run's metrics as CSV (one row per step). */
  tuneRunMetrics(runId: string): Promise<string>;
  /** A whole run as one file: settings, dataset references, metrics and its adapter (a zip). */
  exportTuneRun(runId: string): Promise<{ name: string; bytes: Uint8Array }>;
  /** A run file made by exportTuneRun, kept in this browser. */
  importTuneRun(file: Blob, name?: string): Promise<TuneRunInfo>;
  /** The files a finished run gave (its PEFT adapter). */
  tuneRunFiles(runId: string): Promise<{ name: string; bytes: Uint8Array }[]>;
  /** A kept run's scale-out recipe (training split, TRL + PEFT script, Axolotl config), zipped; its model must be loaded. */
  tuneRunRecipe(runId: string): Promise<{ name: string; bytes: Uint8Array }>;
  /** Writes a checkpoint of the fine-tuning run after its current step (the tab is being hidden or closed). */
  checkpointNow(): Promise<void>;
  /** Holds the fine-tuning run after its current step (weights and optimizer state kept in memory). */
  pauseFinetune(): Promise<void>;
  resumeFinetune(): Promise<void>;
}

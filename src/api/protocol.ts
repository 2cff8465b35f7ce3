/**
 * The contract between the UI thread and the worker. Types only: plain data crosses,
 * never tensors. Progress comes back through a callback (a comlink proxy in the browser).
 */
import type { GPT2Config, TrainConfig } from '../core/config';
import type { StepReport } from '../core/train/trainer';
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
}

export interface StudioApi {
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
}

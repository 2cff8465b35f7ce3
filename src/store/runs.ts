import type { GPT2Config, TrainConfig } from '../core/config';
import type { StepReport, TrainerCheckpoint } from '../core/train/trainer';
import type { KV } from './kv';

import { migrate, SCHEMA } from './schema';

/** The version demo-run records are written with (see schema.ts for every kind and the migrations). */
export const SCHEMA_VERSION = SCHEMA.run;

export type RunStatus = 'running' | 'stopped' | 'done' | 'failed';

export interface RunRecord {
  schema: number;
  id: string;
  preset: string;
  dataset: string;
  /** Token count and hash of the training data; a resume must bring the same data. */
  dataFingerprint: string;
  model: GPT2Config;
  train: TrainConfig;
  numParams: number;
  status: RunStatus;
  /** The step of the latest complete checkpoint (0 before the first). */
  step: number;
  latestCheckpoint: string | null;
  /** Metrics up to `step`: what a resumed run continues from. */
  history: StepReport[];
  backend: string;
  error: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface CheckpointRecord extends TrainerCheckpoint {
  schema: number;
  runId: string;
  savedAt: number;
}

const runKey = (id: string) => `run/${id}`;
const ckptPrefix = (id: string) => `ckpt/${id}/`;
const ckptKey = (id: string, step: number) => ckptPrefix(id) + String(step).padStart(9, '0');

/** How many complete checkpoints of a run are kept: the latest and the one before it. */
export const KEEP_CHECKPOINTS = 2;

export async function loadRun(kv: KV, id: string): Promise<RunRecord | undefined> {
  const r = await kv.get<RunRecord>(runKey(id));
  return r && migrate<RunRecord>('run', r, `run ${id}`).record;
}

export async function saveRun(kv: KV, run: RunRecord): Promise<void> {
  await kv.set(runKey(run.id), { ...run, updatedAt: Date.now() });
}

/**
 * Writes a checkpoint completely, and only then points the run at it, so a crash in the
 * middle leaves the previous checkpoint as the latest. Older ones beyond KEEP_CHECKPOINTS go last.
 */
export async function saveCheckpoint(kv: KV, run: RunRecord, ckpt: TrainerCheckpoint, history: StepReport[]): Promise<RunRecord> {
  const key = ckptKey(run.id, ckpt.step);
  const record: CheckpointRecord = { ...ckpt, schema: SCHEMA_VERSION, runId: run.id, savedAt: Date.now() };
  await kv.set(key, record);
  const next: RunRecord = { ...run, step: ckpt.step, latestCheckpoint: key, history: history.filter((h) => h.step <= ckpt.step) };
  await saveRun(kv, next);
  // Keep the new checkpoint and the one it replaces; anything else of this run (older ones,
  // orphans of an interrupted write) goes. Decided by the pointers, not by key order.
  const keep = new Set([key, run.latestCheckpoint]);
  for (const k of await listCheckpoints(kv, run.id)) if (!keep.has(k)) await kv.del(k);
  return next;
}

/** A run that stopped before its last step and has a checkpoint to continue from. */
export function isResumable(run: RunRecord): boolean {
  return run.step > 0 && run.step < run.train.steps && run.latestCheckpoint !== null;
}

export async function loadCheckpoint(kv: KV, key: string): Promise<CheckpointRecord | undefined> {
  const c = await kv.get<CheckpointRecord>(key);
  return c && migrate<CheckpointRecord>('checkpoint', c, `checkpoint ${key}`).record;
}

/** Checkpoint keys of a run, oldest first. */
export async function listCheckpoints(kv: KV, runId: string): Promise<string[]> {
  const prefix = ckptPrefix(runId);
  return (await kv.keys()).filter((k) => k.startsWith(prefix)).sort();
}

export async function deleteRun(kv: KV, runId: string): Promise<void> {
  for (const k of await listCheckpoints(kv, runId)) await kv.del(k);
  await kv.del(runKey(runId));
}

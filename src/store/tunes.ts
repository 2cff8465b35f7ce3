import type { NamedWeights } from '../core/model/base';
import type { FinetuneCheckpoint } from '../core/train/finetune';
import type { StepReport } from '../core/train/trainer';
import type { KV } from './kv';
import { migrate, SCHEMA } from './schema';

/**
 * Fine-tuning runs of a person's own models, kept so that a reload or a crash loses nothing: the
 * run's settings (with the stored model and datasets it names), its full metric history, its last
 * checkpoints (trainable weights, optimizer moments, step, data order, what early stopping has
 * seen), the weights of its best validation loss, and the adapter it finished with. Each
 * checkpoint is written completely before the run points at it.
 */
export type TuneStatus = 'running' | 'paused' | 'stopped' | 'done' | 'failed';

export interface TuneRunRecord {
  schema: number;
  id: string;
  modelId: string;
  /** The stored dataset it trains on (schema 2). */
  datasetId: string | null;
  modelName: string;
  /** The request as given, with its data named by stored dataset ids (no bytes). */
  request: Record<string, unknown>;
  datasetName: string;
  totalSteps: number;
  status: TuneStatus;
  /** Step of the latest complete checkpoint (0 before the first). */
  step: number;
  latestCheckpoint: string | null;
  /** Validation loss and step of the best checkpoint's weights. */
  best: { step: number; valLoss: number } | null;
  history: StepReport[];
  evals: Record<string, unknown>[];
  /** The dataset report and the run's outcome, once known. */
  report: Record<string, unknown> | null;
  outcome: Record<string, unknown> | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface TuneCheckpointRecord extends FinetuneCheckpoint {
  schema: number;
  runId: string;
  savedAt: number;
}

const runKey = (id: string) => `tune/${id}`;
const ckptPrefix = (id: string) => `tuneckpt/${id}/`;
const ckptKey = (id: string, step: number) => ckptPrefix(id) + String(step).padStart(9, '0');
const bestKey = (id: string) => `tunebest/${id}`;
const adapterKey = (id: string) => `tuneadapter/${id}`;

/** Complete checkpoints kept per run: the latest and the one before it (plus the best, apart). */
export const KEEP_TUNE_CHECKPOINTS = 2;

export async function saveTuneRun(kv: KV, run: TuneRunRecord): Promise<TuneRunRecord> {
  const next = { ...run, updatedAt: Date.now() };
  await kv.set(runKey(run.id), next);
  return next;
}

export async function loadTuneRun(kv: KV, id: string): Promise<TuneRunRecord | undefined> {
  const stored = await kv.get<TuneRunRecord>(runKey(id));
  if (!stored) return undefined;
  const { record, changed } = migrate<TuneRunRecord>('tune', stored, `run ${id}`);
  if (changed) await kv.set(runKey(id), record);
  return record;
}

/** A run record from elsewhere (a run file) in this version's shape. */
export function migrateTuneRun(r: unknown, where: string): TuneRunRecord {
  return migrate<TuneRunRecord>('tune', r, where).record;
}

export async function listTuneRuns(kv: KV): Promise<TuneRunRecord[]> {
  const out: TuneRunRecord[] = [];
  for (const k of await kv.keys()) {
    if (!k.startsWith('tune/')) continue;
    // Older records are upgraded; one from a newer tabtune is left as it is, unlisted.
    const r = await loadTuneRun(kv, k.slice('tune/'.length)).catch(() => undefined);
    if (r) out.push(r);
  }
  return out.sort((a, b) => b.updatedAt - a.updatedAt);
}

/**
 * Writes the checkpoint, then points the run at it (with the history up to its step), then lets
 * go of checkpoints older than the kept ones: a crash at any point leaves a complete latest.
 */
export async function saveTuneCheckpoint(
  kv: KV,
  run: TuneRunRecord,
  c: FinetuneCheckpoint,
  history: StepReport[],
  evals: Record<string, unknown>[],
): Promise<TuneRunRecord> {
  const key = ckptKey(run.id, c.trainer.step);
  const record: TuneCheckpointRecord = { ...c, schema: SCHEMA.tuneCheckpoint, runId: run.id, savedAt: Date.now() };
  await kv.set(key, record);
  const step = c.trainer.step;
  const next = await saveTuneRun(kv, {
    ...run,
    step,
    latestCheckpoint: key,
    history: history.filter((h) => h.step <= step),
    evals: evals.filter((e) => (e.step as number) <= step),
  });
  const keys = (await kv.keys()).filter((k) => k.startsWith(ckptPrefix(run.id))).sort();
  const keep = new Set(keys.filter((k) => k <= key).slice(-KEEP_TUNE_CHECKPOINTS));
  for (const k of keys) if (!keep.has(k)) await kv.del(k);
  return next;
}

export async function loadTuneCheckpoint(kv: KV, key: string): Promise<TuneCheckpointRecord | undefined> {
  const c = await kv.get<TuneCheckpointRecord>(key);
  return c && migrate<TuneCheckpointRecord>('tuneCheckpoint', c, `checkpoint ${key}`).record;
}

/** Checkpoint keys of a run, newest first. */
export async function listTuneCheckpoints(kv: KV, id: string): Promise<string[]> {
  return (await kv.keys()).filter((k) => k.startsWith(ckptPrefix(id))).sort().reverse();
}

/** The weights of the best validation loss so far, then the run's note of it. */
export async function saveTuneBest(kv: KV, run: TuneRunRecord, weights: NamedWeights, best: { step: number; valLoss: number }): Promise<TuneRunRecord> {
  await kv.set(bestKey(run.id), { schema: SCHEMA.tuneCheckpoint, weights, ...best });
  return saveTuneRun(kv, { ...run, best });
}

export async function loadTuneBest(kv: KV, id: string): Promise<{ weights: NamedWeights; step: number } | null> {
  const b = await kv.get<{ weights: NamedWeights; step: number }>(bestKey(id));
  return b ? { weights: b.weights, step: b.step } : null;
}

/** The files a finished run gave (a PEFT adapter folder), kept to download again. */
export async function saveTuneFiles(kv: KV, id: string, files: { name: string; bytes: Uint8Array }[]): Promise<void> {
  await kv.set(adapterKey(id), files);
}

export async function loadTuneFiles(kv: KV, id: string): Promise<{ name: string; bytes: Uint8Array }[] | null> {
  return (await kv.get<{ name: string; bytes: Uint8Array }[]>(adapterKey(id))) ?? null;
}

/** The record first (so a half-deleted run is never listed), then all it owns. */
export async function deleteTuneRun(kv: KV, id: string): Promise<void> {
  await kv.del(runKey(id));
  for (const k of await kv.keys()) if (k.startsWith(ckptPrefix(id))) await kv.del(k);
  await kv.del(bestKey(id));
  await kv.del(adapterKey(id));
}

/** Steps trained but not yet in a checkpoint are lost on a crash; a run can resume from its latest checkpoint. */
export function isTuneResumable(r: TuneRunRecord): boolean {
  return r.status !== 'done' && r.latestCheckpoint !== null && r.step < r.totalSteps;
}

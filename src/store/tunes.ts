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
  /** Greedy continuations of fixed prompts at steps of the run (schema 3), so the change shows. */
  samples: TuneSample[];
  /** The dataset report and the run's outcome, once known. */
  report: Record<string, unknown> | null;
  outcome: Record<string, unknown> | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface TuneSample {
  step: number;
  prompt: string;
  text: string;
  final?: boolean;
}

export interface TuneCheckpointRecord extends FinetuneCheckpoint {
  schema: number;
  runId: string;
  savedAt: number;
}

const runKey = (id: string) => `tune/${id}`;
const ckptPrefix = (id: string) => `tuneckpt/${id}/`;
const ckptKey = (id: string, step: number) => ckptPrefix(id) + String(step).padStart(9, '0');
/** Beside each checkpoint, what pruning and the storage list need without reading it whole. */
const metaPrefix = (id: string) => `tuneckptmeta/${id}/`;
const metaOf = (key: string) => key.replace(/^tuneckpt\//, 'tuneckptmeta/');
interface CheckpointMeta {
  bestStep: number | null;
  bytes: number;
}
/** Best weights by their step: each kept checkpoint can find the best it knew (see saveTuneBest). */
const bestPrefix = (id: string) => `tunebest/${id}/`;
const bestKey = (id: string, step: number) => bestPrefix(id) + String(step).padStart(9, '0');
/** Schema-2 runs kept one best, under this key. */
const oldBestKey = (id: string) => `tunebest/${id}`;
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
  samples: TuneSample[] = run.samples,
): Promise<TuneRunRecord> {
  const key = ckptKey(run.id, c.trainer.step);
  const record: TuneCheckpointRecord = { ...c, schema: SCHEMA.tuneCheckpoint, runId: run.id, savedAt: Date.now() };
  await kv.set(key, record);
  await kv.set(metaOf(key), { bestStep: c.watch.best?.step ?? null, bytes: approxBytes(record) } satisfies CheckpointMeta);
  const step = c.trainer.step;
  const next = await saveTuneRun(kv, {
    ...run,
    step,
    latestCheckpoint: key,
    history: history.filter((h) => h.step <= step),
    evals: evals.filter((e) => (e.step as number) <= step),
    samples: samples.filter((x) => x.step <= step),
  });
  const keys = (await kv.keys()).filter((k) => k.startsWith(ckptPrefix(run.id))).sort();
  const keep = new Set(keys.filter((k) => k <= key).slice(-KEEP_TUNE_CHECKPOINTS));
  for (const k of keys) {
    if (keep.has(k)) continue;
    await kv.del(k);
    await kv.del(metaOf(k));
  }
  await pruneBests(kv, next);
  return next;
}

/** The best step a kept checkpoint knew: from its note, or (a checkpoint written before notes) from itself. */
async function checkpointBestStep(kv: KV, key: string): Promise<number | null> {
  const meta = await kv.get<CheckpointMeta>(metaOf(key));
  if (meta) return meta.bestStep;
  const c = await kv.get<TuneCheckpointRecord>(key);
  return c?.watch?.best?.step ?? null;
}

/**
 * Best weights no one can need: those that are neither the run's current best nor the best some
 * kept checkpoint knew (a resume from that checkpoint restores its own best, not one found after it).
 */
async function pruneBests(kv: KV, run: TuneRunRecord): Promise<void> {
  const id = run.id;
  const all = await kv.keys();
  const bests = all.filter((k) => k.startsWith(bestPrefix(id)) || k === oldBestKey(id)).sort();
  if (!bests.length) return;
  const wantedSteps = new Set<number>();
  if (run.best) wantedSteps.add(run.best.step);
  for (const k of all.filter((k) => k.startsWith(ckptPrefix(id)))) {
    const step = await checkpointBestStep(kv, k);
    if (step !== null) wantedSteps.add(step);
  }
  for (const k of bests) {
    // The one best of a schema-2 run is under the run's own key, with its step inside.
    const step = k === oldBestKey(id) ? ((await kv.get<{ step: number }>(k))?.step ?? -1) : Number(k.slice(bestPrefix(id).length));
    if (!wantedSteps.has(step)) await kv.del(k);
  }
}

export async function loadTuneCheckpoint(kv: KV, key: string): Promise<TuneCheckpointRecord | undefined> {
  const c = await kv.get<TuneCheckpointRecord>(key);
  return c && migrate<TuneCheckpointRecord>('tuneCheckpoint', c, `checkpoint ${key}`).record;
}

/** Checkpoint keys of a run, newest first. */
export async function listTuneCheckpoints(kv: KV, id: string): Promise<string[]> {
  return (await kv.keys()).filter((k) => k.startsWith(ckptPrefix(id))).sort().reverse();
}

/**
 * The weights of the best validation loss so far, then the run's note of it. Each best is kept
 * under its step, beside the ones the kept checkpoints knew: a best found after the latest
 * checkpoint must not take the place of the best that checkpoint would resume with.
 */
export async function saveTuneBest(kv: KV, run: TuneRunRecord, weights: NamedWeights, best: { step: number; valLoss: number }): Promise<TuneRunRecord> {
  await kv.set(bestKey(run.id, best.step), { schema: SCHEMA.tuneCheckpoint, weights, ...best });
  const next = await saveTuneRun(kv, { ...run, best });
  await pruneBests(kv, next);
  return next;
}

/** The best weights of the given step (the best a checkpoint knew), if they are kept. */
export async function loadTuneBest(kv: KV, id: string, step: number): Promise<NamedWeights | null> {
  const b = (await kv.get<{ weights: NamedWeights; step: number }>(bestKey(id, step))) ?? (await kv.get<{ weights: NamedWeights; step: number }>(oldBestKey(id)));
  return b && b.step === step ? b.weights : null;
}

/**
 * Lets go of a run's checkpoints and best weights to make room: the run keeps its settings,
 * metrics, samples and adapter, but can no longer be resumed.
 */
export async function deleteTuneCheckpoints(kv: KV, id: string): Promise<TuneRunRecord | undefined> {
  const run = await loadTuneRun(kv, id);
  // A run that never finished has no adapter: its checkpoints were all it had learned, and it says so.
  const unfinished = run && (run.status === 'running' || run.status === 'paused' || (run.status === 'failed' && !(await loadTuneFiles(kv, id))));
  // The run first stops pointing at its checkpoint, so a crash in between leaves no dangling name.
  const next =
    run &&
    (await saveTuneRun(kv, {
      ...run,
      latestCheckpoint: null,
      ...(unfinished ? { status: 'failed' as const, error: `its checkpoints were deleted to make room at step ${run.step}, before it finished: nothing of it can be resumed or downloaded` } : {}),
    }));
  for (const k of await kv.keys()) if (ownedCheckpointKey(k, id)) await kv.del(k);
  return next;
}

const ownedCheckpointKey = (k: string, id: string) => k.startsWith(ckptPrefix(id)) || k.startsWith(metaPrefix(id)) || k.startsWith(bestPrefix(id)) || k === oldBestKey(id);

/** How many bytes a run's checkpoints and best weights take (typed arrays counted by their length). */
export async function tuneCheckpointBytes(kv: KV, id: string): Promise<{ bytes: number; count: number }> {
  let bytes = 0;
  let count = 0;
  for (const k of await kv.keys()) {
    if (!ownedCheckpointKey(k, id) || k.startsWith(metaPrefix(id))) continue;
    // A checkpoint's size is in its note; a best (or a checkpoint written before notes) is measured.
    const meta = k.startsWith(ckptPrefix(id)) ? await kv.get<CheckpointMeta>(metaOf(k)) : undefined;
    bytes += meta ? meta.bytes : approxBytes(await kv.get(k));
    count++;
  }
  return { bytes, count };
}

/** The stored size of a value, roughly: typed arrays and strings by length, the rest small. */
export function approxBytes(v: unknown): number {
  if (v == null) return 0;
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (v instanceof ArrayBuffer) return v.byteLength;
  if (typeof v === 'string') return v.length * 2;
  if (typeof v !== 'object') return 8;
  let n = 0;
  for (const x of Array.isArray(v) ? v : Object.values(v as object)) n += approxBytes(x);
  return n;
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
  for (const k of await kv.keys()) if (ownedCheckpointKey(k, id)) await kv.del(k);
  await kv.del(adapterKey(id));
}

/** Steps trained but not yet in a checkpoint are lost on a crash; a run can resume from its latest checkpoint. */
export function isTuneResumable(r: TuneRunRecord): boolean {
  return r.status !== 'done' && r.latestCheckpoint !== null && r.step < r.totalSteps;
}

import type { KV } from './kv';
import { migrate, SCHEMA } from './schema';

const SCHEMA_VERSION = SCHEMA.dataset;

/**
 * Datasets kept in storage, as the file the person brought (in chunks), with how its rows are
 * read (format, column mapping, template) and its split (fractions and seed), so a run made from
 * it can be made again exactly. The record is written last: a dataset interrupted mid-save is
 * never listed.
 */
export const DATASET_CHUNK_BYTES = 8 * 1024 * 1024;

export interface DatasetOptions {
  format?: string;
  mapping?: Record<string, string>;
  template?: string;
}

export interface DatasetRecord {
  schema: number;
  id: string;
  /** The file's name: its extension tells how it is read. */
  name: string;
  bytes: number;
  chunks: number;
  options: DatasetOptions;
  split: { validation: number; test: number; seed: number };
  /** What reading it gave when it was saved (format, rows, rejected), for the list. */
  summary: { format: string; rows: number; rejected: number };
  createdAt: number;
}

const metaKey = (id: string) => `dataset/${id}`;
const chunkKey = (id: string, i: number) => `datasetchunk/${id}/${i}`;

/** Stores the file's bytes chunk by chunk as they are read, then the record. */
export async function saveDataset(
  kv: KV,
  record: Omit<DatasetRecord, 'schema' | 'chunks' | 'bytes' | 'createdAt'>,
  chunks: AsyncIterable<Uint8Array>,
): Promise<DatasetRecord> {
  await deleteDataset(kv, record.id);
  try {
    return await writeDataset(kv, record, chunks);
  } catch (e) {
    // A save that fails half-way (a full disk) takes its chunks with it: no orphans use the space.
    await deleteDataset(kv, record.id).catch(() => undefined);
    throw e;
  }
}

async function writeDataset(
  kv: KV,
  record: Omit<DatasetRecord, 'schema' | 'chunks' | 'bytes' | 'createdAt'>,
  chunks: AsyncIterable<Uint8Array>,
): Promise<DatasetRecord> {
  let n = 0;
  let bytes = 0;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    const out = new Uint8Array(pendingBytes);
    let at = 0;
    for (const p of pending) {
      out.set(p, at);
      at += p.length;
    }
    await kv.set(chunkKey(record.id, n++), out);
    pending = [];
    pendingBytes = 0;
  };
  for await (const c of chunks) {
    // Copied: the reader may reuse its buffer.
    pending.push(c.slice());
    pendingBytes += c.length;
    bytes += c.length;
    if (pendingBytes >= DATASET_CHUNK_BYTES) await flush();
  }
  if (pendingBytes || n === 0) await flush();
  const full: DatasetRecord = { ...record, schema: SCHEMA_VERSION, chunks: n, bytes, createdAt: Date.now() };
  await kv.set(metaKey(record.id), full);
  return full;
}

export async function listDatasets(kv: KV): Promise<DatasetRecord[]> {
  const out: DatasetRecord[] = [];
  for (const k of await kv.keys()) {
    if (!k.startsWith('dataset/')) continue;
    const r = await kv.get<DatasetRecord>(k);
    if (!r) continue;
    // Older records are upgraded on read; one from a newer tabtune stays unlisted.
    try {
      out.push(migrate<DatasetRecord>('dataset', r, k).record);
    } catch {
      continue;
    }
  }
  return out.sort((a, b) => a.createdAt - b.createdAt);
}

export async function loadDatasetRecord(kv: KV, id: string): Promise<DatasetRecord | undefined> {
  const r = await kv.get<DatasetRecord>(metaKey(id));
  return r && migrate<DatasetRecord>('dataset', r, `dataset ${id}`).record;
}

/** The stored file's chunks, in order, one at a time. */
export async function* datasetChunks(kv: KV, r: DatasetRecord): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < r.chunks; i++) {
    const c = await kv.get<Uint8Array>(chunkKey(r.id, i));
    if (!c) throw new Error(`dataset ${r.name} is missing chunk ${i}; delete it and bring the file again`);
    yield c;
  }
}

/** Updates how the rows are read and split (the bytes stay). */
export async function updateDataset(kv: KV, id: string, change: Partial<Pick<DatasetRecord, 'options' | 'split' | 'summary'>>): Promise<DatasetRecord | undefined> {
  const r = await loadDatasetRecord(kv, id);
  if (!r) return undefined;
  const next = { ...r, ...change };
  await kv.set(metaKey(id), next);
  return next;
}

/** The record first, so a half-deleted dataset is never listed, then its chunks. */
export async function deleteDataset(kv: KV, id: string): Promise<void> {
  await kv.del(metaKey(id));
  for (const k of await kv.keys()) if (k.startsWith(`datasetchunk/${id}/`)) await kv.del(k);
}

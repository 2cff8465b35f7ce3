import type { KV } from './kv';
import { migrate, SCHEMA } from './schema';

const SCHEMA_VERSION = SCHEMA.model;

/**
 * Models kept in storage so the next visit loads without the files: each parameter's bytes as
 * they were in the file (F32, F16 or BF16), in chunks that IndexedDB handles well; the small JSON
 * files (config, tokenizer, generation config) as text. The record listing them is written last,
 * so a model interrupted mid-import is never listed.
 */
export const MODEL_CHUNK_BYTES = 8 * 1024 * 1024;

export interface StoredTensor {
  name: string;
  dtype: string;
  shape: number[];
  byteLength: number;
  chunks: number;
}

export interface ModelRecord {
  schema: number;
  id: string;
  name: string;
  /** Small files by path (config.json, tokenizer.json, ...). */
  textFiles: string[];
  tensors: StoredTensor[];
  storedBytes: number;
  createdAt: number;
}

const metaKey = (id: string) => `model/${id}`;
const fileKey = (id: string, path: string) => `modelfile/${id}/${path}`;
const chunkKey = (id: string, tensor: string, i: number) => `modelchunk/${id}/${tensor}/${i}`;
/** Written after a tensor's last chunk: the tensor is complete, and an interrupted import can skip it. */
const doneKey = (id: string, tensor: string) => `modeltensor/${id}/${tensor}`;

export interface TensorBytes {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * Tensors of an import of `id` that was interrupted before its record was written: they are
 * complete in storage and need not be read again. Empty when the model is stored completely
 * (a new import of it starts over) or was never started.
 */
export async function resumableTensors(kv: KV, id: string): Promise<Map<string, StoredTensor>> {
  const out = new Map<string, StoredTensor>();
  if (await kv.get(metaKey(id))) return out;
  const prefix = `modeltensor/${id}/`;
  for (const k of await kv.keys()) {
    if (!k.startsWith(prefix)) continue;
    const t = await kv.get<StoredTensor>(k);
    if (t) out.set(t.name, t);
  }
  return out;
}

/**
 * Writes a model's files and tensors, then its record; calls onTensor after each tensor is stored.
 * Tensors in `already` (from resumableTensors) are kept as they are and not expected again.
 */
export async function saveModel(
  kv: KV, id: string, name: string, textFiles: Record<string, string>, tensors: AsyncIterable<TensorBytes>,
  onTensor?: (storedBytes: number) => void, already: Map<string, StoredTensor> = new Map(),
): Promise<ModelRecord> {
  if (already.size === 0) await deleteModel(kv, id);
  else await kv.del(metaKey(id));
  for (const [path, text] of Object.entries(textFiles)) await kv.set(fileKey(id, path), text);
  const stored: StoredTensor[] = [...already.values()];
  let storedBytes = stored.reduce((n, t) => n + t.byteLength, 0);
  for await (const t of tensors) {
    const chunks = Math.max(1, Math.ceil(t.bytes.byteLength / MODEL_CHUNK_BYTES));
    for (let i = 0; i < chunks; i++) {
      // slice() copies: the chunk is stored on its own, not as a view of a larger buffer.
      await kv.set(chunkKey(id, t.name, i), t.bytes.slice(i * MODEL_CHUNK_BYTES, (i + 1) * MODEL_CHUNK_BYTES));
    }
    const entry: StoredTensor = { name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.bytes.byteLength, chunks };
    await kv.set(doneKey(id, t.name), entry);
    stored.push(entry);
    storedBytes += t.bytes.byteLength;
    onTensor?.(storedBytes);
  }
  const record: ModelRecord = {
    schema: SCHEMA_VERSION, id, name, textFiles: Object.keys(textFiles), tensors: stored, storedBytes, createdAt: Date.now(),
  };
  await kv.set(metaKey(id), record);
  return record;
}

export async function listModels(kv: KV): Promise<ModelRecord[]> {
  const out: ModelRecord[] = [];
  for (const k of await kv.keys()) {
    if (!k.startsWith('model/')) continue;
    const r = await kv.get<ModelRecord>(k);
    if (!r) continue;
    // Older records are upgraded on read; one from a newer tabtune stays unlisted.
    try {
      out.push(migrate<ModelRecord>('model', r, k).record);
    } catch {
      continue;
    }
  }
  return out.sort((a, b) => a.createdAt - b.createdAt);
}

export async function loadModelRecord(kv: KV, id: string): Promise<ModelRecord | undefined> {
  return kv.get<ModelRecord>(metaKey(id));
}

export async function loadTextFile(kv: KV, id: string, path: string): Promise<string | undefined> {
  return kv.get<string>(fileKey(id, path));
}

/** One tensor's bytes, reassembled from its chunks. */
export async function loadTensorBytes(kv: KV, id: string, t: StoredTensor): Promise<Uint8Array> {
  const out = new Uint8Array(t.byteLength);
  let at = 0;
  for (let i = 0; i < t.chunks; i++) {
    const chunk = await kv.get<Uint8Array>(chunkKey(id, t.name, i));
    if (!chunk) throw new Error(`model ${id} is missing chunk ${i} of ${t.name}; delete and import it again`);
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  if (at !== t.byteLength) throw new Error(`model ${id}: ${t.name} has ${at} bytes stored, expected ${t.byteLength}`);
  return out;
}

/** Removes the record first, so a half-deleted model is never listed, then everything it owned. */
export async function deleteModel(kv: KV, id: string): Promise<void> {
  await kv.del(metaKey(id));
  const prefixes = [`modelfile/${id}/`, `modelchunk/${id}/`, `modeltensor/${id}/`];
  for (const k of await kv.keys()) if (prefixes.some((p) => k.startsWith(p))) await kv.del(k);
}

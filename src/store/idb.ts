import { createStore, del, get, keys, set } from 'idb-keyval';
import { StorageFullError } from '../core/errors';
import type { KV } from './kv';

/** IndexedDB through idb-keyval: the only place in tabtune that touches IndexedDB. */
export function idbKV(dbName = 'tabtune', storeName = 'kv'): KV {
  const store = createStore(dbName, storeName);
  return {
    get: <T>(key: string) => get<T>(key, store),
    set: async (key, value) => {
      try {
        await set(key, value, store);
      } catch (e) {
        // A transaction that hits the quota is rolled back whole: what was saved before stays as it was.
        if (isQuotaError(e)) throw new StorageFullError(FULL, { field: 'storage' });
        // Chromium reports a disk that fills while it writes a large value as an I/O error.
        if (isWriteError(e)) throw new StorageFullError(`${FULL} (The browser said: ${(e as Error).message}.)`, { field: 'storage' });
        throw e;
      }
    },
    del: (key) => del(key, store),
    keys: async () => (await keys(store)).map(String),
  };
}

export const FULL =
  "this browser's storage for tabtune is full; nothing saved before was changed. Delete old runs, datasets or models below to make room (or let the browser give this site more space).";

function isWriteError(e: unknown): boolean {
  return /IOError|write blobs|disk full|no space/i.test(String((e as Error)?.message ?? ''));
}

function isQuotaError(e: unknown): boolean {
  const name = (e as { name?: string })?.name ?? '';
  const inner = (e as { inner?: { name?: string } })?.inner?.name ?? '';
  return name === 'QuotaExceededError' || inner === 'QuotaExceededError' || /quota/i.test(String((e as Error)?.message ?? ''));
}

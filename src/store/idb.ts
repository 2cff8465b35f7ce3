import { createStore, del, get, keys, set } from 'idb-keyval';
import type { KV } from './kv';

/** IndexedDB through idb-keyval: the only place in tabtune that touches IndexedDB. */
export function idbKV(dbName = 'tabtune', storeName = 'kv'): KV {
  const store = createStore(dbName, storeName);
  return {
    get: <T>(key: string) => get<T>(key, store),
    set: (key, value) => set(key, value, store),
    del: (key) => del(key, store),
    keys: async () => (await keys(store)).map(String),
  };
}

/**
 * The key-value surface the store is written against. In the browser it is IndexedDB
 * (idb.ts, through idb-keyval); in Node it is a folder of files (fs.ts); in tests of the
 * pure logic, a Map. Values are structured-clonable: plain objects and typed arrays.
 */
export interface KV {
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  del(key: string): Promise<void>;
  keys(): Promise<string[]>;
}

/** An in-memory KV with structured-clone semantics, so it behaves like IndexedDB for the callers. */
export function memoryKV(): KV {
  const m = new Map<string, unknown>();
  return {
    async get<T>(key: string) {
      return m.has(key) ? (structuredClone(m.get(key)) as T) : undefined;
    },
    async set(key, value) {
      m.set(key, structuredClone(value));
    },
    async del(key) {
      m.delete(key);
    },
    async keys() {
      return [...m.keys()];
    },
  };
}

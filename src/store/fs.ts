import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { StorageFullError } from '../core/errors';
import type { KV } from './kv';

/**
 * The same KV as IndexedDB, kept as one file per key in a folder, for the Node CLI.
 * v8.serialize is the structured clone that IndexedDB uses, so typed arrays survive as they are.
 * A value is written to a temporary file and renamed, so a crash never leaves half a record.
 */
export function fsKV(dir: string): KV {
  const file = (key: string) => join(dir, encodeURIComponent(key) + '.v8');
  return {
    async get<T>(key: string) {
      try {
        return deserialize(await readFile(file(key))) as T;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
    },
    async set(key, value) {
      await mkdir(dir, { recursive: true });
      const tmp = file(key) + '.tmp';
      try {
        await writeFile(tmp, serialize(value));
      } catch (e) {
        await rm(tmp, { force: true });
        // The old value (if any) is untouched: only the temporary file was being written.
        if ((e as NodeJS.ErrnoException).code === 'ENOSPC' || (e as NodeJS.ErrnoException).code === 'EDQUOT') {
          throw new StorageFullError(`the disk holding ${dir} is full; nothing saved before was changed. Free some space, or delete old runs there.`, { file: dir });
        }
        throw e;
      }
      await rename(tmp, file(key));
    },
    async del(key) {
      await rm(file(key), { force: true });
    },
    async keys() {
      try {
        return (await readdir(dir)).filter((f) => f.endsWith('.v8')).map((f) => decodeURIComponent(f.slice(0, -3)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw e;
      }
    },
  };
}

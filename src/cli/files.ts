import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { ConfigError } from '../core/errors';
import { join, resolve } from 'node:path';
import type { DatasetBuilder } from '../core/data/dataset';
import { readParquet } from '../core/data/parquet';
import type { ModelFiles } from '../core/model/hf';

/** A model folder on disk, read lazily: headers first, then one tensor's bytes at a time. */
export function folderFiles(dir: string): ModelFiles {
  const root = resolve(dir);
  const full = (p: string) => join(root, p);
  return {
    name: root,
    async has(p) {
      try {
        return (await stat(full(p))).isFile();
      } catch {
        return false;
      }
    },
    async size(p) {
      return (await stat(full(p))).size;
    },
    text: (p) => readFile(full(p), 'utf8'),
    async read(p, start, end) {
      const fh = await open(full(p), 'r');
      try {
        const buf = new Uint8Array(end - start);
        let done = 0;
        while (done < buf.length) {
          const { bytesRead } = await fh.read(buf, done, buf.length - done, start + done);
          if (bytesRead === 0) throw new Error(`${p}: unexpected end of file at byte ${start + done}`);
          done += bytesRead;
        }
        return buf;
      } finally {
        await fh.close();
      }
    },
  };
}

/** A file's bytes in chunks, as they are read: a large file is never one buffer. */
export function readChunks(path: string, onChunk: (bytes: Uint8Array) => void, chunk = 1 << 20): void {
  let fd: number;
  try {
    fd = openSync(resolve(path), 'r');
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, { file: path });
  }
  try {
    const buf = new Uint8Array(chunk);
    for (;;) {
      const n = readSync(fd, buf, 0, chunk, null);
      if (n <= 0) break;
      onChunk(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

/** A data file into a dataset builder: text formats in chunks, Parquet by ranges, one row group at a time. */
export async function feedBuilder(path: string, builder: DatasetBuilder): Promise<void> {
  if (builder.kind !== 'parquet') return readChunks(path, (b) => builder.push(b));
  let fd: number;
  try {
    fd = openSync(resolve(path), 'r');
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, { file: path });
  }
  try {
    const size = fstatSync(fd).size;
    const slice = async (start: number, end = size) => {
      const buf = new Uint8Array(end - start);
      readSync(fd, buf, 0, buf.length, start);
      return buf.buffer;
    };
    const { columns } = await readParquet(builder.file, { byteLength: size, slice }, (rows, cols) => builder.addRows(rows, cols));
    builder.addRows([], columns, size);
  } finally {
    closeSync(fd);
  }
}

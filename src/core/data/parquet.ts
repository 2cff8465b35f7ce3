/**
 * Parquet, as Hugging Face datasets ship them: read row group by row group (hyparquet, with
 * snappy, gzip, zstd, brotli and LZ4), so only one group's rows are in memory at a time. Rows are
 * named by their number in the file (1-based) where text formats name a line.
 */
import { parquetMetadataAsync, parquetReadObjects, type AsyncBuffer } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { DataError } from '../errors';
import type { Row } from './parse';

/** A file read by ranges: a Blob in the browser, a file handle in Node. */
export interface RandomAccess {
  byteLength: number;
  slice(start: number, end?: number): Promise<ArrayBuffer>;
}

/** Parquet files begin and end with these four bytes. */
const MAGIC = [0x50, 0x41, 0x52, 0x31]; // "PAR1"

export async function readParquet(
  file: string,
  source: RandomAccess,
  onRows: (rows: Row[], columns: string[]) => void,
  onProgress: (rowsDone: number, rowsTotal: number) => void = () => undefined,
): Promise<{ rows: number; columns: string[] }> {
  if (source.byteLength < 12) throw new DataError(`${file} is ${source.byteLength ? 'too short to be' : 'empty, not'} a Parquet file`, { file });
  const head = new Uint8Array(await source.slice(0, 4));
  const tail = new Uint8Array(await source.slice(source.byteLength - 4));
  if (!MAGIC.every((b, i) => head[i] === b && tail[i] === b)) {
    throw new DataError(`${file} is not a Parquet file (it does not begin and end with PAR1); save it as Parquet, or give it the extension of its real format`, { file });
  }
  const buffer = source as AsyncBuffer;
  let metadata;
  try {
    metadata = await parquetMetadataAsync(buffer);
  } catch (e) {
    throw new DataError(`${file}: the Parquet footer cannot be read: ${(e as Error).message}`, { file });
  }
  const columns = metadata.schema.slice(1).filter((s, i, all) => isTopLevel(all, i)).map((s) => s.name);
  const total = Number(metadata.num_rows);
  let start = 0;
  for (const group of metadata.row_groups) {
    const end = start + Number(group.num_rows);
    let objects: Record<string, unknown>[];
    try {
      objects = await parquetReadObjects({ file: buffer, metadata, rowStart: start, rowEnd: end, compressors });
    } catch (e) {
      throw new DataError(`${file}: rows ${start + 1} to ${end} cannot be read: ${(e as Error).message}`, { file, line: start + 1 });
    }
    onRows(objects.map((fields, i) => ({ line: start + i + 1, fields: plain(fields) as Record<string, unknown> })), columns);
    start = end;
    onProgress(start, total);
  }
  return { rows: total, columns };
}

/** Schema elements directly under the root: a nested column's children are counted in its num_children. */
function isTopLevel(schema: { num_children?: number }[], index: number): boolean {
  let i = 0;
  while (i < schema.length) {
    if (i === index) return true;
    i += 1 + descendants(schema, i);
  }
  return false;
}

function descendants(schema: { num_children?: number }[], at: number): number {
  let n = 0;
  let kids = schema[at].num_children ?? 0;
  let i = at + 1;
  while (kids-- > 0) {
    const d = descendants(schema, i);
    n += 1 + d;
    i += 1 + d;
  }
  return n;
}

/** Parquet values as JSON-like ones: BigInt to number (or string past 2^53), dates to ISO text. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object' && !(v instanceof Uint8Array)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

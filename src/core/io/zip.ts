/**
 * A zip archive of a few files, stored without compression (safetensors' float data hardly
 * compresses), so an adapter or a model folder downloads as one file that every unzip tool,
 * Python's zipfile and the hub's upload page read. ZIP's own layout: a local header before each
 * file, a central directory, an end record; UTF-8 names (flag bit 11); CRC-32 of each file.
 * Archives past 4 GiB (ZIP64) are refused by name.
 */
import { ConfigError } from '../errors';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function dosTime(d: Date): { time: number; date: number } {
  const year = Math.max(1980, d.getFullYear());
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
    date: ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

/** The files, in order, as one zip archive. */
export function zipFiles(files: Iterable<[string, Uint8Array]>, mtime = new Date(1980, 0, 1)): Uint8Array {
  const enc = new TextEncoder();
  const { time, date } = dosTime(mtime);
  const entries = [...files].map(([name, bytes]) => ({ name: enc.encode(name), bytes, crc: crc32(bytes), offset: 0 }));
  let size = 22;
  for (const e of entries) size += 30 + e.name.length + e.bytes.length + 46 + e.name.length;
  if (size > 0xffffffff || entries.length > 0xffff) throw new ConfigError('the archive would pass 4 GiB; download the files one by one', { field: 'zip' });
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  const u16 = (v: number) => {
    view.setUint16(at, v, true);
    at += 2;
  };
  const u32 = (v: number) => {
    view.setUint32(at, v >>> 0, true);
    at += 4;
  };
  const header = (e: (typeof entries)[number]) => {
    u16(20); // version needed: 2.0
    u16(0x0800); // UTF-8 names
    u16(0); // stored
    u16(time);
    u16(date);
    u32(e.crc);
    u32(e.bytes.length);
    u32(e.bytes.length);
    u16(e.name.length);
    u16(0); // extra
  };
  for (const e of entries) {
    e.offset = at;
    u32(0x04034b50);
    header(e);
    out.set(e.name, at);
    at += e.name.length;
    out.set(e.bytes, at);
    at += e.bytes.length;
  }
  const dirStart = at;
  for (const e of entries) {
    u32(0x02014b50);
    u16(20); // made by: 2.0
    header(e);
    u16(0); // comment
    u16(0); // disk
    u16(0); // internal attributes
    u32(0); // external attributes
    u32(e.offset);
    out.set(e.name, at);
    at += e.name.length;
  }
  const dirSize = at - dirStart;
  u32(0x06054b50);
  u16(0);
  u16(0);
  u16(entries.length);
  u16(entries.length);
  u32(dirSize);
  u32(dirStart);
  u16(0);
  return out;
}

/**
 * The files of a zip archive (stored, or deflated as most zip tools write them; inflated with
 * the platform's DecompressionStream). Folders inside are kept in the names.
 */
export async function unzipFiles(zip: Uint8Array, file = 'archive.zip'): Promise<Map<string, Uint8Array>> {
  const v = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const bad = (why: string) => new ConfigError(`${file} is not a zip archive this can read: ${why}`, { file });
  // The end record sits in the last 22 bytes plus a comment of up to 64 KiB.
  let end = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (v.getUint32(i, true) === 0x06054b50) {
      end = i;
      break;
    }
  }
  if (end < 0) throw bad('no end-of-archive record');
  const count = v.getUint16(end + 10, true);
  let at = v.getUint32(end + 16, true);
  const out = new Map<string, Uint8Array>();
  const dec = new TextDecoder();
  for (let i = 0; i < count; i++) {
    if (at + 46 > zip.length || v.getUint32(at, true) !== 0x02014b50) throw bad(`entry ${i + 1} of the central directory is damaged`);
    const method = v.getUint16(at + 10, true);
    const crc = v.getUint32(at + 16, true);
    const packed = v.getUint32(at + 20, true);
    const size = v.getUint32(at + 24, true);
    const nameLen = v.getUint16(at + 28, true);
    const local = v.getUint32(at + 42, true);
    const name = dec.decode(zip.subarray(at + 46, at + 46 + nameLen));
    at += 46 + nameLen + v.getUint16(at + 30, true) + v.getUint16(at + 32, true);
    if (name.endsWith('/')) continue;
    if (packed === 0xffffffff || size === 0xffffffff) throw bad(`${name} is in ZIP64 form (over 4 GiB)`);
    if (v.getUint32(local, true) !== 0x04034b50) throw bad(`${name}'s header is damaged`);
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    const raw = zip.subarray(start, start + packed);
    let bytes: Uint8Array;
    if (method === 0) bytes = raw;
    else if (method === 8) bytes = await inflateRaw(raw);
    else throw bad(`${name} uses compression method ${method}; only stored and deflated entries are read`);
    if (bytes.length !== size || crc32(bytes) !== crc) throw bad(`${name} fails its CRC check (the archive is damaged)`);
    out.set(name, bytes);
  }
  return out;
}

async function inflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as BlobPart]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

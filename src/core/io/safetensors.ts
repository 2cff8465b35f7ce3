/**
 * The safetensors format, read and written by tabtune itself: an 8-byte little-endian header
 * length N, N bytes of JSON ({ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__ }),
 * then one data buffer that the tensors tile exactly. Floating-point tensors (F32, F16, BF16, F64)
 * read as Float32Array. Every check names the file and, where there is one, the tensor.
 */
import { TabtuneError } from '../errors';

export class SafetensorsError extends TabtuneError {
  override name = 'SafetensorsError';
}

/** Bytes per element of every dtype the format defines. */
export const DTYPE_SIZES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

/** The largest header accepted: real headers are kilobytes; this bounds what a bad file can make us parse. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte offsets relative to the start of the data buffer. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  metadata: Record<string, string>;
  /** In the order they lie in the data buffer. */
  tensors: TensorEntry[];
  /** Where the data buffer starts in the file: 8 + N. */
  dataStart: number;
}

/** The header length from a file's first 8 bytes, checked against the file size. */
export function headerLength(first8: Uint8Array, fileSize: number, file: string): number {
  if (first8.byteLength < 8 || fileSize < 8) throw new SafetensorsError(`${file} is ${fileSize} bytes: too short to be safetensors`, { file });
  const dv = new DataView(first8.buffer, first8.byteOffset, 8);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(`${file} declares a ${n}-byte header, over the ${MAX_HEADER_BYTES}-byte limit`, { file });
  const len = Number(n);
  if (8 + len > fileSize) throw new SafetensorsError(`${file} declares a ${len}-byte header but the file has only ${fileSize - 8} bytes after the length`, { file });
  return len;
}

/**
 * Parses and validates the header. `headerBytes` is the N bytes after the length; `fileSize`
 * is the whole file's, so the data buffer can be checked without reading it.
 */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new SafetensorsError(`${file}: the header is not valid UTF-8 JSON (${(e as Error).message})`, { file });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SafetensorsError(`${file}: the header must be a JSON object`, { file });
  }
  const dataStart = 8 + headerBytes.byteLength;
  const dataLength = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: TensorEntry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null) throw new SafetensorsError(`${file}: __metadata__ must be an object of strings`, { file, field: name });
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new SafetensorsError(`${file}: __metadata__.${k} must be a string`, { file, field: `__metadata__.${k}` });
        metadata[k] = v;
      }
      continue;
    }
    const bad = (why: string) => new SafetensorsError(`${file}: tensor ${name} ${why}`, { file, field: name });
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== 'object' || t === null) throw bad('is not an object');
    if (typeof t.dtype !== 'string' || !(t.dtype in DTYPE_SIZES)) throw bad(`has unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`has an invalid shape ${JSON.stringify(t.shape)}`);
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
      throw bad(`has invalid data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (end > dataLength) throw bad(`ends at byte ${end}, past the ${dataLength}-byte data buffer`);
    const count = (t.shape as number[]).reduce((a, b) => a * b, 1);
    const want = count * DTYPE_SIZES[t.dtype];
    if (end - begin !== want) throw bad(`has ${end - begin} bytes but shape [${t.shape}] of ${t.dtype} needs ${want}`);
    tensors.push({ name, dtype: t.dtype, shape: t.shape as number[], begin, end });
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const t of tensors) {
    if (t.begin < cursor) throw new SafetensorsError(`${file}: tensor ${t.name} overlaps the tensor before it (starts at ${t.begin}, previous ends at ${cursor})`, { file, field: t.name });
    if (t.begin > cursor) throw new SafetensorsError(`${file}: tensor ${t.name} leaves a gap (starts at ${t.begin}, previous ends at ${cursor})`, { file, field: t.name });
    cursor = t.end;
  }
  if (cursor !== dataLength) throw new SafetensorsError(`${file}: the tensors cover ${cursor} of the ${dataLength} data bytes`, { file });
  return { file, metadata, tensors, dataStart };
}

/** Header of a whole file held in memory. */
export function readHeader(bytes: Uint8Array, file: string): SafetensorsHeader {
  const n = headerLength(bytes.subarray(0, 8), bytes.byteLength, file);
  return parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength, file);
}

/** Decodes one tensor's bytes (exactly end - begin of them) to float32. */
export function decodeTensor(entry: TensorEntry, raw: Uint8Array, file: string): Float32Array {
  const n = entry.shape.reduce((a, b) => a * b, 1);
  if (raw.byteLength !== entry.end - entry.begin) {
    throw new SafetensorsError(`${file}: tensor ${entry.name} got ${raw.byteLength} bytes, expected ${entry.end - entry.begin}`, { file, field: entry.name });
  }
  // Copy into an aligned buffer: a tensor may start at any byte of the file.
  const aligned = raw.slice().buffer;
  switch (entry.dtype) {
    case 'F32':
      return new Float32Array(aligned, 0, n);
    case 'F64':
      return Float32Array.from(new Float64Array(aligned, 0, n));
    case 'F16': {
      const src = new Uint16Array(aligned, 0, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f16ToF32(src[i]);
      return out;
    }
    case 'BF16': {
      const src = new Uint16Array(aligned, 0, n);
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return new Float32Array(bits.buffer);
    }
    default:
      throw new SafetensorsError(`${file}: tensor ${entry.name} is ${entry.dtype}; only floating-point tensors (F32, F16, BF16, F64) can be loaded as weights`, { file, field: entry.name });
  }
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export interface NamedArray {
  shape: number[];
  data: Float32Array;
}

/** Reads every tensor of an in-memory file as float32, with its metadata. */
export function readSafetensors(bytes: Uint8Array, file: string): { metadata: Record<string, string>; tensors: Record<string, NamedArray> } {
  const header = readHeader(bytes, file);
  const tensors: Record<string, NamedArray> = {};
  for (const t of header.tensors) {
    const raw = bytes.subarray(header.dataStart + t.begin, header.dataStart + t.end);
    tensors[t.name] = { shape: t.shape.slice(), data: decodeTensor(t, raw, file) };
  }
  return { metadata: header.metadata, tensors };
}

/** Writes float32 tensors in name order, the header padded with spaces to 8 bytes as the reference writer does. */
export function writeSafetensors(tensors: Record<string, NamedArray>, metadata: Record<string, string> = {}): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const { shape, data } = tensors[name];
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== data.length) throw new SafetensorsError(`tensor ${name} has ${data.length} values but shape [${shape}]`, { field: name });
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  const unpadded = new TextEncoder().encode(json).byteLength;
  json += ' '.repeat((8 - (unpadded % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const name of names) {
    const d = tensors[name].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}

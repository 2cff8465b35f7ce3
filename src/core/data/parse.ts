/**
 * Reading data files as rows, chunk by chunk: JSONL, a JSON array, CSV/TSV (RFC 4180 quoting,
 * fields spanning lines) and plain text. Bytes go in as they arrive, so a large file never has to
 * be one string; every row remembers the line it started on, and a bad row is set aside with its
 * line and reason while every good row is kept. A byte-order mark is dropped, CRLF is read as LF,
 * and a line that is not valid UTF-8 is rejected by line number rather than silently mangled.
 */
import { DataError } from '../errors';

export type FileKind = 'jsonl' | 'json' | 'csv' | 'tsv' | 'text' | 'parquet';

export interface Row {
  /** 1-based line the row starts on (for a JSON array, the line of the element's opening brace). */
  line: number;
  fields: Record<string, unknown>;
}

export interface Rejected {
  line: number;
  reason: string;
}

export interface Parsed {
  file: string;
  kind: FileKind;
  rows: Row[];
  rejected: Rejected[];
  /** Column names in first-seen order. */
  columns: string[];
  lines: number;
}

/** The kind a file name implies; text for anything unknown. */
export function kindOf(file: string): FileKind {
  const ext = file.toLowerCase().split('.').pop() ?? '';
  if (ext === 'jsonl' || ext === 'ndjson') return 'jsonl';
  if (ext === 'json') return 'json';
  if (ext === 'csv') return 'csv';
  if (ext === 'tsv' || ext === 'tab') return 'tsv';
  if (ext === 'parquet') return 'parquet';
  return 'text';
}

/** The kind pasted text looks like: JSON Lines or a JSON array when it starts like one, else text. */
export function sniffKind(text: string): FileKind {
  const start = text.trimStart();
  if (start.startsWith('{')) return 'jsonl';
  if (start.startsWith('[')) return 'json';
  return 'text';
}

/** Splits bytes into lines as chunks arrive; each line is decoded on its own, so one bad byte costs one line. */
export class LineSplitter {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private lineNo = 0;
  private first = true;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(private readonly onLine: (text: string | null, line: number) => void) {}

  push(chunk: Uint8Array): void {
    let start = 0;
    if (this.first && chunk.length) {
      this.first = false;
      if (chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) start = 3; // BOM
    }
    for (let i = start; i < chunk.length; i++) {
      if (chunk[i] !== 0x0a) continue;
      this.keep(chunk.subarray(start, i));
      this.flush();
      start = i + 1;
    }
    // The tail waits for its newline; copied, because the caller may reuse its buffer.
    if (start < chunk.length) this.keep(chunk.slice(start));
  }

  end(): number {
    if (this.pendingBytes > 0) this.flush();
    return this.lineNo;
  }

  private keep(bytes: Uint8Array): void {
    if (!bytes.length) return;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
  }

  private flush(): void {
    const bytes = this.pending.length === 1 ? this.pending[0] : concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.lineNo += 1;
    const n = bytes.length && bytes[bytes.length - 1] === 0x0d ? bytes.length - 1 : bytes.length; // CRLF
    let text: string | null;
    try {
      text = this.decoder.decode(bytes.subarray(0, n));
    } catch {
      text = null;
    }
    this.onLine(text, this.lineNo);
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const INVALID_UTF8 = 'not valid UTF-8 (save the file as UTF-8)';

/**
 * A parser fed with chunks of bytes; `end()` gives the rows. Text files become one row
 * `{ text }` (a token stream for training); the others give one row per record.
 */
export interface RowSink {
  row(r: Row): void;
  reject(r: Rejected): void;
}

export class RowParser {
  readonly rows: Row[] = [];
  readonly rejected: Rejected[] = [];
  /** Rows and rejections handed on as they are read (then `rows` and `rejected` stay empty). */
  private readonly sink: RowSink;
  private readonly columns = new Set<string>();
  private readonly splitter: LineSplitter;
  // csv/tsv: the record being read, which may span lines
  private header: string[] | null = null;
  private record: string[] = [];
  private field = '';
  private inQuotes = false;
  private recordLine = 0;
  private recordBad = false;
  // json: the whole text, parsed at the end (a JSON array cannot be read row by row)
  private jsonLines: string[] = [];
  private textParts: string[] = [];
  private badText: number[] = [];

  constructor(readonly file: string, readonly kind: FileKind, sink?: RowSink) {
    this.splitter = new LineSplitter((text, line) => this.line(text, line));
    this.sink = sink ?? { row: (r) => this.rows.push(r), reject: (r) => this.rejected.push(r) };
  }

  private seen = 0;

  push(chunk: Uint8Array): void {
    this.splitter.push(chunk);
  }

  end(): Parsed {
    const lines = this.splitter.end();
    if (this.kind === 'csv' || this.kind === 'tsv') {
      if (this.inQuotes) this.reject({ line: this.recordLine, reason: 'a quoted field is never closed (a " is missing)' });
      else if (this.record.length || this.field) this.endRecord();
    }
    if (this.kind === 'json') this.parseJson();
    if (this.kind === 'text') {
      for (const line of this.badText) this.reject({ line, reason: INVALID_UTF8 });
      const text = this.textParts.join('\n');
      if (text.trim()) this.addRow(1, { text });
    }
    if (!this.seen) throw new DataError(`${this.file} is empty`, { file: this.file });
    return { file: this.file, kind: this.kind, rows: this.rows, rejected: this.rejected, columns: [...this.columns], lines };
  }

  private addRow(line: number, fields: Record<string, unknown>): void {
    for (const k of Object.keys(fields)) this.columns.add(k);
    this.seen++;
    this.sink.row({ line, fields });
  }

  private reject(r: Rejected): void {
    this.seen++;
    this.sink.reject(r);
  }

  /** Column names seen so far, in first-seen order. */
  get columnsSoFar(): string[] {
    return [...this.columns];
  }

  private line(text: string | null, line: number): void {
    switch (this.kind) {
      case 'jsonl':
        return this.jsonlLine(text, line);
      case 'csv':
      case 'tsv':
        return this.csvLine(text, line);
      case 'json':
        this.jsonLines.push(text ?? '');
        if (text === null) this.reject({ line, reason: INVALID_UTF8 });
        return;
      default:
        if (text === null) this.badText.push(line);
        else this.textParts.push(text);
    }
  }

  private jsonlLine(text: string | null, line: number): void {
    if (text === null) return void this.reject({ line, reason: INVALID_UTF8 });
    if (!text.trim()) return; // blank lines separate nothing in JSONL
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      return void this.reject({ line, reason: `invalid JSON: ${(e as Error).message}` });
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      return void this.reject({ line, reason: `expected a JSON object, got ${Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'null' : `a ${typeof v}`}` });
    }
    this.addRow(line, v as Record<string, unknown>);
  }

  private csvLine(text: string | null, line: number): void {
    if (!this.inQuotes) {
      // A blank line between records (one holding a separator is a record of empty fields).
      if (text !== null && !text.trim() && !text.includes(this.kind === 'tsv' ? '\t' : ',') && !this.record.length) return;
      this.recordLine = line;
      this.recordBad = false;
    } else {
      this.field += '\n'; // a newline inside quotes belongs to the field
    }
    if (text === null) {
      this.recordBad = true;
      if (!this.inQuotes) this.endRecord();
      return;
    }
    const sep = this.kind === 'tsv' ? '\t' : ',';
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (this.inQuotes) {
        if (c === '"') {
          if (text[i + 1] === '"') {
            this.field += '"';
            i++;
          } else this.inQuotes = false;
        } else this.field += c;
      } else if (c === '"' && this.field === '') this.inQuotes = true;
      else if (c === sep) {
        this.record.push(this.field);
        this.field = '';
      } else this.field += c;
    }
    if (!this.inQuotes) this.endRecord();
  }

  private endRecord(): void {
    this.record.push(this.field);
    const values = this.record;
    this.record = [];
    this.field = '';
    const line = this.recordLine;
    if (this.recordBad) return void this.reject({ line, reason: INVALID_UTF8 });
    if (!this.header) {
      const names = values.map((v) => v.trim());
      const empty = names.findIndex((n) => !n);
      if (empty >= 0) throw new DataError(`${this.file} line ${line}: the header's column ${empty + 1} has no name`, { file: this.file, line });
      this.header = names;
      for (const n of names) this.columns.add(n);
      return;
    }
    if (values.length !== this.header.length) {
      return void this.reject({ line, reason: `has ${values.length} fields; the header has ${this.header.length}` });
    }
    const fields: Record<string, unknown> = {};
    this.header.forEach((n, i) => (fields[n] = values[i]));
    this.addRow(line, fields);
  }

  private parseJson(): void {
    const text = this.jsonLines.join('\n');
    this.jsonLines = [];
    if (!text.trim()) return;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      const pos = /position (\d+)/.exec((e as Error).message);
      const at = pos ? Number(pos[1]) : jsonErrorOffset(text);
      const line = text.slice(0, at).split('\n').length;
      throw new DataError(`${this.file} line ${line}: invalid JSON near "${text.slice(Math.max(0, at - 20), at + 20).replace(/\s+/g, ' ').trim()}". No rows could be read; a file of one JSON object per line (.jsonl) keeps the good rows when one is broken.`, { file: this.file, line });
    }
    const items = Array.isArray(v) ? v : v && typeof v === 'object' && Array.isArray((v as { data?: unknown }).data) ? (v as { data: unknown[] }).data : null;
    if (!items) throw new DataError(`${this.file}: expected a JSON array of objects (or {"data": [...]})`, { file: this.file, line: 1 });
    const starts = elementLines(text, items.length);
    items.forEach((item, i) => {
      const line = starts[i] ?? 1;
      if (item === null || typeof item !== 'object' || Array.isArray(item)) this.reject({ line, reason: `item ${i + 1} is not a JSON object` });
      else this.addRow(line, item as Record<string, unknown>);
    });
  }
}

/**
 * Where JSON text first goes wrong (some engines' JSON.parse messages give no position): a
 * validating scan of the grammar, without building values.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const lit = (w: string) => (text.startsWith(w, i) ? (i += w.length) : fail());
  const str = () => {
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] < ' ') fail();
      i += text[i] === '\\' ? 2 : 1;
    }
    if (i >= text.length) fail();
    i++;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      ws();
      if (text[i] === close) return void i++;
      for (;;) {
        if (c === '{') {
          ws();
          if (text[i] !== '"') fail();
          str();
          ws();
          lit(':');
        }
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === close) return void i++;
        else fail();
      }
    }
    if (c === '"') return str();
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (m && m[0]) return void (i += m[0].length);
    for (const w of ['true', 'false', 'null']) if (text.startsWith(w, i)) return void (i += w.length);
    fail();
  };
  try {
    value();
    ws();
    return i < text.length ? i : text.length;
  } catch (at) {
    return typeof at === 'number' ? at : 0;
  }
}

/** Lines where the top-level array's elements begin, found by scanning brackets outside strings. */
function elementLines(text: string, count: number): number[] {
  const out: number[] = [];
  let depth = 0;
  let line = 1;
  let inString = false;
  let expecting = false;
  for (let i = 0; i < text.length && out.length < count; i++) {
    const c = text[i];
    if (c === '\n') line++;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (expecting && !/\s/.test(c)) {
      out.push(line);
      expecting = false;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1 && c === '[') expecting = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expecting = true;
  }
  return out;
}

/** Reads a whole file (bytes) in one call; the streaming path feeds RowParser itself. */
export function parseBytes(file: string, bytes: Uint8Array, kind: FileKind = kindOf(file)): Parsed {
  const p = new RowParser(file, kind);
  const CHUNK = 1 << 20;
  for (let at = 0; at < bytes.length; at += CHUNK) p.push(bytes.subarray(at, at + CHUNK));
  return p.end();
}

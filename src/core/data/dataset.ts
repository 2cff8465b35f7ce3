/**
 * A data file made ready for training, read as its bytes arrive: rows parsed, the format
 * applied, each row tokenized at once and kept as token ids (not strings), so a large file never
 * needs its text in memory twice. Plain text stays a token stream (windows of it are trained on,
 * and its end is held out); every other format becomes prompt/completion examples. What was kept,
 * rejected (line and reason), cut to the context, a token-length histogram and a preview of the
 * exact training text come with it. Splitting into train / validation / test is a second step.
 */
import { DataError } from '../errors';
import { ExampleStore, subset, type ExampleList } from './batch';
import { rowRenderer, RowProblem, type FormatOptions, type RowRenderer, type TrainingText } from './formats';
import { RowParser, type FileKind, type Rejected, type Row } from './parse';
import { splitIndices, type SplitSpec } from './split';

export type TrainingData =
  | { kind: 'tokens'; train: Int32Array; validation: Int32Array | null; test: Int32Array | null }
  | {
      kind: 'examples';
      train: ExampleList;
      validation: ExampleList | null;
      test: ExampleList | null;
      completionOnly: boolean;
      /** Packed into full blocks (examples end to end) rather than one padded example per row. */
      packing: boolean;
    };

export interface PreviewRow extends TrainingText {
  fields: Record<string, unknown>;
  promptTokens: number;
  completionTokens: number;
}

/** Token lengths (prompt + completion + EOS) in bins of equal width up to the block; the last bin is "longer than the block". */
export interface Histogram {
  edges: number[];
  counts: number[];
}

export interface BuildOptions extends FormatOptions {
  /** Token ids; `special` adds the tokenizer's special tokens (Llama's BOS). */
  encode: (text: string, special: boolean) => number[];
  blockSize: number;
  /** Rows shown before training, with their training text. */
  previewRows?: number;
  /** Training texts are kept (for the scale-out recipe) while their characters stay under this. */
  keepTextChars?: number;
  /** Rejections listed (all are counted). */
  maxRejected?: number;
}

export interface BuiltDataset {
  file: string;
  kind: FileKind;
  format: string;
  template: string;
  /** Rows: one example per usable row, in file order. */
  examples: ExampleList | null;
  /** Text: the whole token stream, and the text itself. */
  tokens: Int32Array | null;
  text: string | null;
  /** Rows' training texts, while under the keepTextChars budget (else null). */
  texts: TrainingText[] | null;
  /** Classification: each example's label, for a stratified split. */
  labels: string[] | null;
  /** Column names, in first-seen order (for mapping them to a format's roles). */
  columns: string[];
  rejected: Rejected[];
  rejectedCount: number;
  /** Lines of examples longer than the block (their prompts are cut from the left), the first 1,000. */
  truncated: number[];
  truncatedCount: number;
  tokenCount: number;
  histogram: Histogram;
  preview: PreviewRow[];
  bytes: number;
  lines: number;
}

/** A 52-bit hash of a string (two FNV-1a lanes), for finding duplicates without keeping the text. */
function hash52(s: string): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  return (a >>> 0) * 0x100000 + ((b >>> 0) & 0xfffff);
}

const DETECT_ROWS = 64;

export class DatasetBuilder {
  private readonly parser: RowParser;
  private renderer: RowRenderer | null = null;
  private pending: Row[] = [];
  private readonly examples = new ExampleStore();
  private readonly texts: TrainingText[] = [];
  private textChars = 0;
  private keepTexts = true;
  private readonly labels: string[] = [];
  private readonly rejected: Rejected[] = [];
  private rejectedCount = 0;
  private readonly truncated: number[] = [];
  private truncatedCount = 0;
  private tokenCount = 0;
  private readonly counts: number[];
  private readonly binWidth: number;
  private readonly preview: PreviewRow[] = [];
  /** Hash of each kept row's training text, to the line it came from. */
  private readonly seen = new Map<number, number>();
  private textRow: Row | null = null;
  private bytes = 0;

  constructor(readonly file: string, readonly kind: FileKind, private readonly opts: BuildOptions) {
    this.parser = new RowParser(file, kind, { row: (r) => this.row(r), reject: (r) => this.reject(r) });
    this.binWidth = Math.max(1, Math.ceil((opts.blockSize + 1) / 16));
    this.counts = new Array(Math.ceil((opts.blockSize + 1) / this.binWidth) + 1).fill(0);
  }

  /** Column names seen so far. */
  get columns(): string[] {
    return this.kind === 'parquet' ? this.parquetColumns : this.parser.columnsSoFar;
  }

  /** Usable rows so far (for progress). */
  get rowsSoFar(): number {
    return this.examples.length;
  }

  push(chunk: Uint8Array): void {
    if (this.kind === 'parquet') throw new DataError(`${this.file}: Parquet is read by row groups (addRows), not as a byte stream`, { file: this.file });
    this.bytes += chunk.length;
    this.parser.push(chunk);
  }

  /** Rows read elsewhere (a Parquet row group), with the file's columns. */
  addRows(rows: Row[], columns: string[], bytes = 0): void {
    this.bytes += bytes;
    this.parquetColumns = columns;
    this.parquetRows += rows.length;
    for (const r of rows) this.row(r);
  }

  private parquetColumns: string[] = [];
  private parquetRows = 0;

  end(): BuiltDataset {
    const parsed =
      this.kind === 'parquet'
        ? (() => {
            if (!this.parquetRows) throw new DataError(`${this.file} has no rows`, { file: this.file });
            return { columns: this.parquetColumns, lines: this.parquetRows };
          })()
        : this.parser.end();
    const text = this.kind === 'text';
    if (!text && !this.renderer) this.startRendering(); // fewer rows than DETECT_ROWS
    const base = { file: this.file, kind: this.kind, bytes: this.bytes, lines: parsed.lines, columns: parsed.columns, rejected: this.rejected, rejectedCount: this.rejectedCount };
    if (text) {
      const t = this.textRow ? String(this.textRow.fields.text) : '';
      const tokens = Int32Array.from(this.opts.encode(t, false));
      return {
        ...base, format: 'text (token stream)', template: 'none', examples: null, tokens, text: t, texts: null, labels: null,
        truncated: [], truncatedCount: 0, tokenCount: tokens.length, histogram: { edges: [], counts: [] },
        preview: t ? [{ line: 1, fields: {}, prompt: '', completion: t.slice(0, 2000), promptTokens: 0, completionTokens: tokens.length }] : [],
      };
    }
    if (!this.examples.length) {
      const first = this.rejected[0];
      throw new DataError(
        `${this.file}: no row can be used` + (first ? ` (${this.rejectedCount} rejected; line ${first.line}: ${first.reason})` : ''),
        { file: this.file, line: first?.line },
      );
    }
    this.rejected.sort((a, b) => a.line - b.line);
    return {
      ...base,
      format: this.renderer!.format,
      template: this.renderer!.template,
      examples: this.examples,
      tokens: null,
      text: null,
      texts: this.keepTexts ? this.texts : null,
      labels: this.renderer!.format === 'classification' ? this.labels : null,
      truncated: this.truncated,
      truncatedCount: this.truncatedCount,
      tokenCount: this.tokenCount,
      histogram: { edges: this.counts.map((_, i) => i * this.binWidth), counts: this.counts },
      preview: this.preview,
    };
  }

  private reject(r: Rejected): void {
    this.rejectedCount++;
    if (this.rejected.length < (this.opts.maxRejected ?? 1000)) this.rejected.push(r);
  }

  private row(r: Row): void {
    if (this.kind === 'text') {
      this.textRow = r;
      return;
    }
    if (this.renderer) return this.use(r);
    this.pending.push(r);
    if (this.pending.length >= DETECT_ROWS) this.startRendering();
  }

  /** The format is told from the columns of the first rows; they are then used in order. */
  private startRendering(): void {
    if (!this.pending.length && this.rejectedCount) {
      // Nothing readable: say what went wrong with the first lines, not that the columns are unknown.
      const first = this.rejected[0];
      throw new DataError(`${this.file}: no row can be read (${this.rejectedCount} rejected; ${this.kind === 'parquet' ? 'row' : 'line'} ${first.line}: ${first.reason})`, { file: this.file, line: first.line });
    }
    this.renderer = rowRenderer(this.file, this.columns, this.opts, this.pending.length > 0);
    const rows = this.pending;
    this.pending = [];
    for (const r of rows) this.use(r);
  }

  private use(row: Row): void {
    let t: TrainingText;
    try {
      t = this.renderer!.render(row);
    } catch (e) {
      if (!(e instanceof RowProblem)) throw e;
      return this.reject({ line: row.line, reason: e.message });
    }
    const key = hash52(`${t.prompt}\u0000${t.completion}`);
    const first = this.seen.get(key);
    if (first !== undefined) return this.reject({ line: row.line, reason: `duplicate of ${this.kind === 'parquet' ? 'row' : 'line'} ${first}` });
    this.seen.set(key, row.line);
    // With `special`, the tokenizer adds what it adds to any text (Llama's BOS) at the start; a
    // chat template writes its own. The completion's ids are what follows the prompt's in the
    // whole text, so the model learns the tokens it will see; where a merge crosses the boundary,
    // the parts are tokenized on their own.
    const special = this.renderer!.template !== 'model';
    const promptIds = this.opts.encode(t.prompt, special);
    const full = this.opts.encode(t.prompt + t.completion, special);
    const clean = promptIds.every((id, i) => full[i] === id);
    const completionIds = clean ? full.slice(promptIds.length) : this.opts.encode(t.completion, false);
    const length = promptIds.length + completionIds.length + 1;
    if (length > this.opts.blockSize + 1) {
      this.truncatedCount++;
      if (this.truncated.length < 1000) this.truncated.push(row.line);
    }
    this.counts[Math.min(this.counts.length - 1, Math.floor(length / this.binWidth))]++;
    this.tokenCount += length;
    this.examples.add(row.line, promptIds, completionIds);
    if (this.renderer!.format === 'classification') this.labels.push(t.completion);
    if (this.preview.length < (this.opts.previewRows ?? 20)) {
      this.preview.push({ ...t, fields: row.fields, promptTokens: promptIds.length, completionTokens: completionIds.length });
    }
    if (this.keepTexts) {
      this.textChars += t.prompt.length + t.completion.length;
      if (this.textChars > (this.opts.keepTextChars ?? 16_000_000)) {
        this.keepTexts = false;
        this.texts.length = 0;
      } else this.texts.push(t);
    }
  }
}

/** A whole file's bytes through the builder (the streaming path pushes chunks itself). */
export function buildDataset(file: string, bytes: Uint8Array, kind: FileKind, opts: BuildOptions): BuiltDataset {
  const b = new DatasetBuilder(file, kind, opts);
  const CHUNK = 1 << 20;
  for (let at = 0; at < bytes.length; at += CHUNK) b.push(bytes.subarray(at, at + CHUNK));
  if (!bytes.length) b.push(bytes);
  return b.end();
}

export interface DatasetReport {
  file: string;
  kind: FileKind;
  format: string;
  template: string;
  accepted: number;
  rejected: Rejected[];
  rejectedCount: number;
  truncated: number;
  tokens: number;
  histogram: Histogram;
  split: { train: number; validation: number; test: number; seed: number };
  /** Validation (or test) came from this separate file. */
  validationFile?: string;
  testFile?: string;
}

export interface Prepared {
  data: TrainingData;
  report: DatasetReport;
  /** Rows: the training split's exact texts, for the scale-out recipe (null past the kept budget). */
  trainTexts: TrainingText[] | null;
  /** Text: the part trained on (cut at the same share of characters as of tokens), for the recipe. */
  trainText: string | null;
}

/**
 * Train / validation / test: rows by a seeded shuffle (stratified by label for classification),
 * text by its end (the held-out parts are never trained on, and next to nothing trained on).
 */
export function splitDataset(
  built: BuiltDataset,
  split: SplitSpec,
  completionOnly = true,
  packing = false,
  validationFile: BuiltDataset | null = null,
  testFile: BuiltDataset | null = null,
): Prepared {
  if (testFile) {
    // A separate test file: held out from everything, read at the end.
    if (!!testFile.tokens !== !!built.tokens) {
      throw new DataError(`${testFile.file} is ${testFile.tokens ? 'plain text' : 'rows'} and ${built.file} is ${built.tokens ? 'plain text' : 'rows'}; a test file must be of the same kind`, { file: testFile.file, field: 'test' });
    }
    const main = splitDataset(built, { ...split, test: 0 }, completionOnly, packing, validationFile);
    if (main.data.kind === 'tokens') main.data.test = testFile.tokens;
    else main.data.test = testFile.examples;
    const n = testFile.examples?.length ?? testFile.tokens?.length ?? 0;
    return { ...main, report: { ...main.report, testFile: testFile.file, split: { ...main.report.split, test: n } } };
  }
  if (validationFile) {
    // A separate validation file: the main file gives train (and test), the other file all of validation.
    if (!!validationFile.tokens !== !!built.tokens) {
      throw new DataError(`${validationFile.file} is ${validationFile.tokens ? 'plain text' : 'rows'} and ${built.file} is ${built.tokens ? 'plain text' : 'rows'}; a validation file must be of the same kind`, { file: validationFile.file, field: 'validation' });
    }
    const main = splitDataset(built, { ...split, validation: 0 }, completionOnly, packing);
    const data = main.data;
    if (data.kind === 'tokens') data.validation = validationFile.tokens;
    else data.validation = validationFile.examples;
    const n = validationFile.examples?.length ?? validationFile.tokens?.length ?? 0;
    return { ...main, report: { ...main.report, validationFile: validationFile.file, split: { ...main.report.split, validation: n } } };
  }
  const base = {
    file: built.file, kind: built.kind, format: built.format, template: built.template, rejected: built.rejected, rejectedCount: built.rejectedCount,
    truncated: built.truncatedCount, tokens: built.tokenCount, histogram: built.histogram,
  };
  if (built.tokens) {
    const all = built.tokens;
    const nTest = Math.floor(all.length * split.test);
    const nVal = Math.floor(all.length * split.validation);
    const trainEnd = all.length - nVal - nTest;
    return {
      data: {
        kind: 'tokens',
        train: all.subarray(0, trainEnd),
        validation: nVal ? all.subarray(trainEnd, trainEnd + nVal) : null,
        test: nTest ? all.subarray(trainEnd + nVal) : null,
      },
      trainTexts: null,
      trainText: trainEnd === all.length ? built.text! : built.text!.slice(0, Math.round((built.text!.length * trainEnd) / Math.max(1, all.length))),
      report: { ...base, accepted: 1, split: { train: trainEnd, validation: nVal, test: nTest, seed: split.seed } },
    };
  }
  const examples = built.examples!;
  const idx = splitIndices(examples.length, split, built.labels ?? undefined);
  const pick = (ix: number[]) => (ix.length ? subset(examples, ix) : null);
  const train = pick(idx.train);
  if (!train) throw new DataError(`${built.file}: ${examples.length} usable rows leave none to train on after the split; lower the validation and test fractions`, { file: built.file, field: 'split' });
  return {
    data: { kind: 'examples', train, validation: pick(idx.validation), test: pick(idx.test), completionOnly, packing },
    trainTexts: built.texts ? idx.train.map((i) => built.texts![i]) : null,
    trainText: null,
    report: { ...base, accepted: examples.length, split: { train: idx.train.length, validation: idx.validation.length, test: idx.test.length, seed: split.seed } },
  };
}

/**
 * Training texts back from their ids, for the recipe when the file was too large to keep its
 * texts (exact for byte-level BPE; SentencePiece decoders may drop a leading space).
 */
export function decodedPairs(examples: ExampleList, decode: (ids: number[]) => string): { prompt: string; completion: string }[] {
  return Array.from({ length: examples.length }, (_, i) => {
    const e = examples.get(i);
    return { prompt: decode(Array.from(e.prompt)), completion: decode(Array.from(e.completion)) };
  });
}

/**
 * A data file made ready for training: rows read, the format applied, the text tokenized, split
 * into train / validation / test, with a report of what was kept, rejected (line and reason)
 * and truncated. Plain text stays a token stream (windows of it are trained on, and the last
 * part is held out); every other format becomes prompt/completion examples.
 */
import { DataError } from '../errors';
import { tokenizeTexts, type LineExample } from './batch';
import { renderRows, type FormatOptions, type TrainingText } from './formats';
import type { Parsed, Rejected } from './parse';
import { splitIndices, type SplitSpec } from './split';

export type TrainingData =
  | { kind: 'tokens'; train: Int32Array; validation: Int32Array | null; test: Int32Array | null }
  | { kind: 'examples'; train: LineExample[]; validation: LineExample[] | null; test: LineExample[] | null; completionOnly: boolean };

export interface DatasetReport {
  file: string;
  kind: Parsed['kind'];
  format: string;
  template: string;
  accepted: number;
  rejected: Rejected[];
  /** Lines of examples longer than the block (their prompt is cut from the left). */
  truncated: number[];
  tokens: number;
  split: { train: number; validation: number; test: number; seed: number };
}

export interface PrepareOptions extends FormatOptions {
  /** Token ids; `special` adds the tokenizer's special tokens (Llama's BOS). */
  encode: (text: string, special: boolean) => number[];
  blockSize: number;
  split: SplitSpec;
  /** Loss on the completions only (prompts masked); default true. */
  completionOnly?: boolean;
}

export interface Prepared {
  data: TrainingData;
  report: DatasetReport;
  /** Rows: the training split's exact texts (prompt and completion), for the scale-out recipe. */
  trainTexts: TrainingText[] | null;
}

export function prepareDataset(parsed: Parsed, opts: PrepareOptions): Prepared {
  const base = { file: parsed.file, kind: parsed.kind };
  if (parsed.kind === 'text' && !opts.format) {
    const text = parsed.rows.map((r) => String(r.fields.text)).join('\n');
    const all = Int32Array.from(opts.encode(text, false));
    // The held-out parts are the end of the text: never trained on, and next to nothing trained on.
    const nTest = Math.floor(all.length * opts.split.test);
    const nVal = Math.floor(all.length * opts.split.validation);
    const trainEnd = all.length - nVal - nTest;
    const data: TrainingData = {
      kind: 'tokens',
      train: all.subarray(0, trainEnd),
      validation: nVal ? all.subarray(trainEnd, trainEnd + nVal) : null,
      test: nTest ? all.subarray(trainEnd + nVal) : null,
    };
    return {
      data,
      trainTexts: null,
      report: { ...base, format: 'text (token stream)', template: 'none', accepted: parsed.rows.length, rejected: parsed.rejected, truncated: [], tokens: all.length, split: { train: trainEnd, validation: nVal, test: nTest, seed: opts.split.seed } },
    };
  }
  const rendered = renderRows(parsed, opts);
  if (!rendered.texts.length) {
    const first = rendered.rejected[0];
    throw new DataError(
      `${parsed.file}: no row can be used` + (first ? ` (${rendered.rejected.length} rejected; line ${first.line}: ${first.reason})` : ''),
      { file: parsed.file, line: first?.line },
    );
  }
  const { examples, truncated } = tokenizeTexts(rendered.texts, opts.encode, opts.blockSize, rendered.template !== 'model');
  const labels = rendered.format === 'classification' ? rendered.texts.map((t) => t.completion) : undefined;
  const idx = splitIndices(examples.length, opts.split, labels);
  const pick = (ix: number[]) => (ix.length ? ix.map((i) => examples[i]) : null);
  const train = pick(idx.train);
  if (!train) throw new DataError(`${parsed.file}: ${examples.length} usable rows leave none to train on after the split; lower the validation and test fractions`, { file: parsed.file, field: 'split' });
  const data: TrainingData = { kind: 'examples', train, validation: pick(idx.validation), test: pick(idx.test), completionOnly: opts.completionOnly ?? true };
  const tokens = examples.reduce((a, e) => a + e.prompt.length + e.completion.length + 1, 0);
  return {
    data,
    trainTexts: idx.train.map((i) => rendered.texts[i]),
    report: {
      ...base,
      format: rendered.format,
      template: rendered.template,
      accepted: examples.length,
      rejected: rendered.rejected,
      truncated,
      tokens,
      split: { train: idx.train.length, validation: idx.validation.length, test: idx.test.length, seed: opts.split.seed },
    },
  };
}

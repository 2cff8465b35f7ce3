/**
 * `tabtune data FILE [--format F] [--model DIR]`: the dataset report as JSON, as the studio shows
 * it before training: the format detected, rows kept, each rejected row with its line and reason,
 * and with a model, token counts, a length histogram and the rows cut to its context.
 */
import { basename, resolve } from 'node:path';
import { DatasetBuilder, type BuiltDataset } from '../core/data/dataset';
import { kindOf, type FileKind } from '../core/data/parse';
import { ConfigError, DataError } from '../core/errors';
import { inspectModel } from '../core/model/hf';
import { loadTokenizer } from '../core/tokenizer/hf';
import { feedBuilder, folderFiles } from './files';
import { dataFormat, type FinetuneArgs } from './finetune';

export async function dataReport(file: string, args: FinetuneArgs): Promise<{ report: Record<string, unknown>; usable: boolean }> {
  const name = basename(file);
  const kind = typeof args['data-kind'] === 'string' ? (args['data-kind'] as FileKind) : kindOf(name);
  let encode: (t: string, special: boolean) => number[] = () => [];
  let blockSize = 1_000_000;
  let format = {};
  if (typeof args.model === 'string') {
    const files = folderFiles(args.model);
    const summary = await inspectModel(files);
    const tokenizer = await loadTokenizer(files);
    encode = (t, special) => tokenizer.encode(t, { addSpecialTokens: special });
    blockSize = Number(args['block-size'] ?? summary.contextLength);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new ConfigError(`--block-size must be a whole number above 0, got "${args['block-size']}"`, { field: 'block-size' });
    format = dataFormat(args, tokenizer);
  } else {
    format = dataFormat(args, null);
  }
  const builder = new DatasetBuilder(name, kind, { ...format, encode, blockSize, previewRows: 3 });
  let built: BuiltDataset;
  try {
    await feedBuilder(file, builder);
    built = builder.end();
  } catch (e) {
    if (!(e instanceof DataError)) throw e;
    // No usable row: the report still says why, and the exit code says it failed.
    return { report: { file: name, kind, error: (e as Error).message, ...(e as { line?: number }).line !== undefined ? { line: (e as { line?: number }).line } : {} }, usable: false };
  }
  const withModel = typeof args.model === 'string';
  return {
    usable: true,
    report: {
      file: name,
      kind,
      bytes: built.bytes,
      lines: built.lines,
      format: built.format,
      template: built.template,
      rows: built.examples?.length ?? (built.tokens ? 1 : 0),
      rejectedCount: built.rejectedCount,
      rejected: built.rejected,
      ...(withModel
        ? {
            model: basename(resolve(String(args.model))),
            blockSize,
            tokens: built.tokenCount,
            truncatedCount: built.truncatedCount,
            truncated: built.truncated,
            histogram: built.histogram,
          }
        : {}),
      preview: built.preview.map((p) => ({ line: p.line, prompt: p.prompt, completion: p.completion })),
    },
  };
}

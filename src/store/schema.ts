/**
 * Every stored record carries the version of its shape. A reader upgrades an older record step by
 * step through the migrations below (and the caller writes it back), and refuses, with a message
 * that says so, a record written by a newer tabtune than itself.
 */
export type RecordKind = 'run' | 'checkpoint' | 'model' | 'dataset' | 'tune' | 'tuneCheckpoint';

/** The version each kind of record is written with now. */
export const SCHEMA: Record<RecordKind, number> = { run: 1, checkpoint: 1, model: 1, dataset: 1, tune: 3, tuneCheckpoint: 1 };

type Migration = (r: Record<string, unknown>) => Record<string, unknown>;

/** From version n to n + 1, per kind. */
const MIGRATIONS: Partial<Record<RecordKind, Record<number, Migration>>> = {
  tune: {
    // v2: the dataset a run trained on is named at the top of the record (for lists and exports).
    1: (r) => ({ ...r, schema: 2, datasetId: ((r.request as { datasetId?: string }) ?? {}).datasetId ?? null }),
    // v3: sample generations from fixed prompts, kept with the run (none were kept before).
    2: (r) => ({ ...r, schema: 3, samples: [] }),
  },
};

export class SchemaError extends Error {
  override name = 'SchemaError';
}

/** The record in the current shape of its kind; `changed` tells the caller to write it back. */
export function migrate<T>(kind: RecordKind, record: unknown, where: string): { record: T; changed: boolean } {
  let r = record as Record<string, unknown>;
  const current = SCHEMA[kind];
  let v = typeof r.schema === 'number' ? r.schema : 0;
  if (v > current) throw new SchemaError(`${where} was written by a newer tabtune (schema ${v}; this one reads up to ${current}); open it with that version`);
  const changed = v < current;
  while (v < current) {
    const step = MIGRATIONS[kind]?.[v];
    if (!step) throw new SchemaError(`${where} has schema ${v}, and there is no way from it to ${current}`);
    r = step(r);
    v = r.schema as number;
  }
  return { record: r as T, changed };
}

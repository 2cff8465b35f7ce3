/**
 * comlink sends a thrown Error across threads as { name, message, stack } only. This keeps the
 * place tabtune's errors carry (file, line, field), so the UI can show a DataError next to the
 * file and a ConfigError next to the field. Installed on the worker side, where errors are thrown;
 * comlink's own deserializer copies every property onto the Error it rethrows in the page.
 */
import { transferHandlers, type TransferHandler } from 'comlink';

interface Serialized {
  isError: boolean;
  value: Record<string, unknown>;
}

const base = transferHandlers.get('throw') as TransferHandler<{ value: unknown }, Serialized>;

const handler: TransferHandler<{ value: unknown }, Serialized> = {
  canHandle: base.canHandle,
  serialize(thrown) {
    const [serialized, transferables] = base.serialize(thrown);
    const e = thrown.value as { file?: unknown; line?: unknown; field?: unknown };
    if (serialized.isError) {
      for (const key of ['file', 'line', 'field'] as const) if (e[key] !== undefined) serialized.value[key] = e[key];
    }
    return [serialized, transferables];
  },
  deserialize: base.deserialize,
};
transferHandlers.set('throw', handler as TransferHandler<unknown, unknown>);

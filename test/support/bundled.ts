import { readFileSync } from 'node:fs';
import type { FileEntry } from '../../src/api/protocol';

/** The folder of the bundled model, as the studio ships it. */
export const BUNDLED_DIR = new URL('../../public/models/moby-gpt2/', import.meta.url);

/** The bundled model's files, as the page hands them to the worker. */
export const bundledModel = (): FileEntry[] =>
  ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].map((f) => ({ path: `moby-gpt2/${f}`, file: new Blob([readFileSync(new URL(f, BUNDLED_DIR))]) }));

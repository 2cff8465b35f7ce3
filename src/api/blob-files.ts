import type { ModelFiles } from '../core/model/hf';

import type { FileEntry } from './protocol';

/** The name of files picked one by one, with no folder around them. */
export const UNNAMED = 'unnamed model';

/**
 * Files a person dropped or picked, read lazily: a safetensors header, then one tensor at a time,
 * never the whole file at once. Paths from a dropped folder ("SmolLM2-135M/config.json") are
 * taken relative to the folder.
 */
export function blobFiles(entries: FileEntry[], name?: string): ModelFiles {
  const roots = new Set(entries.map((e) => (e.path.includes('/') ? e.path.split('/')[0] : '')));
  const root = roots.size === 1 ? [...roots][0] : '';
  const byPath = new Map(entries.map((e) => [root && e.path.startsWith(root + '/') ? e.path.slice(root.length + 1) : e.path, e.file]));
  const get = (p: string) => {
    const f = byPath.get(p);
    if (!f) throw new Error(`${p} is not among the files given`);
    return f;
  };
  return {
    name: name ?? (root || UNNAMED),
    has: async (p) => byPath.has(p),
    size: async (p) => get(p).size,
    text: (p) => get(p).text(),
    read: async (p, start, end) => new Uint8Array(await get(p).slice(start, end).arrayBuffer()),
  };
}

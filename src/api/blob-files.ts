import { ConfigError } from '../core/errors';
import { unzipFiles } from '../core/io/zip';
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

/**
 * An adapter as files: the two files picked, a folder dropped, or one zip of them (the zip is
 * read in memory; adapters are small). In a zip, the folder holding adapter_config.json counts.
 */
export async function adapterFiles(entries: FileEntry[]): Promise<ModelFiles> {
  if (entries.length !== 1 || !entries[0].path.toLowerCase().endsWith('.zip')) return blobFiles(entries, entries.length === 1 ? entries[0].path : undefined);
  const zipName = entries[0].path.split('/').pop()!;
  const all = await unzipFiles(new Uint8Array(await entries[0].file.arrayBuffer()), zipName);
  const config = [...all.keys()].filter((k) => k === 'adapter_config.json' || k.endsWith('/adapter_config.json')).sort((a, b) => a.length - b.length)[0];
  const dir = config ? config.slice(0, -'adapter_config.json'.length) : '';
  const byPath = new Map([...all].filter(([k]) => k.startsWith(dir)).map(([k, v]) => [k.slice(dir.length), v]));
  const get = (p: string) => {
    const b = byPath.get(p);
    if (!b) throw new ConfigError(`${zipName} has no ${p}`, { file: zipName });
    return b;
  };
  return {
    name: zipName.replace(/\.zip$/i, ''),
    has: async (p) => byPath.has(p),
    size: async (p) => get(p).length,
    text: async (p) => new TextDecoder().decode(get(p)),
    read: async (p, start, end) => get(p).slice(start, end),
  };
}

/**
 * Models from the Hugging Face Hub (or a mirror, as HF_ENDPOINT allows), read over HTTP the way a
 * folder is read: config.json and the safetensors headers first (a few kilobytes, by Range
 * requests), then one tensor at a time. A failed request is retried from where it stopped.
 */
import { TabtuneError } from '../core/errors';
import type { ModelFiles } from '../core/model/hf';

export const HUB_ENDPOINT = 'https://huggingface.co';

export class HubError extends TabtuneError {
  override name = 'HubError';
}

/** "owner/name", from a repository id or a hub URL (…/owner/name, …/owner/name/tree/main, …). */
export function parseRepo(input: string): string {
  let s = input.trim();
  const m = /^https?:\/\/[^/]+\/(.*)$/.exec(s);
  if (m) s = m[1];
  s = s.replace(/^models\//, '');
  const parts = s.split('/').filter(Boolean);
  const repo = parts.slice(0, 2).join('/');
  if (parts.length < 2 || !/^[\w.-]+\/[\w.-]+$/.test(repo)) {
    throw new HubError(`"${input}" is not a Hugging Face repository: expected owner/name, like HuggingFaceTB/SmolLM2-135M`, { field: 'repo' });
  }
  return repo;
}

interface HubOptions {
  endpoint?: string;
  revision?: string;
  /** Attempts per request before giving up (network errors and 5xx). */
  attempts?: number;
  fetch?: typeof fetch;
}

export function hubFiles(repo: string, opts: HubOptions = {}): ModelFiles {
  const endpoint = (opts.endpoint ?? HUB_ENDPOINT).replace(/\/+$/, '');
  const revision = opts.revision ?? 'main';
  const attempts = opts.attempts ?? 4;
  const doFetch = opts.fetch ?? fetch;
  const url = (p: string) => `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${p.split('/').map(encodeURIComponent).join('/')}`;
  const sizes = new Map<string, number | null>();
  const texts = new Map<string, string>();

  async function request(p: string, init: RequestInit): Promise<Response> {
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
      let wait = 200 * 2 ** i;
      try {
        const res = await doFetch(url(p), init);
        if (res.status < 500 && res.status !== 429) return res;
        last = new Error(`HTTP ${res.status}`);
        // Rate limited: the hub says how long to wait.
        const after = Number(res.headers.get('retry-after'));
        if (res.status === 429 && after > 0) wait = Math.min(after, 60) * 1000;
        res.body?.cancel().catch(() => undefined);
      } catch (e) {
        last = e;
      }
      await new Promise((r) => setTimeout(r, wait));
    }
    throw new HubError(`${repo}: ${p} could not be fetched from ${endpoint} (${last instanceof Error ? last.message : String(last)})`, { file: p });
  }

  /**
   * A file's size from a one-byte ranged GET (Content-Range: bytes 0-0/SIZE). Not HEAD: the hub
   * answers HEAD on large files with a redirect to a CDN whose URL is signed for GET only, and a
   * browser cannot read the size headers of the redirect itself.
   */
  async function size(p: string): Promise<number | null> {
    if (!sizes.has(p)) {
      const res = await request(p, { headers: { Range: 'bytes=0-0' } });
      if (res.status === 401 || res.status === 403) {
        throw new HubError(`${repo}: ${p} needs permission (HTTP ${res.status}); gated models must be downloaded and dropped in as files`, { file: p });
      }
      const range = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
      const len = res.headers.get('content-length');
      sizes.set(p, !res.ok ? null : range ? Number(range[1]) : len !== null && res.status === 200 ? Number(len) : null);
      res.body?.cancel().catch(() => undefined);
    }
    return sizes.get(p)!;
  }

  return {
    name: repo,
    has: async (p) => (await size(p)) !== null,
    async size(p) {
      const s = await size(p);
      if (s === null) throw new HubError(`${repo} has no ${p}`, { file: p });
      return s;
    },
    async text(p) {
      if (!texts.has(p)) {
        const res = await request(p, {});
        if (!res.ok) throw new HubError(`${repo}: ${p} gave HTTP ${res.status}`, { file: p });
        texts.set(p, await res.text());
      }
      return texts.get(p)!;
    },
    /** Bytes [start, end), resuming with a narrower Range when a response ends early. */
    async read(p, start, end) {
      const out = new Uint8Array(end - start);
      let at = 0;
      let tries = 0;
      while (at < out.length) {
        const res = await request(p, { headers: { Range: `bytes=${start + at}-${end - 1}` } });
        if (res.status !== 206 && res.status !== 200) throw new HubError(`${repo}: ${p} gave HTTP ${res.status}`, { file: p });
        const skip = res.status === 200 ? start + at : 0; // a server that ignores Range sends the whole file
        const reader = res.body!.getReader();
        let seen = 0;
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            let chunk = value;
            if (seen < skip) {
              const drop = Math.min(skip - seen, chunk.length);
              seen += drop;
              chunk = chunk.subarray(drop);
            }
            const take = Math.min(chunk.length, out.length - at);
            out.set(chunk.subarray(0, take), at);
            at += take;
            if (at >= out.length) break;
          }
        } catch (e) {
          // The connection dropped mid-body: ask again for what is missing.
          if (++tries >= attempts) throw new HubError(`${repo}: ${p} kept failing at byte ${start + at}: ${(e as Error).message}`, { file: p });
          continue;
        } finally {
          reader.cancel().catch(() => undefined);
        }
        if (at < out.length && ++tries >= attempts) throw new HubError(`${repo}: ${p} ended early at byte ${start + at}`, { file: p });
      }
      return out;
    },
  };
}

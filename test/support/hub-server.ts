/**
 * A stand-in for the Hugging Face Hub on loopback: /{owner}/{name}/resolve/main/{file} serves the
 * fixture folder test/fixtures/{name}, with Range requests and CORS, and .safetensors files through
 * a redirect to a /cdn/ location, as the hub serves large files.
 * It counts what it sends, and can fail on purpose, so tests can prove downloads resume.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

export interface HubServer {
  url: string;
  /** Body bytes sent, over all GET responses. */
  bytesSent: number;
  /** After this many more ranged GETs, answer 503 until reset (null: never fail). */
  failAfterRanges: number | null;
  close(): Promise<void>;
}

export async function startHub(): Promise<HubServer> {
  const state: HubServer = { url: '', bytesSent: 0, failAfterRanges: null, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'Range');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range, Accept-Ranges');
    if (req.method === 'OPTIONS') return void res.writeHead(204).end();
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    // As the hub does for large (LFS) files: a redirect to a CDN location, answered there.
    const lfs = /^\/[\w.-]+\/([\w.-]+)\/resolve\/main\/([\w.-]+\.safetensors)$/.exec(path);
    if (lfs) return void res.writeHead(302, { Location: `/cdn/${lfs[1]}/${lfs[2]}` }).end();
    const m = /^\/(?:[\w.-]+|cdn)\/([\w.-]+)\/(?:resolve\/main\/)?([\w.-]+)$/.exec(path);
    const file = m ? join(FIXTURES, m[1], m[2]) : '';
    if (!m || !existsSync(file) || m[2].startsWith('golden')) return void res.writeHead(404).end('Entry not found');
    const size = statSync(file).size;
    res.setHeader('Accept-Ranges', 'bytes');
    if (req.method === 'HEAD') return void res.writeHead(200, { 'Content-Length': size }).end();
    const range = /^bytes=(\d+)-(\d+)?$/.exec(req.headers.range ?? '');
    if (range) {
      if (state.failAfterRanges !== null && state.failAfterRanges-- <= 0) return void res.writeHead(503).end('busy');
      const start = Number(range[1]);
      const end = Math.min(range[2] === undefined ? size - 1 : Number(range[2]), size - 1);
      const body = readFileSync(file).subarray(start, end + 1);
      state.bytesSent += body.length;
      return void res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': body.length }).end(body);
    }
    const body = readFileSync(file);
    state.bytesSent += body.length;
    res.writeHead(200, { 'Content-Length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  state.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  state.close = () => new Promise((r) => server.close(() => r()));
  return state;
}

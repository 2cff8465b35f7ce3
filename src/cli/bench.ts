/**
 * `npm run bench`: how fast and how lean tabtune trains and generates, here, against PyTorch on
 * the CPU, against @genai-fi/nanogpt (the nearest TensorFlow.js peer), and against the backend's
 * own matrix-product peak. Prints a table and writes every figure as JSON.
 *
 *   npm run bench                      everything at full size (about 10 to 20 minutes here)
 *   npm run bench -- --size tiny       every path at a tiny shape, in about 20 seconds (the test's)
 *   npm run bench -- --only node,torch parts: node, browser, torch, nanogpt
 *   npm run bench -- --match "wasm lora" only the Node and browser rows that hold every word
 *   npm run bench -- --out FILE        where the JSON goes (default .tabtune/bench.json)
 *
 * Each Node measurement runs in a child process of its own: a clean TensorFlow.js engine, its own
 * peak RSS, and an out-of-memory abort that costs one row, not the run.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchRequest } from '../api/protocol';
import { BENCH_LORA, BENCH_SHAPES, trainFlops, type BenchMethod } from '../core/bench';
import { benchNanoGPT, type NanoGPTBenchResult } from './bench-nanogpt';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const PARTS = ['node', 'browser', 'torch', 'nanogpt'] as const;
type Part = (typeof PARTS)[number];

interface Plan {
  size: 'full' | 'tiny';
  node: { backend: 'wasm' | 'cpu' | 'webgpu'; req: BenchRequest }[];
  browser: { backend: 'webgpu' | 'webgl' | 'wasm'; req: BenchRequest }[];
  torch: { shape: string; method: 'lora' | 'full'; warmup: number; steps: number }[];
  nanogpt: { backend: 'wasm' | 'cpu'; shape: string; warmup: number; steps: number }[];
  matmulN: number;
}

const METHODS: BenchMethod[] = ['lora', 'qlora', 'full'];

/** What a full run measures, and the tiny plan that exercises every path in about 20 seconds. */
function plan(size: 'full' | 'tiny'): Plan {
  if (size === 'tiny') {
    const train = (method: BenchMethod): BenchRequest => ({ kind: 'train', shape: 'tiny', method, warmup: 1, steps: 2 });
    return {
      size,
      matmulN: 128,
      node: [
        ...(['wasm', 'cpu'] as const).flatMap((backend) => [
          { backend, req: { kind: 'matmul', n: 128, reps: 2 } as BenchRequest },
          ...METHODS.map((m) => ({ backend, req: train(m) })),
        ]),
        { backend: 'wasm', req: { kind: 'generate', shape: 'tiny', promptTokens: 2, newTokens: 8 } },
        { backend: 'webgpu', req: { kind: 'matmul', n: 128, reps: 2 } },
        { backend: 'webgpu', req: train('lora') },
      ],
      browser: [
        ...(['webgpu', 'wasm'] as const).flatMap((backend) => [
          { backend, req: { kind: 'matmul', n: 128, reps: 2 } as BenchRequest },
          { backend, req: train('lora') },
        ]),
        { backend: 'wasm', req: { kind: 'generate', shape: 'tiny', promptTokens: 2, newTokens: 8 } },
        { backend: 'wasm', req: { kind: 'load', shape: 'tiny' } },
      ],
      torch: [{ shape: 'tiny', method: 'lora', warmup: 1, steps: 2 }],
      nanogpt: [{ backend: 'wasm', shape: 'tiny', warmup: 1, steps: 2 }],
    };
  }
  const node: Plan['node'] = [];
  for (const backend of ['wasm', 'cpu'] as const) {
    node.push({ backend, req: { kind: 'matmul', n: 1024, reps: backend === 'cpu' ? 2 : 5 } });
    // The CPU backend takes some 10 s a step at the default shape: fewer steps, and no GPT-2 small.
    for (const method of METHODS) node.push({ backend, req: { kind: 'train', shape: 'default', method, warmup: backend === 'cpu' ? 1 : 3, steps: backend === 'cpu' ? 3 : 10 } });
    // GPT-2 small's full fine-tuning does not fit WebAssembly's 4 GiB (about 3.9 GiB of tensors).
    if (backend === 'wasm') for (const method of ['lora', 'qlora'] as const) node.push({ backend, req: { kind: 'train', shape: 'gpt2-small', method, warmup: 1, steps: 3 } });
  }
  // Its memory against LoRA's, then, on the CPU backend (about two minutes a step there; one timed, one profiled).
  for (const method of ['lora', 'full'] as const) node.push({ backend: 'cpu', req: { kind: 'train', shape: 'gpt2-small', method, warmup: 0, steps: 1 } });
  // WebGPU in Node through Dawn: the system's Vulkan GPU, else Chromium's SwiftShader (the smaller shape then).
  node.push({ backend: 'webgpu', req: { kind: 'matmul', n: 512, reps: 3 } });
  node.push({ backend: 'webgpu', req: { kind: 'train', shape: 'small', method: 'lora', warmup: 1, steps: 3 } });
  // 128 new tokens need a context past 128: the default shape with 256 positions.
  node.push({ backend: 'wasm', req: { kind: 'generate', shape: 'default', promptTokens: 16, newTokens: 128, context: 256 } });
  return {
    size,
    matmulN: 1024,
    node,
    browser: [
      // SwiftShader's WebGPU and WebGL emulate a GPU on the CPU: the smaller shape, few steps.
      ...(['webgpu', 'webgl'] as const).flatMap((backend) => [
        { backend, req: { kind: 'matmul', n: 512, reps: 3 } as BenchRequest },
        { backend, req: { kind: 'train', shape: 'small', method: 'lora', warmup: 1, steps: 3 } as BenchRequest },
      ]),
      { backend: 'wasm', req: { kind: 'matmul', n: 1024, reps: 5 } },
      ...METHODS.map((method) => ({ backend: 'wasm' as const, req: { kind: 'train', shape: 'default', method, warmup: 3, steps: 10 } as BenchRequest })),
      { backend: 'wasm', req: { kind: 'generate', shape: 'default', promptTokens: 16, newTokens: 128, context: 256 } },
      { backend: 'wasm', req: { kind: 'load', shape: 'gpt2-small' } },
    ],
    torch: [
      { shape: 'default', method: 'lora', warmup: 3, steps: 10 },
      { shape: 'default', method: 'full', warmup: 3, steps: 10 },
      { shape: 'gpt2-small', method: 'lora', warmup: 1, steps: 3 },
      { shape: 'gpt2-small', method: 'full', warmup: 1, steps: 3 },
    ],
    nanogpt: [{ backend: 'wasm', shape: 'default', warmup: 3, steps: 10 }],
  };
}

type Row = Record<string, unknown>;

/** The longest one measurement may take before it is stopped and reported as failed. */
const CASE_TIMEOUT_MS = 20 * 60_000;

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * One Node measurement in a child process: `bench.ts case <backend> <request JSON>` prints its
 * result. WebGPU goes to the system's Vulkan GPU; where there is none, to Chromium's SwiftShader.
 */
async function nodeCase(backend: string, req: BenchRequest): Promise<Row> {
  const row = await childCase(backend, req, process.env);
  // Only where no GPU was found: a real GPU's failure is a row of its own.
  const noAdapter = /adapter|navigator\.gpu|vulkan/i.test(String(row.error ?? ''));
  if (backend !== 'webgpu' || !noAdapter || process.env.VK_ICD_FILENAMES || !existsSync(SWIFTSHADER_ICD)) return row;
  const env = { ...process.env, VK_ICD_FILENAMES: SWIFTSHADER_ICD, LD_LIBRARY_PATH: ['/usr/lib/chromium', process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
  return childCase(backend, req, env);
}

function childCase(backend: string, req: BenchRequest, env: NodeJS.ProcessEnv): Promise<Row> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', './src/cli/register.mjs', 'src/cli/bench.ts', 'case', backend, JSON.stringify(req)], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: CASE_TIMEOUT_MS,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      try {
        done(JSON.parse(line));
      } catch {
        // The error's own line (a WebAssembly abort prints the whole module before it): the last that names one.
        const lines = err.split('\n').map((l) => l.trim()).filter((l) => l && l.length < 400 && !l.startsWith('at ') && !l.startsWith('Node.js'));
        const why = [...lines].reverse().find((l) => /error|abort|memory|out of/i.test(l)) ?? lines.pop() ?? '';
        done({ kind: req.kind, backend, ...('shape' in req ? { shape: req.shape } : {}), ...('method' in req ? { method: req.method } : {}), error: `exited ${code ?? 'on a signal'}: ${why}` });
      }
    });
  });
}

/** The child's side: choose the backend, measure once, print one JSON line. */
async function runCase(backend: string, reqJson: string): Promise<void> {
  // Dawn's navigator.gpu first: TensorFlow.js's WebGPU backend registers only where it finds one.
  if (backend === 'webgpu') {
    const { exposeDawn } = await import('./gpu');
    const missing = await exposeDawn();
    if (missing) throw new Error(missing);
  }
  const tf = await import('@tensorflow/tfjs-core');
  const { selectBackend } = await import('../api/backend');
  const { measure } = await import('../core/bench');
  const report = await selectBackend(backend as 'wasm' | 'cpu' | 'webgpu');
  if (report.name !== backend) throw new Error(`asked for ${backend}, got ${report.name}: ${report.fallbacks.map((f) => `${f.backend}: ${f.reason}`).join('; ')}`);
  const req = JSON.parse(reqJson) as BenchRequest;
  if (req.kind === 'load') throw new Error('a load from IndexedDB is measured in the browser');
  const result: Row = await measure(req);
  // Peak resident memory of this process (the WASM heap never shrinks: its high-water mark).
  result.adapter = report.adapter;
  result.peakRssBytes = process.resourceUsage().maxRSS * 1024;
  result.tfjsBytesAfter = tf.memory().numBytes;
  // Written, then exit: a GPU device (Dawn) may keep Node's event loop alive after the work.
  await new Promise<void>((written) => process.stdout.write(`${JSON.stringify(result)}\n`, () => written()));
  process.exit(0);
}

/** PyTorch on the CPU, one thread, OpenBLAS left to detect the core (src/cli/bench-torch.py). */
function torchRows(p: Plan): Row {
  const python = '/usr/bin/python3';
  if (!existsSync(python)) return { skipped: `${python} is not installed (Debian's python3-torch gives PyTorch for this comparison)` };
  const cases = p.torch.map((c) => {
    const s = BENCH_SHAPES[c.shape];
    return {
      name: `${c.shape}-${c.method}`, vocab: s.model.vocab_size, layers: s.model.n_layer, embd: s.model.n_embd, heads: s.model.n_head,
      context: s.model.n_positions, batch: s.batch, block: s.block, method: c.method, r: BENCH_LORA.r, alpha: BENCH_LORA.lora_alpha,
      targets: BENCH_LORA.target_modules, warmup: c.warmup, steps: c.steps,
    };
  });
  // Debian's OpenBLAS reads these; a core type forced for another machine halves its speed here.
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync(python, [join(ROOT, 'src/cli/bench-torch.py'), JSON.stringify({ cases, matmul: p.matmulN })], {
    env, encoding: 'utf8', maxBuffer: 1 << 24, timeout: CASE_TIMEOUT_MS,
  });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line);
  } catch {
    return { skipped: `PyTorch bench failed (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').pop() ?? ''}` };
  }
}

async function nanogptRows(p: Plan): Promise<{ backend: string; shape: string; result: NanoGPTBenchResult }[]> {
  const out = [];
  for (const c of p.nanogpt) {
    const s = BENCH_SHAPES[c.shape];
    const result = await benchNanoGPT({
      backend: c.backend, vocab: s.model.vocab_size, layers: s.model.n_layer, embd: s.model.n_embd, heads: s.model.n_head,
      context: s.model.n_positions, batch: s.batch, block: s.block, warmup: c.warmup, steps: c.steps,
    }).catch((e: Error): NanoGPTBenchResult => ({ skipped: `it failed: ${e.message.split('\n')[0]}` }));
    out.push({ backend: c.backend, shape: c.shape, result });
  }
  return out;
}

/** The browser rows: the built studio in headless Chromium, each backend in a page of its own, through the worker's bench(). */
async function browserRows(p: Plan): Promise<Row[] | { skipped: string }> {
  const chromiumPath = process.env.TABTUNE_CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(chromiumPath)) return { skipped: `${chromiumPath} is not installed (apt-get install chromium)` };
  const { chromium } = await import('playwright-core');
  const { build, preview } = await import('vite');
  if (!process.env.TABTUNE_SKIP_BUILD || !existsSync(join(ROOT, 'dist', 'index.html'))) await build({ root: ROOT, logLevel: 'error' });
  const server = await preview({ root: ROOT, logLevel: 'error', preview: { port: 0, host: '127.0.0.1', strictPort: false } });
  const url = server.resolvedUrls?.local[0];
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu'],
  });
  const rows: Row[] = [];
  try {
    for (const backend of [...new Set(p.browser.map((c) => c.backend))]) {
      // The offline copy (service worker) would copy the whole build into the profile: not part of a measurement.
      const context = await browser.newContext({ serviceWorkers: 'block' });
      const page = await context.newPage();
      try {
        await page.goto(`${url}?backend=${backend}`);
        await page.waitForSelector('[data-testid=backend-name]', { timeout: 120_000 });
        const got = await page.textContent('[data-testid=backend-name]');
        for (const c of p.browser.filter((x) => x.backend === backend)) {
          if (got !== backend) {
            rows.push({ kind: c.req.kind, backend, error: `the page started ${got}, not ${backend}` });
            continue;
          }
          page.setDefaultTimeout(CASE_TIMEOUT_MS);
          const row = await page
            .evaluate((req) => (globalThis as unknown as { tabtune: { client: { bench(r: unknown): Promise<Row> } } }).tabtune.client.bench(req), c.req)
            .catch((e: Error) => ({ kind: c.req.kind, backend, ...('shape' in c.req ? { shape: c.req.shape } : {}), error: e.message.split('\n')[0] }));
          rows.push({ ...row, browser: true, adapter: await page.textContent('[data-testid=backend-name]').catch(() => null) });
          process.stderr.write(`  browser ${backend} ${c.req.kind} ${'shape' in c.req ? c.req.shape : ''} done\n`);
        }
      } catch (e) {
        rows.push({ kind: 'page', backend, error: (e as Error).message.split('\n')[0] });
      } finally {
        await context.close();
      }
    }
  } finally {
    await browser.close();
    await server.close();
  }
  return rows;
}

const fmt = (x: unknown, digits = 0) => (typeof x === 'number' && Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-');
const mib = (x: unknown) => (typeof x === 'number' ? `${fmt(x / 2 ** 20)} MiB` : '-');

/** The table: one line per measurement, ratios to PyTorch and nanogpt where they ran on the same shape. */
function table(results: Results): string {
  const lines: string[] = [];
  const peak = new Map<string, number>();
  for (const r of [...results.node, ...(Array.isArray(results.browser) ? results.browser : [])]) {
    if (r.kind === 'matmul' && typeof r.gflops === 'number') peak.set(`${r.browser ? 'browser ' : ''}${r.backend}`, r.gflops);
  }
  const torch = new Map<string, Row>();
  const t = results.torch as { cases?: Row[]; matmul?: { gflops: number } };
  for (const c of t.cases ?? []) torch.set(String(c.name), c);
  // GFLOP/s counts the model's FLOPs (trainFlops), against the backend's own measured matmul peak.
  lines.push(`${'where'.padEnd(16)}${'measurement'.padEnd(28)}${'median ms'.padStart(11)}${'tokens/s'.padStart(11)}${'GFLOP/s'.padStart(9)}${'of peak'.padStart(9)}${'peak tfjs'.padStart(12)}${'peak RSS'.padStart(12)}  vs`);
  for (const r of [...results.node, ...(Array.isArray(results.browser) ? results.browser : [])]) {
    const where = `${r.browser ? 'browser' : 'node'} ${r.backend}`;
    if (r.error) {
      lines.push(`${where.padEnd(16)}${[r.kind, r.method, r.shape].filter(Boolean).join(' ').padEnd(28)}  failed: ${r.error}`);
      continue;
    }
    if (r.kind === 'matmul') lines.push(`${where.padEnd(16)}${`matmul ${r.n}^3 (peak)`.padEnd(28)}${fmt(r.medianMs, 1).padStart(11)}${''.padStart(11)}${fmt(r.gflops, 1).padStart(9)}`);
    if (r.kind === 'train') {
      const p = peak.get(`${r.browser ? 'browser ' : ''}${r.backend}`);
      const ref = torch.get(`${r.shape}-${r.method === 'qlora' ? 'lora' : r.method}`);
      const vs = ref && typeof ref.medianMs === 'number' && !r.browser ? `${fmt((r.medianMs as number) / ref.medianMs, 1)}x PyTorch's step time` : '';
      lines.push(
        `${where.padEnd(16)}${`train ${r.method} ${r.shape} ${r.batch}x${r.block}`.padEnd(28)}${fmt(r.medianMs).padStart(11)}${fmt(r.tokensPerSec).padStart(11)}${fmt(r.gflops, 1).padStart(9)}${(p ? `${fmt((100 * (r.gflops as number)) / p)}%` : '-').padStart(9)}${mib(r.peakBytes).padStart(12)}${mib(r.peakRssBytes).padStart(12)}  ${vs}`,
      );
    }
    if (r.kind === 'generate') {
      const c = r.cached as Row;
      const u = r.uncached as Row;
      lines.push(`${where.padEnd(16)}${`generate ${r.newTokens} (KV cache)`.padEnd(28)}${`${fmt(c.firstTokenMs)} TTFT`.padStart(11)}${fmt(c.tokensPerSec).padStart(11)}   ${fmt(r.speedup, 1)}x the uncached ${fmt(u.tokensPerSec)} tokens/s`);
    }
    if (r.kind === 'load') lines.push(`${where.padEnd(16)}${`load ${r.shape} from IndexedDB`.padEnd(28)}${fmt(r.loadMs).padStart(11)}   ${mib(r.bytes)} (stored in ${fmt(r.storeMs)} ms)`);
  }
  if (!Array.isArray(results.browser)) lines.push(`browser: skipped: ${results.browser.skipped}`);
  if ('skipped' in results.torch) lines.push(`PyTorch: skipped: ${results.torch.skipped}`);
  else {
    lines.push(`PyTorch ${t && (results.torch as Row).torch} (${(results.torch as Row).blas}, ${(results.torch as Row).threads} thread): matmul ${fmt(t.matmul?.gflops, 1)} GFLOP/s`);
    for (const c of t.cases ?? []) {
      const [shape, method] = String(c.name).split(/-(?=[^-]+$)/);
      const s = BENCH_SHAPES[shape];
      const g = s ? trainFlops(s.model, s.batch, s.block, method as BenchMethod) / (c.medianMs as number) / 1e6 : NaN;
      lines.push(`${'pytorch cpu'.padEnd(16)}${`train ${method} ${shape}`.padEnd(28)}${fmt(c.medianMs).padStart(11)}${fmt(c.tokensPerSec).padStart(11)}${fmt(g, 1).padStart(9)}${(t.matmul ? `${fmt((100 * g) / t.matmul.gflops)}%` : '-').padStart(9)}${''.padStart(12)}${mib(c.peakRssBytes).padStart(12)}`);
    }
  }
  for (const n of results.nanogpt) {
    if ('skipped' in n.result) {
      lines.push(`nanogpt: skipped: ${n.result.skipped}`);
      continue;
    }
    const ours = results.node.find((r) => r.kind === 'train' && !r.error && r.backend === n.backend && r.shape === n.shape && r.method === 'full');
    const ratio = ours ? (ours.tokensPerSec as number) / n.result.tokensPerSec : NaN;
    lines.push(
      `${`nanogpt ${n.backend}`.padEnd(16)}${`train full ${n.shape}`.padEnd(28)}${fmt(n.result.medianMs).padStart(11)}${fmt(n.result.tokensPerSec).padStart(11)}   tabtune's full fine-tuning: ${fmt(ratio, 2)}x its tokens/s`,
      `${''.padEnd(16)}shims for Node 20 (the JSON says why): ${n.result.shims.map((x) => x.split(/[:(]/)[0].trim()).join('; ') || 'none'}`,
    );
  }
  return lines.join('\n');
}

interface Results {
  when: string;
  size: string;
  machine: { cpus: number; node: string };
  node: Row[];
  browser: Row[] | { skipped: string };
  torch: Row;
  nanogpt: { backend: string; shape: string; result: NanoGPTBenchResult }[];
}

export async function bench(argv: string[]): Promise<number> {
  if (argv[0] === 'case') {
    await runCase(argv[1], argv[2]);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: 'string', default: 'full' },
      only: { type: 'string' },
      match: { type: 'string' },
      out: { type: 'string', default: join(ROOT, '.tabtune', 'bench.json') },
    },
  });
  if (values.size !== 'full' && values.size !== 'tiny') throw new Error(`--size is full or tiny, not ${values.size}`);
  const only = new Set((values.only ?? PARTS.join(',')).split(',') as Part[]);
  for (const part of only) if (!PARTS.includes(part)) throw new Error(`--only takes ${PARTS.join(', ')}; got ${part}`);
  const p = plan(values.size);
  if (values.match) {
    // Only the measurements whose description holds every word: `--match "wasm gpt2-small"`.
    const words = values.match.split(/\s+/).filter(Boolean);
    const keep = (backend: string, req: BenchRequest) => words.every((w) => [backend, req.kind, 'shape' in req ? req.shape : '', 'method' in req ? req.method : ''].includes(w));
    p.node = p.node.filter((c) => keep(c.backend, c.req));
    p.browser = p.browser.filter((c) => keep(c.backend, c.req));
  }
  const { cpus } = await import('node:os');
  const results: Results = {
    when: new Date().toISOString(),
    size: p.size,
    machine: { cpus: cpus().length, node: process.version },
    node: [],
    browser: { skipped: 'not asked for (--only)' },
    torch: { skipped: 'not asked for (--only)' },
    nanogpt: [],
  };
  if (only.has('node')) {
    for (const c of p.node) {
      process.stderr.write(`  node ${c.backend} ${c.req.kind} ${'shape' in c.req ? c.req.shape : ''} ${'method' in c.req ? c.req.method : ''}\n`);
      results.node.push(await nodeCase(c.backend, c.req));
    }
  }
  if (only.has('torch')) {
    process.stderr.write('  pytorch\n');
    results.torch = torchRows(p);
  }
  if (only.has('nanogpt')) {
    process.stderr.write('  nanogpt\n');
    results.nanogpt = await nanogptRows(p);
  }
  if (only.has('browser')) {
    // A build, server or browser that fails costs the browser rows, not what was measured before.
    results.browser = await browserRows(p).catch((e: Error) => ({ skipped: `the browser part failed: ${e.message.split('\n')[0]}` }));
  }
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, JSON.stringify(results, null, 2));
  console.log(table(results));
  console.log(`\nEvery figure: ${values.out}`);
  const failed = [...results.node, ...(Array.isArray(results.browser) ? results.browser : [])].filter((r) => r.error).length;
  if (failed) console.log(`${failed} measurement(s) failed; their rows say why.`);
  return failed ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await bench(process.argv.slice(2));
}

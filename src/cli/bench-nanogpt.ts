/**
 * Training speed of @genai-fi/nanogpt (a TensorFlow.js GPT trainer with its own kernels) on
 * Node's WASM or CPU backend, so the bench can print ours against it as a ratio.
 *
 * nanogpt ships a bundled copy of tfjs-core. Every tfjs-core copy attaches to one engine and
 * one kernel registry kept on globalThis, so the backend set through our tfjs-core is the one
 * nanogpt's ops run on. The measurement still runs in a child process: nanogpt registers its
 * own 'cpu' backend and kernels, and the shims below change process-wide state (a tfjs flag,
 * Iterator.prototype). None of that should reach the process that runs tabtune's own bench.
 *
 * nanogpt 1.3.0 is built for browsers (and uses JavaScript newer than Node 20's). On Node 20 it
 * needs the shims described by SHIM; each one applied is listed in the result.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as TF from '@tensorflow/tfjs-core';

export interface NanoGPTBenchOptions {
  backend: 'wasm' | 'cpu';
  vocab: number;
  layers: number;
  embd: number;
  heads: number;
  /** The model's context (nanogpt's blockSize). */
  context: number;
  batch: number;
  /** Tokens per training row; nanogpt always trains on rows of its full context. */
  block: number;
  warmup: number;
  steps: number;
}

export type NanoGPTBenchResult =
  | { medianMs: number; tokensPerSec: number; stepsMs: number[]; version: string; shims: string[]; backend: string }
  | { skipped: string };

// Not a literal in import(): the package is optional, and tsc or Vite would otherwise try to resolve it.
const PACKAGE: string = '@genai-fi/nanogpt';
const INSTALL = 'npm install --save-dev @genai-fi/nanogpt@1.3.0';

const SHIM = {
  iterators:
    'Iterator.prototype helpers (map, filter, reduce, toArray, ...) polyfilled: nanogpt uses ES2025 iterator helpers, which Node 20 lacks',
  browserFlag:
    "tfjs flag IS_BROWSER set before the import: nanogpt's bundle replaced Node's util and string_decoder with empty stubs, so its tfjs-core Node platform throws at import and its tfjs-data throws on the first batch; the browser platform it uses instead needs only fetch, TextEncoder and performance, which Node 20 has",
  customKernels: (names: string[]) =>
    `nanogpt's own kernels registered for wasm from their cpu versions, which are written with tfjs ops (nanogpt reuses them unchanged for tfjs-node): ${names.join(', ')}`,
  segmentSum:
    "UnsortedSegmentSum registered for wasm (the gradient of tf.gather, used by the embeddings), computed as oneHot(ids)ᵀ · x on the wasm backend's own MatMul",
};

/**
 * Runs nanogpt's trainer for 1 + warmup + steps steps in a child process and returns the
 * median step time of the last `steps`. Returns { skipped } when the package is not installed
 * or the shape is one nanogpt cannot train; throws when the run itself fails.
 */
export async function benchNanoGPT(o: NanoGPTBenchOptions): Promise<NanoGPTBenchResult> {
  if (o.block !== o.context) {
    return { skipped: `nanogpt trains on rows of its whole context (${o.context}), so block must equal context; got block ${o.block}` };
  }
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve(PACKAGE);
  } catch {
    return { skipped: `${PACKAGE} is not installed (${INSTALL})` };
  }
  const version = String(JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')).version);
  const reply = await runChild(o);
  if ('error' in reply) throw new Error(`nanogpt bench failed on ${o.backend}: ${reply.error}`);
  if ('skipped' in reply) return reply;
  const sorted = [...reply.stepsMs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return {
    medianMs,
    tokensPerSec: (o.batch * o.block * 1000) / medianMs,
    stepsMs: reply.stepsMs,
    version,
    shims: reply.shims,
    backend: reply.backend,
  };
}

type ChildReply = { stepsMs: number[]; shims: string[]; backend: string } | { skipped: string } | { error: string };

/** Starts `node` on this same module (through tsx, as the CLI does) with nanogptChild as the entry; the reply comes over IPC. */
function runChild(o: NanoGPTBenchOptions): Promise<ChildReply> {
  const self = import.meta.url;
  const register = new URL('./register.mjs', self).href;
  const code = `const m = await import(${JSON.stringify(self)}); await m.nanogptChild(${JSON.stringify(o)});`;
  const child = spawn(process.execPath, ['--import', register, '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  // nanogpt logs freely (its whole token array, kernel re-registrations); kept only to explain a failure.
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return new Promise((resolve, reject) => {
    let reply: ChildReply | undefined;
    child.on('message', (m) => {
      reply = m as ChildReply;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (reply) resolve(reply);
      else reject(new Error(`nanogpt bench child exited (${signal ?? `code ${code}`}) without a result:\n${output.trim()}`));
    });
  });
}

// The slice of nanogpt's API used here (its own .d.ts needs tfjs-data types tabtune does not install).
interface NanoLogEntry {
  step: number;
  batchSize: number;
}
interface NanoJob {
  history: NanoLogEntry[] | null;
}
interface NanoLLM {
  on(event: 'loaded', f: () => void): void;
  on(event: 'error', f: (e: Error) => void): void;
  training: {
    on(event: 'progress', f: (job: NanoJob) => void): void;
    on(event: 'completed', f: () => void): void;
    on(event: 'error', f: (id: string, e: Error) => void): void;
    job(options: object, data: Uint16Array[], datasets: { id: string; name: string }[]): Promise<NanoJob>;
  };
  dispose(): void;
}
interface NanoModule {
  TeachableLLM: { create(tokeniser: 'char', config: object): NanoLLM };
}

/** The child's entry: measures, sends one ChildReply to the parent, exits. */
export async function nanogptChild(o: NanoGPTBenchOptions): Promise<void> {
  let reply: ChildReply;
  try {
    reply = await measure(o);
  } catch (e) {
    reply = { error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
  process.send?.(reply, () => process.exit(0));
}

async function measure(o: NanoGPTBenchOptions): Promise<ChildReply> {
  const shims: string[] = [];
  if (polyfillIteratorHelpers()) shims.push(SHIM.iterators);

  // Ours first: it creates the global engine, so the flag below is already set when nanogpt's copy reads it.
  const tf: typeof TF = await import('@tensorflow/tfjs-core');
  if (!tf.env().getBool('IS_BROWSER')) {
    tf.env().set('IS_BROWSER', true);
    shims.push(SHIM.browserFlag);
  }
  let nano: NanoModule;
  try {
    nano = (await import(PACKAGE)) as NanoModule;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') return { skipped: `${PACKAGE} is not installed (${INSTALL})` };
    throw e;
  }

  if (o.backend === 'wasm') shims.push(...registerWasmKernels(tf));
  // The backend as tabtune chooses it (src/api/backend.ts, rule 6): the same WASM settings, so the two compare like for like.
  const { selectBackend } = await import('../api/backend');
  await selectBackend(o.backend);
  const backend = tf.getBackend();
  if (backend !== o.backend) throw new Error(`asked for ${o.backend}, tfjs is on ${backend}`);

  // Version 1 without RoPE is nanogpt's GPT-2 layout: learned positions, tied embeddings, GELU MLP
  // (RMSNorm where GPT-2 has LayerNorm). Version 2, its default, has no kernel for its norm on cpu or wasm.
  const llm = nano.TeachableLLM.create('char', {
    modelType: 'GenAI_NanoGPT_v1',
    useRope: false,
    vocabSize: o.vocab,
    blockSize: o.context,
    nLayer: o.layers,
    nHead: o.heads,
    nEmbed: o.embd,
    mlpFactor: 4,
  });
  await new Promise<void>((resolve, reject) => {
    llm.on('loaded', resolve);
    llm.on('error', reject);
  });

  // nanogpt counts an epoch as its tokens / (batch × context) steps, so this much random text
  // with maxEpochs 1 makes exactly `total` steps. The job's first step is never timed: nothing
  // marks its start, and nanogpt may skip its log (see below).
  const total = 1 + o.warmup + o.steps;
  const tokens = new Uint16Array(total * o.batch * o.context + 1);
  for (let i = 0; i < tokens.length; i++) tokens[i] = Math.floor(Math.random() * o.vocab);

  // logInterval is in milliseconds: at 1 every step after the first is logged (the check runs
  // before the step, on the time since the last log), and logging awaits the step's loss, so the
  // time between two progress events is one step run to completion.
  const ends: { step: number; at: number }[] = [];
  let batchSeen = o.batch;
  const done = new Promise<void>((resolve, reject) => {
    llm.training.on('progress', (job) => {
      const last = job.history?.at(-1);
      if (!last) return;
      ends.push({ step: last.step, at: performance.now() });
      batchSeen = last.batchSize;
    });
    llm.training.on('completed', resolve);
    llm.training.on('error', (_id, e) => reject(e));
  });
  await llm.training.job(
    { method: { type: 'pretraining' }, batchSize: o.batch, maxEpochs: 1, logInterval: 1 },
    [tokens],
    [{ id: 'random', name: 'random tokens' }],
  );
  await done;
  llm.dispose();

  if (batchSeen !== o.batch) throw new Error(`nanogpt trained batches of ${batchSeen}, not ${o.batch}`);
  const last = ends.at(-1);
  if (!last || last.step !== total) throw new Error(`nanogpt ran ${last?.step ?? 0} steps, expected ${total}`);
  // Should a step still go unlogged (one started within 1 ms of the last log), the next log
  // covers both; they share its time.
  const stepsMs: number[] = [];
  for (let i = 1; i < ends.length; i++) {
    const n = ends[i].step - ends[i - 1].step;
    for (let k = 0; k < n; k++) stepsMs.push((ends[i].at - ends[i - 1].at) / n);
  }
  if (stepsMs.length < o.steps) throw new Error(`only ${stepsMs.length} of ${o.steps} steps could be timed`);
  return { stepsMs: stepsMs.slice(-o.steps), shims, backend };
}

/** Installs the ES2025 iterator helpers nanogpt calls; false when the runtime has them. */
function polyfillIteratorHelpers(): boolean {
  const proto = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())) as Record<string, unknown>;
  if (typeof proto.map === 'function') return false;
  type Fn = (v: unknown, i: number) => unknown;
  const rest = (it: Iterator<unknown>): Iterable<unknown> => ({ [Symbol.iterator]: () => it });
  const helpers: Record<string, (this: Iterator<unknown>, ...a: never[]) => unknown> = {
    *map(f: Fn) {
      let i = 0;
      for (const v of rest(this)) yield f(v, i++);
    },
    *filter(f: Fn) {
      let i = 0;
      for (const v of rest(this)) if (f(v, i++)) yield v;
    },
    *flatMap(f: Fn) {
      let i = 0;
      for (const v of rest(this)) yield* f(v, i++) as Iterable<unknown>;
    },
    *take(n: number) {
      if (n <= 0) return;
      for (const v of rest(this)) {
        yield v;
        if (--n <= 0) return;
      }
    },
    *drop(n: number) {
      for (const v of rest(this)) if (n-- <= 0) yield v;
    },
    reduce(f: (acc: unknown, v: unknown, i: number) => unknown, ...init: unknown[]) {
      let i = 0;
      let acc = init[0];
      if (!init.length) {
        const first = this.next();
        if (first.done) throw new TypeError('Reduce of empty iterator with no initial value');
        acc = first.value;
        i = 1;
      }
      for (const v of rest(this)) acc = f(acc, v, i++);
      return acc;
    },
    toArray() {
      return [...rest(this)];
    },
    forEach(f: Fn) {
      let i = 0;
      for (const v of rest(this)) f(v, i++);
    },
    some(f: Fn) {
      let i = 0;
      for (const v of rest(this)) if (f(v, i++)) return true;
      return false;
    },
    every(f: Fn) {
      let i = 0;
      for (const v of rest(this)) if (!f(v, i++)) return false;
      return true;
    },
    find(f: Fn) {
      let i = 0;
      for (const v of rest(this)) if (f(v, i++)) return v;
      return undefined;
    },
  };
  for (const [name, value] of Object.entries(helpers)) {
    Object.defineProperty(proto, name, { value, writable: true, configurable: true });
  }
  return true;
}

/** Gives the wasm backend what nanogpt's training calls and tfjs-backend-wasm 4.22 lacks; returns the shims applied. */
function registerWasmKernels(tf: typeof TF): string[] {
  const shims: string[] = [];
  // tfjs-core exports every standard kernel name as a string constant; the other cpu kernels are nanogpt's.
  const standard = new Set<unknown>(Object.values(tf).filter((v) => typeof v === 'string'));
  const copied: string[] = [];
  for (const k of tf.getKernelsForBackend('cpu')) {
    if (standard.has(k.kernelName) || tf.getKernel(k.kernelName, 'wasm')) continue;
    tf.registerKernel({ ...k, backendName: 'wasm' });
    copied.push(k.kernelName);
  }
  if (copied.length) shims.push(SHIM.customKernels(copied));

  if (!tf.getKernel(tf.UnsortedSegmentSum, 'wasm')) {
    tf.registerKernel({
      kernelName: tf.UnsortedSegmentSum,
      backendName: 'wasm',
      kernelFunc: ({ inputs, attrs }) =>
        tf.tidy(() => {
          const x = inputs.x as TF.Tensor;
          const segmentIds = inputs.segmentIds as TF.Tensor;
          const numSegments = (attrs as { numSegments: number }).numSegments;
          const ids = tf.reshape(segmentIds, [-1]);
          const inner = x.shape.slice(segmentIds.rank);
          const rows = tf.reshape(x, [ids.size, inner.reduce((a, b) => a * b, 1)]);
          // A negative id gives an all-zero one-hot row, so it is dropped, as the kernel specifies.
          // Transposed first: tfjs WASM's product with transposeA takes a generic path some 40x
          // slower than a plain one, which would charge nanogpt for our shim.
          const sums = tf.matMul(tf.transpose(tf.oneHot(tf.cast(ids, 'int32'), numSegments)), rows);
          return tf.reshape(sums, [numSegments, ...inner]);
        }),
    });
    shims.push(SHIM.segmentSum);
  }
  return shims;
}

/**
 * The one place where tabtune chooses a TensorFlow.js backend (rule 6). Order: a hardware
 * WebGPU adapter, hardware WebGL, WASM, CPU. Software GPUs (a WebGPU fallback adapter,
 * SwiftShader or llvmpipe WebGL) train about 9x slower than WASM, so they are passed over
 * unless asked for by name, which is how tests run on SwiftShader's WebGPU.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
// Registers 'webgpu' only where navigator.gpu exists.
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import type { BackendFallback, BackendName, BackendReport, BackendRequest } from './protocol';

export const BACKEND_ORDER: BackendName[] = ['webgpu', 'webgl', 'wasm', 'cpu'];

export interface BackendOptions {
  /** Where the browser finds the .wasm files (Vite asset URLs); Node reads them from the package. */
  wasmPaths?: Record<string, string>;
  /** Called once if the GPU device is lost after the backend started. */
  onLost?: (reason: string) => void;
  /** Backends not to try, with the reason shown to the user (a device that was lost, say). */
  exclude?: BackendFallback[];
}

interface Probe {
  available: boolean;
  reason?: string;
  adapter: string;
  software: boolean;
}

const SOFTWARE_RENDERER = /swiftshader|llvmpipe|softpipe|lavapipe|software|basic render/i;

export function isBackendRequest(x: string): x is BackendRequest {
  return x === 'auto' || (BACKEND_ORDER as string[]).includes(x);
}

export async function selectBackend(request: BackendRequest, opts: BackendOptions = {}): Promise<BackendReport> {
  const candidates = request === 'auto' ? BACKEND_ORDER : [request, ...BACKEND_ORDER.filter((b) => b !== request)];
  const fallbacks: BackendFallback[] = [];
  for (const name of candidates) {
    const excluded = opts.exclude?.find((e) => e.backend === name);
    if (excluded) {
      fallbacks.push(excluded);
      continue;
    }
    const probe = await probeBackend(name, opts);
    if (!probe.available) {
      fallbacks.push({ backend: name, reason: probe.reason ?? 'not available' });
      continue;
    }
    if (probe.software && name !== request) {
      fallbacks.push({
        backend: name,
        reason: `${probe.adapter} is a software (CPU-emulated) GPU; WASM trains about 9x faster on it. Choose ${name} explicitly to use it anyway.`,
      });
      continue;
    }
    const failure = await start(name);
    if (failure) {
      fallbacks.push({ backend: name, reason: failure });
      continue;
    }
    const report: BackendReport = {
      name: tf.getBackend() as BackendName,
      requested: request,
      adapter: name === 'wasm' ? await wasmDescription() : probe.adapter,
      software: probe.software,
      fallbacks,
      lost: null,
      maxBufferBytes: name === 'webgpu' ? deviceBufferLimit() : null,
      tfjsVersion: tf.version_core,
    };
    if (name === 'webgpu') watchDeviceLoss(report, opts.onLost);
    return report;
  }
  throw new Error(`no TensorFlow.js backend could start: ${fallbacks.map((f) => `${f.backend}: ${f.reason}`).join('; ')}`);
}

async function probeBackend(name: BackendName, opts: BackendOptions): Promise<Probe> {
  switch (name) {
    case 'webgpu':
      return probeWebGPU();
    case 'webgl':
      return probeWebGL();
    case 'wasm':
      if (typeof WebAssembly !== 'object') return { available: false, reason: 'WebAssembly missing', adapter: '', software: false };
      // Threaded WASM needs cross-origin isolation and breaks in a minified build.
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
      if (opts.wasmPaths) setWasmPaths(opts.wasmPaths);
      return { available: true, adapter: 'WebAssembly', software: false };
    case 'cpu':
      return { available: true, adapter: 'JavaScript CPU backend', software: false };
  }
}

interface GPUAdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
}

async function probeWebGPU(): Promise<Probe> {
  const gpu = (globalThis.navigator as { gpu?: { requestAdapter(o?: object): Promise<GPUAdapterLike | null> } } | undefined)?.gpu;
  if (!gpu) return { available: false, reason: 'WebGPU missing: navigator.gpu is not defined here', adapter: '', software: false };
  if (!tf.findBackendFactory('webgpu')) {
    return { available: false, reason: 'WebGPU missing: the tfjs WebGPU backend did not register', adapter: '', software: false };
  }
  let adapter: GPUAdapterLike | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { available: false, reason: `adapter refused: requestAdapter() threw ${errorText(e)}`, adapter: '', software: false };
  }
  if (!adapter) return { available: false, reason: 'adapter refused: requestAdapter() returned null', adapter: '', software: false };
  const info = adapter.info ?? {};
  const software = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter);
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s) => s && s.length > 0);
  const text = parts.length ? parts.join(' ') : 'unnamed adapter';
  return { available: true, adapter: `WebGPU ${text}${software ? ' (fallback adapter)' : ''}`, software };
}

function probeWebGL(): Probe {
  type GL = WebGLRenderingContext | WebGL2RenderingContext;
  let gl: GL | null = null;
  try {
    if (typeof OffscreenCanvas !== 'undefined') {
      const c = new OffscreenCanvas(1, 1);
      gl = (c.getContext('webgl2') ?? c.getContext('webgl')) as GL | null;
    } else if (typeof document !== 'undefined') {
      const c = document.createElement('canvas');
      gl = (c.getContext('webgl2') ?? c.getContext('webgl')) as GL | null;
    } else {
      return { available: false, reason: 'WebGL missing: no OffscreenCanvas or document here', adapter: '', software: false };
    }
  } catch (e) {
    return { available: false, reason: `WebGL missing: ${errorText(e)}`, adapter: '', software: false };
  }
  if (!gl) return { available: false, reason: 'WebGL missing: could not create a WebGL context', adapter: '', software: false };
  const ext = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = String(ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  return { available: true, adapter: `WebGL ${renderer}`, software: SOFTWARE_RENDERER.test(renderer) };
}

/** Starts a backend and runs one small op on it; returns why it failed, or null. */
async function start(name: BackendName): Promise<string | null> {
  try {
    if (!(await tf.setBackend(name))) return `tf.setBackend('${name}') failed to initialise`;
    await tf.ready();
    const t = tf.tidy(() => tf.sum(tf.mul(tf.tensor1d([1, 2, 3]), 2)));
    // Read back once: proves the device computes, not only that it was created.
    const v = (await t.data())[0];
    t.dispose();
    if (v !== 12) return `smoke test on ${name} gave ${v} instead of 12`;
    // Half-float WebGL textures underflow AdamW's epsilon and the loss turns to NaN within steps.
    if (name === 'webgl' && !tf.env().getBool('WEBGL_RENDER_FLOAT32_CAPABLE')) {
      return 'this GPU renders only 16-bit floats in WebGL, too coarse for training';
    }
    return null;
  } catch (e) {
    return `failed to start: ${errorText(e)}`;
  }
}

async function wasmDescription(): Promise<string> {
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  return `WebAssembly (SIMD ${simd ? 'on' : 'off'}, single thread)`;
}

/** What the device tfjs created allows (tfjs asks the adapter for its maximum limits). */
function deviceBufferLimit(): number | null {
  const limits = (tf.backend() as unknown as { device?: { limits?: { maxStorageBufferBindingSize?: number; maxBufferSize?: number } } }).device?.limits;
  if (!limits?.maxStorageBufferBindingSize) return null;
  return Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize ?? Infinity);
}

function watchDeviceLoss(report: BackendReport, onLost?: (reason: string) => void): void {
  const device = (tf.backend() as unknown as { device?: { lost?: Promise<{ reason?: string; message?: string }> } }).device;
  // tabtune never destroys the device itself, so any resolution here, 'destroyed' included, is a loss.
  void device?.lost?.then((info) => {
    report.lost = `WebGPU device lost (${info.reason ?? 'unknown'}): ${info.message || 'no message'}`;
    onLost?.(report.lost);
  });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

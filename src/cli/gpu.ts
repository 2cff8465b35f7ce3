/**
 * WebGPU for the command line: Node has no navigator.gpu, but Dawn (the npm package `webgpu`,
 * Chrome's own WebGPU implementation) gives one. Exposed before TensorFlow.js's WebGPU backend is
 * imported (it registers itself only where navigator.gpu exists), so the one backend choice
 * (src/api/backend.ts) sees a GPU as in a browser: a hardware adapter is taken for `auto`, a
 * software one (SwiftShader) only when `--backend webgpu` asks for it.
 *
 * Dawn finds GPUs through the system's Vulkan loader. To use Chromium's SwiftShader on a machine
 * without a GPU: VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json LD_LIBRARY_PATH=/usr/lib/chromium
 */
import { existsSync } from 'node:fs';

export async function exposeDawn(): Promise<string | null> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return null;
  let dawn: { create(flags: string[]): unknown; globals: Record<string, unknown> };
  try {
    dawn = (await import('webgpu')) as unknown as typeof dawn;
  } catch (e) {
    return `the webgpu package (Dawn) is not installed: ${(e as Error).message.split('\n')[0]}`;
  }
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create([]);
  // Node 21+ has a navigator (without gpu): gpu is added to it; Node 20 has none.
  if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  return null;
}

/**
 * Whether the system has a Vulkan loader for Dawn to find GPUs with. Without one, Dawn warns on
 * the terminal at every start; `auto` then does not ask it (an explicit `--backend webgpu` does).
 */
export function vulkanPresent(): boolean {
  if (process.env.VK_ICD_FILENAMES) return true;
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  return process.platform !== 'linux' || dirs.some((d) => existsSync(`${d}/libvulkan.so.1`));
}

/** The --backend a command line asks for (default auto), read before the CLI's own parsing. */
export function requestedBackend(argv: string[]): string {
  const i = argv.findIndex((a) => a === '--backend' || a.startsWith('--backend='));
  if (i < 0) return 'auto';
  return argv[i].includes('=') ? argv[i].split('=')[1] : (argv[i + 1] ?? 'auto');
}

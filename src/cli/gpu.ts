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
  // Node 21+ defines navigator without gpu; Node 20 has none.
  Object.defineProperty(globalThis, 'navigator', { value: { ...(g.navigator ?? {}), gpu: dawn.create([]) }, configurable: true, writable: true });
  return null;
}

/** The --backend a command line asks for (default auto), read before the CLI's own parsing. */
export function requestedBackend(argv: string[]): string {
  const i = argv.findIndex((a) => a === '--backend' || a.startsWith('--backend='));
  if (i < 0) return 'auto';
  return argv[i].includes('=') ? argv[i].split('=')[1] : (argv[i + 1] ?? 'auto');
}

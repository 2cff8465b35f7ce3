#!/usr/bin/env node
// The `tabtune` command: loads the TypeScript sources through tsx, then runs the CLI.
import './register.mjs';

// WebGPU through Dawn, before anything imports TensorFlow.js's WebGPU backend (src/cli/gpu.ts).
const { exposeDawn, requestedBackend, vulkanPresent } = await import('./gpu.ts');
const asked = requestedBackend(process.argv.slice(2));
if (asked === 'webgpu' || (asked === 'auto' && vulkanPresent())) {
  const missing = await exposeDawn();
  if (missing && asked === 'webgpu') process.stderr.write(`tabtune: no WebGPU in Node: ${missing}\n`);
}

const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));

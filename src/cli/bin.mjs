#!/usr/bin/env node
// The `tabtune` command: loads the TypeScript sources through tsx, then runs the CLI.
import './register.mjs';

// WebGPU through Dawn, before anything imports TensorFlow.js's WebGPU backend (src/cli/gpu.ts).
const { exposeDawn, requestedBackend } = await import('./gpu.ts');
if (['auto', 'webgpu'].includes(requestedBackend(process.argv.slice(2)))) await exposeDawn();

const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));

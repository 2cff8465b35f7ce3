#!/usr/bin/env node
// `npm test`: builds the studio once, runs every test file (Node unit tests of the core, then
// browser tests in headless Chromium) with Node's test runner, and ends with one line
// "N passed, N failed". Arguments narrow the run to files whose path contains them:
//   npm test -- unit        npm test -- browser/studio
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = fileURLToPath(new URL('..', import.meta.url));
const filters = process.argv.slice(2);
const files = ['test/unit', 'test/browser']
  .flatMap((dir) => readdirSync(join(root, dir)).filter((f) => f.endsWith('.test.ts')).sort().map((f) => `${dir}/${f}`))
  .filter((f) => filters.length === 0 || filters.some((p) => f.includes(p)));
if (files.length === 0) {
  console.error(`no test file matches ${filters.join(' ')}`);
  process.exit(1);
}

const env = { ...process.env };
if (files.some((f) => f.startsWith('test/browser/'))) {
  console.log('building the studio (vite build)…');
  const b = spawnSync('npx', ['vite', 'build', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  if (b.status !== 0) process.exit(b.status ?? 1);
  env.TABTUNE_SKIP_BUILD = '1';
}
// Chromium's own SwiftShader Vulkan driver gives Dawn (npm `webgpu`) an adapter for the
// Node WebGPU tests; Debian's lavapipe does not work with Dawn.
const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!env.VK_ICD_FILENAMES && existsSync(swiftshader)) {
  env.VK_ICD_FILENAMES = swiftshader;
  env.LD_LIBRARY_PATH = ['/usr/lib/chromium', env.LD_LIBRARY_PATH].filter(Boolean).join(':');
}

const child = spawn(
  process.execPath,
  ['--import', './src/cli/register.mjs', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] },
);
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-4000);
});
child.on('close', (code) => {
  const count = (name) => Number(new RegExp(`ℹ ${name} (\\d+)`).exec(tail)?.[1] ?? NaN);
  // A test that runs past its timeout is "cancelled" by node:test: it failed.
  const [passed, failed, skipped] = [count('pass'), count('fail') + count('cancelled'), count('skipped')];
  if (Number.isNaN(passed) || Number.isNaN(failed)) {
    console.log(`0 passed, 1 failed (the test runner exited ${code} without a summary)`);
    process.exit(1);
  }
  console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(code === 0 && failed === 0 ? 0 : 1);
});

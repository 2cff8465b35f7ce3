import assert from 'node:assert/strict';
import { test } from 'node:test';
import { selectBackend } from '../../src/api/backend';
import '../support/tf-node';

test('in Node, auto skips WebGPU and WebGL with reasons and lands on WASM', async () => {
  const r = await selectBackend('auto');
  assert.equal(r.name, 'wasm');
  assert.equal(r.requested, 'auto');
  assert.deepEqual(r.fallbacks.map((f) => f.backend), ['webgpu', 'webgl']);
  assert.match(r.fallbacks[0].reason, /WebGPU missing/);
  assert.match(r.adapter, /WebAssembly/);
});

test('a forced backend that cannot start falls back, and the report says so', async () => {
  const r = await selectBackend('webgpu');
  assert.equal(r.requested, 'webgpu');
  assert.notEqual(r.name, 'webgpu');
  assert.equal(r.fallbacks[0].backend, 'webgpu');
  const cpu = await selectBackend('cpu');
  assert.equal(cpu.name, 'cpu');
  assert.deepEqual(cpu.fallbacks, []);
});

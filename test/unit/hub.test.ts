import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '../../src/api/backend';
import { HubError, parseRepo } from '../../src/api/hub';
import { Studio } from '../../src/api/studio';
import { memoryKV } from '../../src/store/kv';
import { startHub, type HubServer } from '../support/hub-server';
import { useBackend } from '../support/tf-node';

let hub: HubServer;
before(async () => {
  await useBackend('cpu');
  hub = await startHub();
});
after(() => hub.close());

const newStudio = async (kv = memoryKV()) => {
  const s = new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await s.init('cpu');
  return s;
};

test('repository names and hub URLs are read; anything else is refused with the field named', () => {
  assert.equal(parseRepo('HuggingFaceTB/SmolLM2-135M'), 'HuggingFaceTB/SmolLM2-135M');
  assert.equal(parseRepo(' https://huggingface.co/HuggingFaceTB/SmolLM2-135M/tree/main '), 'HuggingFaceTB/SmolLM2-135M');
  assert.equal(parseRepo('https://huggingface.co/openai-community/gpt2/resolve/main/config.json'), 'openai-community/gpt2');
  assert.throws(() => parseRepo('gpt2'), (e: unknown) => e instanceof HubError && e.field === 'repo');
  assert.throws(() => parseRepo('a b/c'), HubError);
});

test('a hub model is inspected from a few kilobytes, then downloaded, stored and matches PyTorch', async () => {
  const studio = await newStudio();
  hub.bytesSent = 0;
  const info = await studio.inspectHubModel('tabtune-test/tiny-gpt2', hub.url);
  assert.equal(info.arch, 'gpt2');
  assert.equal(info.name, 'tiny-gpt2');
  assert.ok(hub.bytesSent < 8192, `inspecting read ${hub.bytesSent} bytes: config, headers and a few sampled bytes only`);
  const imported = await studio.importHubModel('https://example.org/tabtune-test/tiny-gpt2', hub.url, () => undefined);
  const golden = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/tiny-gpt2/golden.json', import.meta.url)), 'utf8'));
  const out = await studio.logits(imported.id, { ids: golden.ids });
  const err = (golden.logits as number[][]).flat().reduce((m: number, v: number, i: number) => Math.max(m, Math.abs(v - out.logits[i])), 0);
  assert.ok(err < 1e-4, `max abs error ${err}`);
  await assert.rejects(studio.inspectHubModel('tabtune-test/no-such-model', hub.url), /no-such-model has no config\.json/);
});

test('an interrupted download continues where it stopped, without fetching stored tensors again', async () => {
  const repo = 'tabtune-test/tiny-llama-bf16-sharded';
  hub.bytesSent = 0;
  await (await newStudio()).importHubModel(repo, hub.url, () => undefined);
  const fromScratch = hub.bytesSent;

  const kv = memoryKV();
  const studio = await newStudio(kv);
  hub.bytesSent = 0;
  // Sizes, headers and the content fingerprint take the first ranged reads; a few tensors get
  // through after them, then the hub is down.
  hub.failAfterRanges = 22;
  await assert.rejects(studio.importHubModel(repo, hub.url, () => undefined), (e: unknown) => e instanceof HubError && /could not be fetched/.test(e.message));
  assert.deepEqual(await studio.listModels(), [], 'an incomplete model is not listed');
  const firstTry = hub.bytesSent;
  hub.failAfterRanges = null;
  hub.bytesSent = 0;
  const later = await newStudio(kv);
  const done = await later.importHubModel(repo, hub.url, () => undefined);
  assert.ok(firstTry > 0 && hub.bytesSent < fromScratch, `the second attempt fetched ${hub.bytesSent} bytes; a fresh import fetches ${fromScratch}`);
  assert.ok(hub.bytesSent + firstTry >= fromScratch, 'together the attempts fetched everything once');
  assert.deepEqual((await later.listModels()).map((m) => m.id), [done.id]);
  const golden = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/tiny-llama-bf16-sharded/golden.json', import.meta.url)), 'utf8'));
  const out = await later.logits(done.id, { ids: golden.ids });
  const err = (golden.logits as number[][]).flat().reduce((m: number, v: number, i: number) => Math.max(m, Math.abs(v - out.logits[i])), 0);
  assert.ok(err < 1e-4, `resumed model: max abs error ${err}`);
});

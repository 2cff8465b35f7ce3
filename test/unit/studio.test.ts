import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { selectBackend } from '../../src/api/backend';
import type { StepReport } from '../../src/api/protocol';
import { Studio } from '../../src/api/studio';
import { DataError } from '../../src/core/errors';
import { memoryKV } from '../../src/store/kv';
import { SAMPLE_TEXT } from '../support/fixtures';
import { tf, useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

const studioOn = (kv = memoryKV()) => new Studio({ kv, selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
const req = (steps = 12) => ({ preset: 'tiny', text: SAMPLE_TEXT, dataset: 'moby-dick-ch1.txt', steps });

test('Studio: a paused run resumes from its checkpoint and ends where a straight run ends', async () => {
  const straight = studioOn();
  await straight.init('cpu');
  const done = await straight.train(req(), () => undefined);
  assert.equal(done.status, 'done');
  assert.equal(done.step, 12);

  const kv = memoryKV();
  const a = studioOn(kv);
  await a.init('cpu');
  const seen: StepReport[] = [];
  const paused = await a.train(req(), (r) => {
    seen.push(r);
    if (r.step === 6) void a.stop();
  });
  assert.equal(paused.status, 'stopped');
  assert.equal(paused.step, 6, 'pausing writes a checkpoint at the step it stopped on');

  // A second Studio on the same storage: what a reloaded page sees.
  const b = studioOn(kv);
  await b.init('cpu');
  const before = await b.getRun('tiny');
  assert.equal(before?.step, 6);
  const resumedSteps: number[] = [];
  const finished = await b.train(req(), (r) => resumedSteps.push(r.step));
  assert.deepEqual(resumedSteps, [7, 8, 9, 10, 11, 12]);
  assert.equal(finished.status, 'done');
  assert.deepEqual(finished.history.map((h) => h.loss), done.history.map((h) => h.loss));
  assert.equal(tf.memory().numTensors, 0, 'the Studio disposes model and optimizer after a run');
});

test('Studio: a run left "running" by a crash shows as interrupted', async () => {
  const kv = memoryKV();
  const a = studioOn(kv);
  await a.init('cpu');
  await a.train(req(), (r) => {
    if (r.step === 4) void a.stop();
  });
  const raw = (await kv.get<Record<string, unknown>>('run/demo-tiny'))!;
  await kv.set('run/demo-tiny', { ...raw, status: 'running' });
  const b = studioOn(kv);
  assert.equal((await b.getRun('tiny'))?.status, 'interrupted');
});

test('Studio: text too short for the context is refused with the file named, and nothing is lost', async () => {
  const s = studioOn();
  await s.init('cpu');
  await assert.rejects(
    s.train({ preset: 'tiny', text: 'too short', dataset: 'notes.txt' }, () => undefined),
    (e: unknown) => e instanceof DataError && e.file === 'notes.txt' && /notes\.txt/.test(e.message),
  );
  await assert.rejects(s.train({ preset: 'nope', text: SAMPLE_TEXT, dataset: 'x' }, () => undefined), /unknown preset "nope"/);
  // The Studio is usable again after the refusals.
  const run = await s.train(req(3), () => undefined);
  assert.equal(run.status, 'done');
  // Refusing a request on top of a finished run must not replace or mark that run.
  await assert.rejects(s.train({ preset: 'tiny', text: 'short', dataset: 'notes.txt' }, () => undefined), DataError);
  const kept = await s.getRun('tiny');
  assert.equal(kept?.status, 'done');
  assert.deepEqual(kept?.history, run.history);
});

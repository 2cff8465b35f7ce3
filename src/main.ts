import { mount } from 'svelte';
import { StudioClient } from './api/client';
import App from './ui/App.svelte';
import { CompareState } from './ui/compare.svelte';
import { FORM_SETTING, ModelsState } from './ui/models.svelte';
import { BACKEND_CHOICES, BACKEND_SETTING, StudioState } from './ui/studio.svelte';
import { PRESENTER_SETTING, ScreensState } from './ui/screens.svelte';
import { parseWorkshop } from './ui/workshop';
import type { BackendRequest } from './api/protocol';

const params = new URLSearchParams(location.search);
// ?backend= wins; otherwise the choice last made in the header's Backend menu.
const saved = localStorage.getItem(BACKEND_SETTING);
const asked = params.get('backend')?.trim().toLowerCase();
const known = (b: string | null | undefined): b is BackendRequest => !!b && (BACKEND_CHOICES as string[]).includes(b);
const backend = known(asked) ? asked : known(saved) ? saved : 'auto';
const stepsParam = Number(params.get('steps'));

const client = new StudioClient();
const studio = new StudioState(client, {
  backend,
  notice:
    asked && !known(asked)
      ? `Unknown backend "${params.get('backend')}"; using ${backend}. Known: ${BACKEND_CHOICES.join(', ')}.`
      : undefined,
  preset: params.get('preset') ?? 'demo',
  steps: Number.isInteger(stepsParam) && stepsParam > 0 ? stepsParam : undefined,
  sampleUrl: `${import.meta.env.BASE_URL}samples/moby-dick-ch1.txt`,
  sampleName: 'moby-dick-ch1.txt',
});

// ?hub= points at a mirror of the Hugging Face Hub (as HF_ENDPOINT does for Python).
const models = new ModelsState(client, params.get('hub') ?? undefined, { url: `${import.meta.env.BASE_URL}samples/moby-dick-ch1.txt`, name: 'moby-dick-ch1.txt' });

// #train opens that screen; ?presenter=1 (or the choice last made) opens in large type.
const screens = new ScreensState(location.hash, params.get('presenter') === '1' || localStorage.getItem(PRESENTER_SETTING) === '1');
const compare = new CompareState(client, models);

// A handle for the browser tests and for curious users in the console.
(globalThis as { tabtune?: unknown }).tabtune = { client, studio, models, screens, compare };

mount(App, { target: document.getElementById('app')!, props: { studio, models, screens, compare } });
// ?workshop= opens a workshop file (a URL, or a name in the studio's samples) once the worker is up.
const workshop = params.get('workshop');
void studio
  .start()
  .then(() => Promise.all([models.refresh(), models.refreshDatasets(), models.refreshRuns()]))
  .then(async () => {
    // The form of the last visit comes back; a workshop file, if one is named, then sets its own.
    models.restoreForm(localStorage.getItem(FORM_SETTING));
    if (!workshop) return;
    const url = /^https?:\/\//.test(workshop) ? workshop : `${import.meta.env.BASE_URL}samples/${workshop.replace(/[^\w.-]/g, '')}`;
    try {
      const res = await fetch(url);
      if (!res.ok) throw new Error(`the workshop file ${workshop} could not be fetched: HTTP ${res.status}`);
      await models.openWorkshop(parseWorkshop(await res.text(), workshop), false, import.meta.env.BASE_URL);
    } catch (e) {
      models.workshopError = e instanceof Error ? e.message : String(e);
    }
  });

// Runs trained in another tab of this site, watched live.
let ownTab: string | null = null;
void client.tabId().then((t) => (ownTab = t)).catch(() => undefined);
if (typeof BroadcastChannel === 'function') new BroadcastChannel('tabtune-runs').onmessage = (e) => models.heard(e.data, ownTab);

// A fine-tuning run writes a checkpoint when the tab is hidden or closed (the worker may not live on).
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') models.checkpointSoon();
});
addEventListener('pagehide', () => models.checkpointSoon());

// After the first visit the studio works offline: the build's service worker keeps its files (see vite.config.ts).
if (import.meta.env.PROD && 'serviceWorker' in navigator) {
  void navigator.serviceWorker.register(`${import.meta.env.BASE_URL}sw.js`).catch((e) => console.warn('tabtune: no offline copy:', e));
}

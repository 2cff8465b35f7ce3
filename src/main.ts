import { mount } from 'svelte';
import { StudioClient } from './api/client';
import App from './ui/App.svelte';
import { BACKEND_CHOICES, BACKEND_SETTING, StudioState } from './ui/studio.svelte';
import type { BackendRequest } from './api/protocol';

const params = new URLSearchParams(location.search);
// ?backend= wins; otherwise the choice last made in the header's Backend menu.
const backendParam = params.get('backend') ?? localStorage.getItem(BACKEND_SETTING) ?? 'auto';
const stepsParam = Number(params.get('steps'));

const backendKnown = (BACKEND_CHOICES as string[]).includes(backendParam);

const client = new StudioClient();
const studio = new StudioState(client, {
  backend: backendKnown ? (backendParam as BackendRequest) : 'auto',
  notice: backendKnown ? undefined : `Unknown backend "${backendParam}"; choosing automatically. Known: ${BACKEND_CHOICES.join(', ')}.`,
  preset: params.get('preset') ?? 'demo',
  steps: Number.isInteger(stepsParam) && stepsParam > 0 ? stepsParam : undefined,
  sampleUrl: `${import.meta.env.BASE_URL}samples/moby-dick-ch1.txt`,
  sampleName: 'moby-dick-ch1.txt',
});

// A handle for the browser tests and for curious users in the console.
(globalThis as { tabtune?: unknown }).tabtune = { client, studio };

mount(App, { target: document.getElementById('app')!, props: { studio } });
void studio.start();

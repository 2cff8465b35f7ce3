import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [svelte({ configFile: false })],
  // The studio's worker is an ES module (new Worker(url, { type: 'module' })).
  worker: { format: 'es' },
  build: { target: 'es2022', chunkSizeWarningLimit: 4096 },
  preview: { port: 4173, host: '127.0.0.1' },
  server: { host: '127.0.0.1' },
});

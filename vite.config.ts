import { svelte } from '@sveltejs/vite-plugin-svelte';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { defineConfig, type Plugin, type ResolvedConfig } from 'vite';

/** Every file under a folder, as paths relative to it with forward slashes. */
function filesUnder(root: string, dir = root): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...filesUnder(root, full));
    else out.push(relative(root, full).split(sep).join('/'));
  }
  return out.sort();
}

/**
 * After the first visit the studio works offline: the build writes sw.js, a service worker that
 * keeps every file of the build (the app, its worker and WASM, the bundled model and samples) in a
 * cache named by their content. Online, requests go to the network as usual; offline, the cache answers.
 */
function offline(): Plugin {
  let config: ResolvedConfig;
  return {
    name: 'tabtune-offline',
    apply: 'build',
    configResolved(c) {
      config = c;
    },
    closeBundle() {
      const out = resolve(config.root, config.build.outDir);
      // A build that failed leaves nothing to list: its own error is the one to see.
      if (!existsSync(join(out, 'index.html'))) return;
      const files = filesUnder(out).filter((f) => f !== 'sw.js');
      const hash = createHash('sha256');
      for (const f of files) hash.update(f).update(readFileSync(join(out, f)));
      const version = `tabtune-${hash.digest('hex').slice(0, 16)}`;
      const source = readFileSync(new URL('./src/sw.js', import.meta.url), 'utf8')
        .replace('__VERSION__', version)
        .replace('__FILES__', JSON.stringify(['./', ...files.map((f) => `./${f}`)]));
      writeFileSync(join(out, 'sw.js'), source);
    },
  };
}

export default defineConfig({
  plugins: [svelte({ configFile: false }), offline()],
  // The studio's worker is an ES module (new Worker(url, { type: 'module' })).
  worker: { format: 'es' },
  build: { target: 'es2022', chunkSizeWarningLimit: 4096 },
  preview: { port: 4173, host: '127.0.0.1' },
  server: { host: '127.0.0.1' },
});

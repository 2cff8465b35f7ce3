// The studio's service worker (the build fills in the version and the file list; see vite.config.ts).
// Online, every request goes to the network as it would without it; offline, the files of the build
// answer from the cache, so the studio opens and fine-tunes with no connection after the first visit.
// The cache is named by the build's content and by where the studio is served (another deployment
// under another path on the same origin keeps its own).
const VERSION = `__VERSION__@${self.registration.scope}`;
const FILES = __FILES__;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(VERSION)
      // Fresh from the server, never from the HTTP cache: an old index.html must not name new files.
      .then((cache) => cache.addAll(FILES.map((f) => new Request(f, { cache: 'reload' }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('tabtune-') && k.endsWith(`@${self.registration.scope}`) && k !== VERSION).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(
    fetch(request).catch(async () => {
      const cache = await caches.open(VERSION);
      const hit = (await cache.match(request, { ignoreSearch: true, ignoreVary: true })) ?? (request.mode === 'navigate' ? await cache.match('./') : undefined);
      return hit ?? Response.error();
    }),
  );
});

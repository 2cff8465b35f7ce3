/**
 * Shared pieces of the browser tests: a built studio served by Vite's preview server on
 * loopback, and Debian's Chromium driven by playwright-core with real WebGPU (SwiftShader).
 * TABTUNE_CHROMIUM points at another Chrome or Chromium binary.
 */
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { after, before } from 'node:test';
import { build, preview, type PreviewServer } from 'vite';

export const CHROMIUM = process.env.TABTUNE_CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--enable-unsafe-webgpu',
];

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Builds the studio unless TABTUNE_SKIP_BUILD is set (test/run.mjs builds once for all files). */
export async function serveStudio(): Promise<{ url: string; close: () => Promise<void> }> {
  if (!process.env.TABTUNE_SKIP_BUILD || !existsSync(join(ROOT, 'dist', 'index.html'))) {
    await build({ root: ROOT, logLevel: 'error' });
  }
  const server: PreviewServer = await preview({ root: ROOT, logLevel: 'error', preview: { port: 0, host: '127.0.0.1', strictPort: false } });
  const url = server.resolvedUrls?.local[0];
  if (!url) throw new Error('vite preview did not report a URL');
  return { url, close: () => server.close() };
}

export function browserMissing(): string | false {
  return existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM}: install Debian's chromium or set TABTUNE_CHROMIUM`;
}

const open = new Set<BrowserContext>();

/** Closes every browser still open: a failed assertion must not leave Chromium keeping the test process alive. */
export async function closeAll(): Promise<void> {
  await Promise.all([...open].map((c) => c.close().catch(() => undefined)));
  open.clear();
}

/** A persistent profile, so IndexedDB survives reloads and even a browser restart. */
/**
 * A browser with its own profile. The studio's service worker (the offline copy) is blocked unless
 * a test asks for it: it copies the whole build into the profile on the first visit.
 */
export async function launch(
  profileDir = mkdtempSync(join(tmpdir(), 'tabtune-profile-')),
  options: { serviceWorkers?: 'allow' | 'block'; findScreens?: boolean } = {},
): Promise<{ context: BrowserContext; profileDir: string }> {
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    serviceWorkers: options.serviceWorkers ?? 'block',
  });
  open.add(context);
  context.on('close', () => open.delete(context));
  if (options.findScreens !== false) {
    const newPage = context.newPage.bind(context);
    context.newPage = async () => findScreens(await newPage());
  }
  return { context, profileDir };
}

const ACTIONS = ['click', 'dblclick', 'fill', 'check', 'uncheck', 'selectOption', 'setInputFiles', 'press', 'hover', 'focus'] as const;

/**
 * The studio shows one screen at a time. Tests of one feature act on its controls by name, as a
 * person who knows where they are would: an action on a control of a hidden screen first clicks that
 * screen's tab (a real click), and waiting for a control to show waits for it on its screen. The
 * journey test turns this off and goes through the tabs itself.
 */
export function findScreens(page: Page): Page {
  const reveal = async (selector: string) => {
    const el = await page.$(selector).catch(() => null);
    if (!el) return;
    const tab = await el.evaluate((e) => {
      const panel = e.closest('[role=tabpanel]') as HTMLElement | null;
      return panel?.hidden ? panel.getAttribute('aria-labelledby') : null;
    });
    await el.dispose();
    if (tab) await click(`#${tab}`);
  };
  const click = page.click.bind(page);
  for (const name of ACTIONS) {
    const action = (page[name] as (...a: unknown[]) => Promise<unknown>).bind(page);
    (page as unknown as Record<string, unknown>)[name] = async (selector: string, ...rest: unknown[]) => {
      await reveal(selector);
      return action(selector, ...rest);
    };
  }
  const wait = page.waitForSelector.bind(page) as (s: string, o?: { state?: string; timeout?: number }) => Promise<unknown>;
  (page as unknown as Record<string, unknown>).waitForSelector = async (selector: string, opts: { state?: string; timeout?: number } = {}) => {
    if (opts.state && opts.state !== 'visible') return wait(selector, opts);
    await wait(selector, { ...opts, state: 'attached' });
    await reveal(selector);
    return wait(selector, opts);
  };
  return page;
}

/** Collects page errors and console errors so a test can assert there were none. */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
  });
  return errors;
}

/**
 * The studio served for one test file: started before its tests (unless the browser is missing),
 * and every browser and the server closed after them. `server.url` is set once started.
 */
export function studioForTests(): { skip: string | false; server: { url: string } } {
  const skip = browserMissing();
  const server = { url: '' };
  let close: (() => Promise<void>) | undefined;
  before(async () => {
    if (skip) return;
    const s = await serveStudio();
    server.url = s.url;
    close = s.close;
  });
  after(async () => {
    await closeAll();
    await close?.();
  });
  return { skip, server };
}

/** Polls until `ok` holds for what `probe` returns, or fails naming what it waited for. */
export async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 240_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Picks a fixture model's files in the page, imports it, and waits until it is loaded. */
export async function importFixture(page: Page, name: string): Promise<void> {
  const dir = fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
  await page.setInputFiles('[data-testid=model-files]', readdirSync(dir).filter((f) => !f.startsWith('golden')).map((f) => join(dir, f)));
  await page.waitForSelector('[data-testid=model-summary]');
  await page.click('[data-testid=model-import]');
  await page.waitForSelector('[data-testid=model-loaded]');
}

/**
 * The rules of the house (shared/ARCHITECTURE.md), checked on every run so they hold without
 * anyone remembering them. Each checker is also run on a made-up violation, so a checker that
 * stopped seeing anything would fail here rather than pass quietly.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...files(rel));
    else if (/\.(ts|svelte|mjs|js)$/.test(name)) out.push(rel);
  }
  return out;
}

interface Import {
  spec: string;
  typeOnly: boolean;
}

/** Static imports, dynamic imports and re-exports of a source file. */
export function importsOf(source: string): Import[] {
  const out: Import[] = [];
  const re = /\b(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(re)) {
    if (m[4]) out.push({ spec: m[4], typeOnly: false });
    else out.push({ spec: m[3], typeOnly: Boolean(m[2]) });
  }
  return out;
}

/** Resolves a relative import against the importing file, giving a repository path. */
function target(file: string, spec: string): string {
  if (!spec.startsWith('.')) return spec;
  return relative(ROOT, join(ROOT, file, '..', spec));
}

type Rule = (file: string, source: string) => string[];

/** The small pure libraries the core may use besides tfjs-core (ARCHITECTURE.md: "a tokenizer or template engine"; a Parquet reader is of that kind). */
const CORE_LIBRARIES = ['@huggingface/tokenizers', '@huggingface/jinja', 'hyparquet', 'hyparquet-compressors'];

const rule1Core: Rule = (file, source) => {
  if (!file.startsWith('src/core/')) return [];
  const bad = importsOf(source)
    .filter(({ spec }) => {
      if (spec.startsWith('.')) return !target(file, spec).startsWith('src/core/');
      return !spec.startsWith('@tensorflow/tfjs-core') && !CORE_LIBRARIES.includes(spec);
    })
    .map(({ spec }) => `${file} imports ${spec}`);
  const globals = source.match(/\b(window|document|self|globalThis|navigator|location|localStorage|indexedDB)\s*\.|\b(fetch|postMessage|importScripts)\s*\(/g) ?? [];
  return [...bad, ...globals.map((g) => `${file} touches ${g.replace(/\s*[.(]$/, '')}`)];
};

const rule2Idb: Rule = (file, source) =>
  !file.startsWith('src/store/') && importsOf(source).some(({ spec }) => spec === 'idb-keyval') ? [`${file} imports idb-keyval`] : [];

const rule3Protocol: Rule = (file, source) => {
  if (file !== 'src/api/protocol.ts') return [];
  const out = importsOf(source).filter((i) => !i.typeOnly).map((i) => `${file} has a value import of ${i.spec}`);
  if (/^\s*(export\s+)?(default\b|const|let|var|function|class|enum)\b|^\s*export\s*\{/m.test(source)) out.push(`${file} declares runtime code`);
  return out;
};

const rule4Worker: Rule = (file, source) => {
  if (!file.startsWith('workers/')) return [];
  const out: string[] = [];
  const code = source.split('\n').filter((l) => l.trim() && !l.trim().startsWith('//'));
  if (code.length > 20) out.push(`${file} has ${code.length} lines of code; a worker only picks the backend and exposes the Studio`);
  if (/\b(function|class)\b|=>\s*\{/.test(source)) out.push(`${file} defines logic of its own`);
  return out;
};

const rule5Ui: Rule = (file, source) => {
  if (!file.startsWith('src/ui/')) return [];
  return importsOf(source)
    .filter(({ spec }) => {
      if (spec === 'svelte' || spec.startsWith('svelte/')) return false;
      // The charts' library (issue 8 asks for one: small, fast, kept up), with its stylesheet.
      if (spec === 'uplot' || spec.startsWith('uplot/')) return false;
      if (!spec.startsWith('.')) return true;
      const t = target(file, spec);
      return !(t.startsWith('src/ui/') || t === 'src/api/protocol' || t === 'src/api/client');
    })
    .map(({ spec }) => `${file} imports ${spec}`);
};

const rule6Backend: Rule = (file, source) =>
  file !== 'src/api/backend.ts' && /\b(setBackend|setWasmPaths)\s*\(/.test(source) && !file.startsWith('test/')
    ? [`${file} chooses a backend; only src/api/backend.ts may`]
    : [];

const RULES: [string, Rule][] = [
  ['1: src/core imports only tfjs-core, a tokenizer and a template engine, and itself, and touches no browser globals', rule1Core],
  ['2: idb-keyval only in src/store', rule2Idb],
  ['3: src/api/protocol.ts is types only', rule3Protocol],
  ['4: the worker only picks the backend and exposes the Studio', rule4Worker],
  ['5: src/ui imports svelte, the API types and the client only', rule5Ui],
  ['6: the backend is chosen in one place', rule6Backend],
];

const SOURCES = [...files('src'), ...files('workers')].map((f) => [f, readFileSync(join(ROOT, f), 'utf8')] as const);

for (const [name, rule] of RULES) {
  test(`rule ${name}`, () => {
    assert.ok(SOURCES.length > 10, 'the scan found the sources');
    const violations = SOURCES.flatMap(([f, s]) => rule(f, s));
    assert.deepEqual(violations, []);
  });
}

test('each rule catches a made-up violation', () => {
  const cases: [Rule, string, string][] = [
    [rule1Core, 'src/core/model/x.ts', "import { get } from 'idb-keyval';"],
    [rule1Core, 'src/core/x.ts', "import * as tf from '@tensorflow/tfjs';"],
    [rule1Core, 'src/core/x.ts', "import { Studio } from '../api/studio';"],
    [rule1Core, 'src/core/x.ts', 'const w = window.innerWidth;'],
    [rule1Core, 'src/core/x.ts', 'const gpu = navigator.gpu;'],
    [rule1Core, 'src/core/x.ts', "const r = await fetch('/x');"],
    [rule1Core, 'src/core/x.ts', 'postMessage(1);'],
    [rule2Idb, 'src/api/studio.ts', "import { set } from 'idb-keyval';"],
    [rule3Protocol, 'src/api/protocol.ts', "import { GPT2 } from '../core/model/gpt2';"],
    [rule3Protocol, 'src/api/protocol.ts', 'export const x = 1;'],
    [rule3Protocol, 'src/api/protocol.ts', 'export default {};'],
    [rule3Protocol, 'src/api/protocol.ts', 'const a = 1;\nexport { a };'],
    [rule4Worker, 'workers/studio.worker.ts', 'function train() {}'],
    [rule5Ui, 'src/ui/App.svelte', "<script>import * as tf from '@tensorflow/tfjs-core';</script>"],
    [rule5Ui, 'src/ui/App.svelte', "<script>\nimport { GPT2 } from '../core/model/gpt2';\n</script>"],
    [rule5Ui, 'src/ui/x.svelte.ts', "import { idbKV } from '../store/idb';"],
    [rule6Backend, 'src/api/studio.ts', "await tf.setBackend('cpu');"],
  ];
  for (const [rule, file, source] of cases) assert.notDeepEqual(rule(file, source), [], `${file}: ${source}`);
  // ...and lets legitimate code through.
  assert.deepEqual(rule5Ui('src/ui/App.svelte', "<script>\nimport type { RunInfo } from '../api/protocol';\nimport { mount } from 'svelte';\n</script>"), []);
  assert.deepEqual(rule1Core('src/core/train/x.ts', "import * as tf from '@tensorflow/tfjs-core';\nimport { GPT2 } from '../model/gpt2';"), []);
});

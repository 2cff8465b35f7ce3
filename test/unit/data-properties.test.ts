/**
 * Property tests of the data readers (fast-check): random bytes never crash or hang them; how a
 * file is cut into chunks never changes what is read; what a writer quotes, the reader reads back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DatasetBuilder } from '../../src/core/data/dataset';
import { jsonErrorOffset, parseBytes, RowParser, type FileKind } from '../../src/core/data/parse';
import { DataError } from '../../src/core/errors';

const KINDS: FileKind[] = ['jsonl', 'json', 'csv', 'tsv', 'text'];
const enc = (s: string) => new TextEncoder().encode(s);
const encode = (s: string) => Array.from(enc(s));

/** Bytes biased toward the characters the parsers care about. */
const bytes = fc.array(
  fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x0a, 0x0d, 0x22, 0x2c, 0x09, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a, 0xef, 0xbb, 0xbf, 0xc3, 0xa9)),
  { maxLength: 400 },
).map((a) => Uint8Array.from(a));

test('random bytes: every reader gives rows and named rejections, or a DataError; never another error', () => {
  fc.assert(
    fc.property(bytes, fc.constantFrom(...KINDS), (b, kind) => {
      try {
        const p = parseBytes(`f.${kind}`, b, kind);
        for (const r of p.rejected) assert.ok(r.line >= 1 && r.reason.length > 0);
        for (const r of p.rows) assert.ok(r.line >= 1 && typeof r.fields === 'object');
      } catch (e) {
        if (!(e instanceof DataError)) throw e;
        assert.ok(e.message.includes(`f.${kind}`), 'the message names the file');
      }
      try {
        new DatasetBuilder(`f.${kind}`, kind, { encode, blockSize: 32 }).end();
      } catch (e) {
        if (!(e instanceof DataError)) throw e;
      }
    }),
    { numRuns: 500, seed: 42 },
  );
});

test('chunking never changes what is read', () => {
  fc.assert(
    fc.property(bytes, fc.constantFrom(...KINDS), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }), (b, kind, cuts) => {
      let whole: unknown;
      try {
        whole = parseBytes('f', b, kind);
      } catch (e) {
        whole = (e as Error).message;
      }
      const p = new RowParser('f', kind);
      let chunked: unknown;
      try {
        let at = 0;
        for (let i = 0; at < b.length; i++) {
          const n = cuts[i % cuts.length];
          p.push(b.subarray(at, at + n));
          at += n;
        }
        chunked = p.end();
      } catch (e) {
        chunked = (e as Error).message;
      }
      assert.deepEqual(chunked, whole);
    }),
    { numRuns: 400, seed: 7 },
  );
});

/** RFC 4180 quoting, as a spreadsheet writes it. */
const quote = (v: string, sep: string) => (/["\n\r]/.test(v) || v.includes(sep) || v !== v.trim() ? `"${v.replace(/"/g, '""')}"` : v);

test('CSV and TSV: any table of strings, quoted as a writer quotes it, reads back cell for cell', () => {
  const cell = fc.string({ unit: fc.constantFrom('a', 'b', ' ', ',', '\t', '"', '\n', 'é', '中', '😀', '\r\n'), maxLength: 8 });
  fc.assert(
    fc.property(fc.array(fc.tuple(cell, cell), { minLength: 1, maxLength: 10 }), fc.constantFrom(',', '\t'), fc.boolean(), (rows, sep, crlf) => {
      const eol = crlf ? '\r\n' : '\n';
      const text = ['x', 'y'].join(sep) + eol + rows.map((r) => r.map((v) => quote(v, sep)).join(sep)).join(eol) + eol;
      const p = parseBytes(sep === ',' ? 'f.csv' : 'f.tsv', enc(text));
      const expected = rows;
      const norm = (v: string) => v.replace(/\r\n/g, '\n');
      assert.deepEqual(p.rejected, []);
      assert.deepEqual(p.rows.map((r) => [r.fields.x, r.fields.y]), expected.map(([a, b]) => [norm(a), norm(b)]));
    }),
    { numRuns: 300, seed: 3 },
  );
});

test('JSONL: any objects of strings and numbers read back exactly, with their line numbers', () => {
  const value = fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean());
  fc.assert(
    fc.property(fc.array(fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), value, { maxKeys: 4 }), { minLength: 1, maxLength: 12 }), (objs) => {
      const p = parseBytes('f.jsonl', enc(objs.map((o) => JSON.stringify(o)).join('\n')));
      assert.deepEqual(p.rows.map((r) => r.fields), objs.map((o) => JSON.parse(JSON.stringify(o))));
      assert.deepEqual(p.rows.map((r) => r.line), objs.map((_, i) => i + 1));
    }),
    { numRuns: 200, seed: 5 },
  );
});

test('the JSON error locator finds where JSON.parse fails', () => {
  fc.assert(
    fc.property(fc.json(), fc.nat(), fc.constantFrom('}', ']', ',', ':', '"', 'x'), (json, at, junk) => {
      const i = at % (json.length + 1);
      const text = json.slice(0, i) + junk + json.slice(i);
      let valid = true;
      try {
        JSON.parse(text);
      } catch {
        valid = false;
      }
      const off = jsonErrorOffset(text);
      if (valid) assert.equal(off, text.length);
      else assert.ok(off <= text.length && off >= 0);
    }),
    { numRuns: 300, seed: 11 },
  );
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exampleBatch, toArray } from '../../src/core/data/batch';
import { buildDataset, DatasetBuilder, splitDataset } from '../../src/core/data/dataset';
import { alpacaPrompt, chatml, detectFormat, type FormatOptions } from '../../src/core/data/formats';
import { LineSplitter, parseBytes, RowParser } from '../../src/core/data/parse';
import { splitIndices } from '../../src/core/data/split';
import { DataError } from '../../src/core/errors';
import { Rng } from '../../src/core/rng';

const enc = (s: string) => new TextEncoder().encode(s);
const parse = (name: string, s: string | Uint8Array) => parseBytes(name, typeof s === 'string' ? enc(s) : s);

test('JSONL: every good row kept; a broken line, a non-object and invalid UTF-8 are named by line', () => {
  const lines = Array.from({ length: 9420 }, (_, i) => JSON.stringify({ prompt: `p${i}`, completion: `c${i}` }));
  lines[9411] = '{"prompt": "broken", "completion": '; // line 9,412
  lines[20] = '[1, 2]';
  const bytes = enc(lines.join('\n') + '\n');
  // Line 31: a byte that is not UTF-8.
  const at = bytes.indexOf(enc('"p30"')[0], enc(lines.slice(0, 30).join('\n')).length);
  const bad = new Uint8Array(bytes);
  bad[at + 2] = 0xff;
  const p = parse('big.jsonl', bad);
  assert.equal(p.rows.length, 9420 - 3);
  assert.deepEqual(
    p.rejected.map((r) => r.line),
    [21, 31, 9412],
  );
  assert.match(p.rejected[0].reason, /expected a JSON object, got an array/);
  assert.match(p.rejected[1].reason, /not valid UTF-8/);
  assert.match(p.rejected[2].reason, /invalid JSON/);
  assert.equal(p.rows[0].line, 1);
  assert.equal(p.rows.at(-1)!.line, 9420);
});

test('BOM, CRLF and blank lines are read as nothing; an empty file says so', () => {
  const p = parse('crlf.jsonl', new Uint8Array([0xef, 0xbb, 0xbf, ...enc('{"text":"a"}\r\n\r\n{"text":"b"}\r\n')]));
  assert.deepEqual(p.rows.map((r) => [r.line, r.fields.text]), [[1, 'a'], [3, 'b']]);
  assert.deepEqual(p.rejected, []);
  assert.throws(() => parse('empty.jsonl', ''), (e: unknown) => e instanceof DataError && e.file === 'empty.jsonl' && /empty/.test(e.message));
  assert.throws(() => parse('blank.csv', '\n\n'), /blank.csv is empty/);
});

test('CSV: quoted fields with commas, quotes and newlines; a ragged row is rejected by its line', () => {
  const csv = 'instruction,input,output\r\n"Say ""hi""",,"hi,\nthere"\nshort,row\nok,,yes\n"never closed,,x\n';
  const p = parse('a.csv', csv);
  assert.deepEqual(p.columns, ['instruction', 'input', 'output']);
  assert.deepEqual(p.rows.map((r) => [r.line, r.fields]), [
    [2, { instruction: 'Say "hi"', input: '', output: 'hi,\nthere' }],
    [5, { instruction: 'ok', input: '', output: 'yes' }],
  ]);
  assert.deepEqual(p.rejected.map((r) => r.line), [4, 6]);
  assert.match(p.rejected[0].reason, /has 2 fields; the header has 3/);
  assert.match(p.rejected[1].reason, /never closed/);
  const tsv = parse('b.tsv', 'text\tlabel\nfine, really\tpos\n');
  assert.deepEqual(tsv.rows[0].fields, { text: 'fine, really', label: 'pos' });
});

test('a JSON array gives each element its line; broken JSON names the line', () => {
  const p = parse('a.json', '[\n  {"text": "a"},\n  "nope",\n  {"text": "c,]"}\n]\n');
  assert.deepEqual(p.rows.map((r) => r.line), [2, 4]);
  assert.deepEqual(p.rejected, [{ line: 3, reason: 'item 2 is not a JSON object' }]);
  assert.throws(() => parse('b.json', '[\n{"text": "a"},\n{"text": }\n]'), (e: unknown) => e instanceof DataError && e.line === 3);
});

test('reading in chunks of any size gives what reading at once gives (seeded random cuts, random bytes)', () => {
  const rng = new Rng(7);
  const text = 'a,b\n"x\ny",1\n\u00e9t\u00e9,"2"\n' + '{"k": "\u4e2d\u6587"}\n'.repeat(3);
  for (const name of ['f.csv', 'f.jsonl', 'f.txt']) {
    const bytes = enc(text);
    const whole = parse(name, bytes);
    for (let trial = 0; trial < 20; trial++) {
      const p = new RowParser(name, whole.kind);
      for (let at = 0; at < bytes.length; ) {
        const n = 1 + rng.int(7);
        p.push(bytes.subarray(at, at + n));
        at += n;
      }
      assert.deepEqual(p.end(), whole, `${name}, trial ${trial}`);
    }
  }
  // Random bytes never crash or hang a parser: they give rows, rejections or a DataError.
  for (let trial = 0; trial < 200; trial++) {
    const junk = Uint8Array.from({ length: rng.int(300) }, () => (rng.next() < 0.2 ? [10, 13, 34, 44, 123, 125][rng.int(6)] : rng.int(256)));
    for (const name of ['j.jsonl', 'j.csv', 'j.json', 'j.txt']) {
      try {
        const p = parse(name, junk);
        assert.ok(Array.isArray(p.rows) && Array.isArray(p.rejected));
      } catch (e) {
        assert.ok(e instanceof DataError, `${name}: ${(e as Error).message}`);
      }
    }
  }
});

test('a 50 MB single line is one row, not a hang', () => {
  const big = 'x'.repeat(50 * 2 ** 20);
  const lines: number[] = [];
  const s = new LineSplitter((t, line) => {
    assert.equal(t!.length, big.length + 8);
    lines.push(line);
  });
  const bytes = enc(`{"t":"${big}"}`);
  for (let at = 0; at < bytes.length; at += 1 << 16) s.push(bytes.subarray(at, at + (1 << 16)));
  assert.equal(s.end(), 1);
  assert.deepEqual(lines, [1]);
});

const src = (file: string, text: string) => ({ file, kind: file.split('.').pop() as string, text });

/** Rows through the builder: the training texts kept, and the rejections. */
function renderRows(p: { file: string; kind: string; text: string }, opts: FormatOptions = {}) {
  const built = buildDataset(p.file, enc(p.text), p.kind as 'jsonl', { ...opts, encode: (s: string) => Array.from(enc(s)), blockSize: 4096 });
  return { format: built.format, template: built.template, texts: built.texts!, rejected: built.rejected };
}

test('formats are detected from columns and mapped; each row becomes the exact training text', () => {
  assert.equal(detectFormat(['prompt', 'completion']), 'prompt_completion');
  assert.equal(detectFormat(['instruction', 'input', 'output']), 'alpaca');
  assert.equal(detectFormat(['messages']), 'chat');
  assert.equal(detectFormat(['conversations']), 'sharegpt');
  assert.equal(detectFormat(['prompt', 'chosen', 'rejected']), 'preference');
  assert.equal(detectFormat(['text', 'label']), 'classification');
  assert.equal(detectFormat(['text']), 'text');
  assert.equal(detectFormat(['q', 'a']), null);

  const alpaca = renderRows(src('a.jsonl', '{"instruction":"Add","input":"2+2","output":"4"}\n{"instruction":"Hi","output":"Hello"}\n'));
  assert.equal(alpaca.template, 'alpaca');
  assert.deepEqual(alpaca.texts[0], { line: 1, prompt: alpacaPrompt('Add', '2+2'), completion: '4' });
  assert.match(alpaca.texts[1].prompt, /### Instruction:\nHi\n\n### Response:\n$/);

  const chat = renderRows(src('c.jsonl', JSON.stringify({ messages: [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'A' }] }) + '\n'));
  assert.equal(chat.template, 'chatml');
  assert.equal(chat.texts[0].prompt, '<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n');
  assert.equal(chat.texts[0].completion, 'A<|im_end|>\n');
  const share = renderRows(src('s.jsonl', JSON.stringify({ conversations: [{ from: 'human', value: 'Q' }, { from: 'gpt', value: 'A' }] }) + '\n'));
  assert.deepEqual(share.texts[0], chat.texts[0], 'ShareGPT roles are mapped to user/assistant');
  const own = renderRows(src('c.jsonl', JSON.stringify({ messages: [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'A' }] })), {
    renderChat: (m, g) => m.map((x) => `[${x.role}] ${x.content}\n`).join('') + (g ? '[assistant] ' : ''),
  });
  assert.equal(own.template, 'model');
  assert.deepEqual([own.texts[0].prompt, own.texts[0].completion], ['[user] Q\n[assistant] ', 'A\n']);

  const mapped = renderRows(src('m.csv', 'question,answer\nWhy?,Because\n'), { format: 'prompt_completion', mapping: { prompt: 'question', completion: 'answer' } });
  assert.deepEqual(mapped.texts[0], { line: 2, prompt: 'Why?', completion: 'Because' });
  assert.throws(() => renderRows(src('m.csv', 'question,answer\nWhy?,Because\n')), (e: unknown) => e instanceof DataError && e.field === 'format' && /question, answer/.test(e.message));
  assert.throws(() => renderRows(src('m.csv', 'question,answer\nx,y\n'), { format: 'prompt_completion' }), /needs columns "prompt", "completion"; the file has question, answer/);
  const cls = renderRows(src('c.csv', 'text,label\ngreat film,pos\n'));
  assert.deepEqual([cls.texts[0].prompt, cls.texts[0].completion], ['great film\nLabel: ', 'pos']);
  assert.equal(chatml([{ role: 'user', content: 'x' }], true), '<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n');
});

test('rows that cannot be used are rejected with line and reason; every good row is kept', () => {
  const rows = [
    { prompt: 'a', completion: 'b' },
    { prompt: 'a', completion: 'b' },
    { prompt: 'x' },
    { prompt: 'x', completion: '  ' },
    { prompt: 'x', completion: ['no'] },
    { prompt: 'n', completion: 5 },
    { prompt: 'y', completion: 'z' },
  ];
  const r = renderRows(src('r.jsonl', rows.map((x) => JSON.stringify(x)).join('\n')));
  assert.deepEqual(r.texts.map((t) => t.line), [1, 6, 7]);
  assert.deepEqual(r.rejected, [
    { line: 2, reason: 'duplicate of line 1' },
    { line: 3, reason: 'missing field "completion"' },
    { line: 4, reason: 'field "completion" is empty' },
    { line: 5, reason: 'field "completion" should be text, got an array' },
  ]);
  assert.throws(
    () => renderRows(src('c.jsonl', JSON.stringify({ messages: [{ role: 'assistant', content: 'A' }, { role: 'user', content: 'Q' }] }))),
    /c\.jsonl: no row can be used \(1 rejected; line 1: the last message is from "user"/,
  );
  assert.throws(() => renderRows(src('bad.jsonl', '{broken\n{also\n')), /bad\.jsonl: no row can be read \(2 rejected; line 1: invalid JSON/, 'not "cannot tell the format"');
});

test('splits are seeded, disjoint and complete, and stratified by label', () => {
  const a = splitIndices(100, { validation: 0.1, test: 0.2, seed: 3 });
  const b = splitIndices(100, { validation: 0.1, test: 0.2, seed: 3 });
  assert.deepEqual(a, b);
  assert.deepEqual([a.train.length, a.validation.length, a.test.length], [70, 10, 20]);
  assert.deepEqual([...a.train, ...a.validation, ...a.test].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
  assert.notDeepEqual(splitIndices(100, { validation: 0.1, test: 0.2, seed: 4 }).validation, a.validation);
  const labels = Array.from({ length: 100 }, (_, i) => (i < 10 ? 'rare' : 'common'));
  const s = splitIndices(100, { validation: 0.2, test: 0, seed: 1 }, labels);
  assert.equal(s.validation.filter((i) => labels[i] === 'rare').length, 2, 'the rare label reaches validation in proportion');
  assert.throws(() => splitIndices(10, { validation: 0.6, test: 0.5, seed: 1 }), /leave nothing to train on/);
  // Thirty labels of four rows and a 10% share: rounding each label alone would give no validation at all.
  const many = Array.from({ length: 120 }, (_, i) => `label${i % 30}`);
  const m = splitIndices(120, { validation: 0.1, test: 0, seed: 2 }, many);
  assert.equal(m.validation.length, 12, 'the shares add up over all labels');
  assert.equal(new Set(m.validation.map((i) => many[i])).size, 12, 'from twelve different labels');
  const big = splitIndices(250_000, { validation: 0.1, test: 0.1, seed: 1 });
  assert.deepEqual([big.train.length, big.validation.length, big.test.length], [200_000, 25_000, 25_000], 'a quarter of a million rows split without overflowing the stack');
});

test('built examples: the completion is what follows the prompt in the whole text; truncations, histogram and preview', () => {
  // A toy tokenizer whose merges cross the boundary: "ab" is one token.
  const encode = (s: string) => {
    const out: number[] = [];
    for (let i = 0; i < s.length; i++) {
      if (s[i] === 'a' && s[i + 1] === 'b') {
        out.push(99);
        i++;
      } else out.push(s.charCodeAt(i));
    }
    return out;
  };
  const rows = [
    { prompt: 'x ', completion: 'yz' },
    { prompt: 'xa', completion: 'bc' },
    { prompt: 'long prompt', completion: 'y' },
  ];
  const built = buildDataset('r.jsonl', enc(rows.map((r) => JSON.stringify(r)).join('\n')), 'jsonl', { encode, blockSize: 8, previewRows: 2 });
  const ex = toArray(built.examples!);
  assert.deepEqual([ex[0].line, Array.from(ex[0].prompt), Array.from(ex[0].completion)], [1, [120, 32], [121, 122]]);
  assert.deepEqual([Array.from(ex[1].prompt), Array.from(ex[1].completion)], [[120, 97], [98, 99]], 'a merge across the boundary: parts tokenized on their own');
  assert.deepEqual([built.truncated, built.truncatedCount], [[3], 1]);
  assert.equal(built.tokenCount, 5 + 5 + 13);
  // Bins of width 1 up to the block of 8, and one for "longer than the block".
  assert.deepEqual(built.histogram.edges.slice(0, 3), [0, 1, 2]);
  assert.equal(built.histogram.counts[5], 2);
  assert.equal(built.histogram.counts.at(-1), 1);
  assert.deepEqual(built.preview.map((p) => [p.line, p.prompt, p.completion, p.promptTokens, p.completionTokens]), [[1, 'x ', 'yz', 2, 2], [2, 'xa', 'bc', 2, 2]]);
  assert.deepEqual(built.texts!.map((t) => t.line), [1, 2, 3]);
  const b = exampleBatch(ex.slice(0, 1), 8, 0, true);
  assert.deepEqual(Array.from(b.weights!).slice(0, 4), [0, 1, 1, 1]);
});

test('the builder fed in chunks of any size builds what it builds at once; a file past the text budget keeps ids only', () => {
  const encode = (s: string) => Array.from(enc(s));
  const lines = Array.from({ length: 300 }, (_, i) => (i % 37 === 5 ? '{"broken' : JSON.stringify({ instruction: `task ${i} \u00e9`, output: `answer ${i}` })));
  const bytes = enc(lines.join('\r\n'));
  const whole = buildDataset('a.jsonl', bytes, 'jsonl', { encode, blockSize: 64 });
  const rng = new Rng(3);
  const b = new DatasetBuilder('a.jsonl', 'jsonl', { encode, blockSize: 64 });
  for (let at = 0; at < bytes.length; ) {
    const n = 1 + rng.int(200);
    b.push(bytes.subarray(at, at + n));
    at += n;
  }
  const chunked = b.end();
  const plain = (d: typeof whole) => ({ ...d, examples: toArray(d.examples!).map((e) => [e.line, Array.from(e.prompt), Array.from(e.completion)]) });
  assert.deepEqual(plain(chunked), plain(whole));
  assert.equal(whole.examples!.length, 300 - 8);
  assert.equal(whole.rejectedCount, 8);
  assert.equal(whole.format, 'alpaca');
  const small = buildDataset('a.jsonl', bytes, 'jsonl', { encode, blockSize: 64, keepTextChars: 1000, maxRejected: 2 });
  assert.equal(small.texts, null, 'past the budget the texts are let go');
  assert.deepEqual([small.rejected.length, small.rejectedCount], [2, 8], 'every rejection counted, the first ones listed');
  assert.throws(() => buildDataset('e.jsonl', new Uint8Array(), 'jsonl', { encode, blockSize: 64 }), /e\.jsonl is empty/);
});

test('splitDataset: text is a token stream with its end held out; rows are split examples with a report', () => {
  const encode = (s: string) => Array.from(enc(s));
  const text = splitDataset(buildDataset('t.txt', enc('hello world '.repeat(50)), 'text', { encode, blockSize: 16 }), { validation: 0.1, test: 0, seed: 1 });
  assert.equal(text.data.kind, 'tokens');
  if (text.data.kind === 'tokens') assert.deepEqual([text.data.train.length, text.data.validation!.length], [540, 60]);
  const rows = Array.from({ length: 40 }, (_, i) => JSON.stringify({ prompt: `q${i} `, completion: `a${i}` }));
  rows[5] = 'oops';
  const { data, report, trainTexts } = splitDataset(buildDataset('r.jsonl', enc(rows.join('\n')), 'jsonl', { encode, blockSize: 16 }), { validation: 0.25, test: 0, seed: 2 });
  assert.equal(report.format, 'prompt_completion');
  assert.equal(report.accepted, 39);
  assert.deepEqual(report.rejected.map((r) => r.line), [6]);
  assert.equal(data.kind, 'examples');
  if (data.kind === 'examples') {
    assert.equal(data.train.length + data.validation!.length, 39);
    assert.equal(data.validation!.length, 10);
    assert.equal(data.completionOnly, true);
    assert.deepEqual(trainTexts!.map((t) => t.line), toArray(data.train).map((e) => e.line), 'the recipe gets the training split');
  }
  const labels = Array.from({ length: 20 }, (_, i) => JSON.stringify({ text: `t${i}`, label: i < 4 ? 'rare' : 'common' }));
  const cls = splitDataset(buildDataset('c.jsonl', enc(labels.join('\n')), 'jsonl', { encode, blockSize: 16 }), { validation: 0.5, test: 0, seed: 2 });
  if (cls.data.kind === 'examples') assert.equal(toArray(cls.data.validation!).filter((e) => e.line <= 4).length, 2, 'stratified by label');
  assert.throws(() => buildDataset('bad.jsonl', enc('oops\n{"prompt": "a", "completion": ""}\n'), 'jsonl', { encode, blockSize: 16 }), /no row can be used \(2 rejected; line 1: invalid JSON/);
});

test('Parquet as Hugging Face datasets ship it (pyarrow; snappy and zstd; row groups; nested chat messages)', async () => {
  const { readFileSync } = await import('node:fs');
  const { readParquet } = await import('../../src/core/data/parquet');
  const fixture = (n: string) => new Uint8Array(readFileSync(new URL(`../fixtures/datasets/${n}`, import.meta.url)));
  const access = (b: Uint8Array) => ({ byteLength: b.length, slice: async (s: number, e?: number) => b.slice(s, e).buffer });
  const encode = (s: string) => Array.from(enc(s));
  const results = [];
  for (const name of ['alpaca.parquet', 'alpaca-zstd.parquet']) {
    const builder = new DatasetBuilder(name, 'parquet', { encode, blockSize: 256 });
    const groups: number[] = [];
    const { rows, columns } = await readParquet(name, access(fixture(name)), (r, cols) => {
      groups.push(r.length);
      builder.addRows(r, cols);
    });
    assert.deepEqual([rows, columns, groups], [25, ['instruction', 'input', 'output'], [10, 10, 5]], name);
    const built = builder.end();
    assert.equal(built.format, 'alpaca');
    assert.equal(built.examples!.length, 24);
    assert.deepEqual(built.rejected, [{ line: 8, reason: 'field "output" is empty' }], 'rows named by their number');
    assert.equal(built.preview[0].completion, '2024-03-01');
    assert.match(built.preview[0].prompt, /### Instruction:\nrewrite date 1\n\n### Input:\n01\/03\/2024\n\n### Response:\n$/);
    assert.doesNotMatch(built.preview[2].prompt, /### Input/, 'a null input is no input');
    results.push(toArray(built.examples!).map((e) => Array.from(e.completion)));
  }
  assert.deepEqual(results[0], results[1], 'zstd reads as snappy does');
  const chat = new DatasetBuilder('chat.parquet', 'parquet', { encode, blockSize: 256 });
  await readParquet('chat.parquet', access(fixture('chat.parquet')), (r, cols) => chat.addRows(r, cols));
  const c = chat.end();
  assert.deepEqual([c.format, c.examples!.length, c.preview[1].completion], ['chat', 6, 'number 1<|im_end|>\n']);
  await assert.rejects(readParquet('x.parquet', access(enc('{"text": "not parquet"}')), () => undefined), /x\.parquet is not a Parquet file/);
  const cut = fixture('alpaca.parquet').slice(0, 1500);
  cut.set([0x50, 0x41, 0x52, 0x31], cut.length - 4);
  await assert.rejects(readParquet('cut.parquet', access(cut), () => undefined), (e: unknown) => e instanceof DataError && /cut\.parquet/.test(e.message));
});

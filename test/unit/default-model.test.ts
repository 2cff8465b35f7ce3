/**
 * The bundled model, public/models/moby-gpt2, as test/scripts/pretrain-default.py wrote it: the
 * studio's own loader and tokenizer give the numbers PyTorch gave when the script finished
 * (reference.json: the start of a held-out chapter, its ids, the top logits at its first position,
 * and the loss on it), and it writes English of its corpus, not noise.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '../../src/api/backend';
import { Studio } from '../../src/api/studio';
import { folderFiles } from '../../src/cli/files';
import { loadTokenizer } from '../../src/core/tokenizer/hf';
import { memoryKV } from '../../src/store/kv';
import { BUNDLED_DIR, bundledModel } from '../support/bundled';
import { useBackend } from '../support/tf-node';

before(() => useBackend('cpu'));

const dir = BUNDLED_DIR;

interface Reference {
  text: string;
  ids: number[];
  loss_tokens: number;
  loss: number;
  first_logits_top5: { ids: number[]; values: number[] };
  val_loss: number;
}

test('the bundled model loads through the studio and gives the numbers of the script that trained it', async () => {
  const ref = JSON.parse(readFileSync(new URL('reference.json', dir), 'utf8')) as Reference;
  const studio = new Studio({ kv: memoryKV(), selectBackend: (r, onLost, exclude) => selectBackend(r, { onLost, exclude }) });
  await studio.init('cpu');
  const info = await studio.importModel(bundledModel(), () => undefined);
  assert.deepEqual([info.arch, info.vocabSize, info.contextLength, info.layers], ['gpt2', 1024, 256, 4]);
  assert.ok(info.numParams > 1e6 && info.numParams < 5e6, `${info.numParams} parameters`);
  assert.ok(readdirSync(dir).includes('README.md') && readdirSync(dir).includes('training-log.csv'), 'its training log and README are shipped beside it');

  // The tokenizer, as the studio loads it: the same ids as the script's own BPE encoder.
  const tokenizer = await loadTokenizer(folderFiles(fileURLToPath(dir)));
  const ids = tokenizer.encode(ref.text, { addSpecialTokens: true });
  assert.deepEqual(ids, ref.ids);

  // The model: the same top logits at the first position, and the same loss over the first tokens.
  const n = Math.min(ref.loss_tokens, ids.length);
  const scored = await studio.logits(info.id, { ids: ids.slice(0, n) });
  const vocabSize = scored.vocabSize;
  const row = Array.from(scored.logits.subarray(0, vocabSize));
  const top = row.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 5);
  assert.deepEqual(top.map(([, i]) => i), ref.first_logits_top5.ids);
  top.forEach(([v], k) => assert.ok(Math.abs(v - ref.first_logits_top5.values[k]) < 1e-3, `logit ${k}: ${v} vs ${ref.first_logits_top5.values[k]}`));
  let nll = 0;
  for (let t = 0; t + 1 < n; t++) {
    const r = scored.logits.subarray(t * vocabSize, (t + 1) * vocabSize);
    let max = -Infinity;
    for (const v of r) max = Math.max(max, v);
    let sum = 0;
    for (const v of r) sum += Math.exp(v - max);
    nll += max + Math.log(sum) - r[ids[t + 1]];
  }
  const loss = nll / (n - 1);
  assert.ok(Math.abs(loss - ref.loss) < 1e-4, `loss ${loss} vs PyTorch's ${ref.loss}`);
  assert.ok(ref.val_loss < 4.5, `a real language model of its corpus: validation loss ${ref.val_loss} nats per token (uniform would be ln 1024 = 6.93)`);

  // Greedy continuation of a line of the book: English words, not noise.
  const out = await studio.generate({ modelId: info.id, prompt: 'Call me Ishmael. Some years ago', options: { maxNewTokens: 30, temperature: 0 } }, () => undefined);
  const words = out.text.split(/\s+/).filter(Boolean);
  assert.ok(words.length >= 5, out.text);
  const english = words.filter((w) => /^[A-Za-z,.;:'"!?-]+$/.test(w)).length;
  assert.ok(english / words.length > 0.8, `mostly words: ${JSON.stringify(out.text)}`);
});

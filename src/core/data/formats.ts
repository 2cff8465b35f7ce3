/**
 * What rows mean: the dataset formats people already have, detected from the columns and
 * overridable with a column mapping, and the exact training text each row becomes once a
 * template is applied, as a prompt (masked out of the loss when training on completions only)
 * and a completion (learned, with the EOS the batcher appends).
 */
import { DataError } from '../errors';
import type { Row } from './parse';

export type DatasetFormat = 'text' | 'prompt_completion' | 'alpaca' | 'chat' | 'sharegpt' | 'preference' | 'classification';

export const FORMATS: DatasetFormat[] = ['text', 'prompt_completion', 'alpaca', 'chat', 'sharegpt', 'preference', 'classification'];

/** The roles each format reads, by their usual column names. */
export const FORMAT_FIELDS: Record<DatasetFormat, string[]> = {
  text: ['text'],
  prompt_completion: ['prompt', 'completion'],
  alpaca: ['instruction', 'input', 'output'],
  chat: ['messages'],
  sharegpt: ['conversations'],
  preference: ['prompt', 'chosen', 'rejected'],
  classification: ['text', 'label'],
};

/** Fields a format can do without. */
const OPTIONAL = new Set(['input']);

/** Maps a format's role (prompt, completion, ...) to the column that holds it in this file. */
export type ColumnMapping = Partial<Record<string, string>>;

export type Template = 'none' | 'alpaca' | 'chatml' | 'model';

export interface ChatMessage {
  role: string;
  content: string;
}

/** The model's chat template (Jinja), when it has one. */
export type RenderChat = (messages: ChatMessage[], addGenerationPrompt: boolean) => string;

export interface TrainingText {
  line: number;
  /** Masked out of the loss when training on completions only. */
  prompt: string;
  completion: string;
}

/** The format the columns suggest, or null when none fits. */
export function detectFormat(columns: string[]): DatasetFormat | null {
  const has = (c: string) => columns.includes(c);
  if (has('messages')) return 'chat';
  if (has('conversations')) return 'sharegpt';
  if (has('chosen') && has('rejected')) return 'preference';
  if (has('instruction') && has('output')) return 'alpaca';
  if (has('prompt') && has('completion')) return 'prompt_completion';
  if (has('text') && has('label')) return 'classification';
  if (has('text')) return 'text';
  return null;
}

export interface FormatOptions {
  format?: DatasetFormat;
  mapping?: ColumnMapping;
  template?: Template;
  renderChat?: RenderChat | null;
}


const ALPACA_HEAD = 'Below is an instruction that describes a task';

/** The Alpaca prompt (the Stanford Alpaca wording, with and without an input). */
export function alpacaPrompt(instruction: string, input: string): string {
  return input
    ? `${ALPACA_HEAD}, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n${instruction}\n\n### Input:\n${input}\n\n### Response:\n`
    : `${ALPACA_HEAD}. Write a response that appropriately completes the request.\n\n### Instruction:\n${instruction}\n\n### Response:\n`;
}

/** ChatML, the built-in chat template for models without one of their own. */
export function chatml(messages: ChatMessage[], addGenerationPrompt: boolean): string {
  return messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + (addGenerationPrompt ? '<|im_start|>assistant\n' : '');
}

export interface RowRenderer {
  format: DatasetFormat;
  template: Template;
  /** The training text of one row; throws RowProblem (its reason) when the row cannot be used. */
  render(row: Row): TrainingText;
}

/** The format (given, or detected from the columns) and template, checked once for a file. */
export function rowRenderer(file: string, columns: string[], opts: FormatOptions = {}, hasRows = true): RowRenderer {
  const format = opts.format ?? detectFormat(columns);
  if (!format) {
    throw new DataError(
      `${file}: cannot tell the format from its columns (${columns.join(', ') || 'none'}); choose a format and map its columns (` +
        FORMATS.map((f) => `${f}: ${FORMAT_FIELDS[f].join(', ')}`).join('; ') +
        ')',
      { file, field: 'format' },
    );
  }
  const col = (role: string) => opts.mapping?.[role] ?? role;
  const missing = FORMAT_FIELDS[format].filter((r) => !OPTIONAL.has(r) && !columns.includes(col(r)));
  if (missing.length && hasRows) {
    throw new DataError(
      `${file}: the ${format} format needs column${missing.length > 1 ? 's' : ''} ${missing.map((r) => `"${col(r)}"`).join(', ')}; the file has ${columns.join(', ')}. Map them to columns it has.`,
      { file, field: 'mapping' },
    );
  }
  const template: Template =
    opts.template ?? (format === 'alpaca' ? 'alpaca' : format === 'chat' || format === 'sharegpt' ? (opts.renderChat ? 'model' : 'chatml') : 'none');
  if (template === 'model' && !opts.renderChat) throw new DataError('this model has no chat template; choose the ChatML or Alpaca template', { field: 'template' });
  const chat: RenderChat = template === 'model' ? opts.renderChat! : chatml;
  return { format, template, render: (row) => renderRow(row, format, template, chat, col) };
}

/** Why one row cannot be used (its message is the reason the report gives). */
export class RowProblem extends Error {}


function str(row: Row, column: string, optional = false): string {
  const v = row.fields[column];
  if (v === undefined || v === null) {
    if (optional) return '';
    throw new RowProblem(`missing field "${column}"`);
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v !== 'string') throw new RowProblem(`field "${column}" should be text, got ${Array.isArray(v) ? 'an array' : typeof v}`);
  return v;
}

function nonEmpty(s: string, column: string): string {
  if (!s.trim()) throw new RowProblem(`field "${column}" is empty`);
  return s;
}

function messagesOf(row: Row, column: string, sharegpt: boolean): ChatMessage[] {
  const v = row.fields[column];
  if (!Array.isArray(v)) throw new RowProblem(v === undefined ? `missing field "${column}"` : `field "${column}" should be a list of messages`);
  const roles: Record<string, string> = { human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', system: 'system', chatgpt: 'assistant', bing: 'assistant', bard: 'assistant' };
  return v.map((m, i) => {
    const r = m && typeof m === 'object' ? (m as Record<string, unknown>)[sharegpt ? 'from' : 'role'] : undefined;
    const c = m && typeof m === 'object' ? (m as Record<string, unknown>)[sharegpt ? 'value' : 'content'] : undefined;
    if (typeof r !== 'string' || typeof c !== 'string') {
      throw new RowProblem(`message ${i + 1} of "${column}" needs "${sharegpt ? 'from' : 'role'}" and "${sharegpt ? 'value' : 'content'}" as text`);
    }
    return { role: sharegpt ? (roles[r] ?? r) : r, content: c };
  });
}

function renderRow(row: Row, format: DatasetFormat, template: Template, chat: RenderChat, col: (role: string) => string): TrainingText {
  const line = row.line;
  const wrap = (prompt: string, completion: string): TrainingText => {
    if (template === 'alpaca') return { line, prompt: alpacaPrompt(prompt, ''), completion };
    if (template === 'chatml' || template === 'model') return chatPair(chat, [{ role: 'user', content: prompt }, { role: 'assistant', content: completion }], line);
    return { line, prompt, completion };
  };
  switch (format) {
    case 'text':
      return { line, prompt: '', completion: nonEmpty(str(row, col('text')), col('text')) };
    case 'prompt_completion':
      return wrap(str(row, col('prompt')), nonEmpty(str(row, col('completion')), col('completion')));
    case 'classification':
      return wrap(`${nonEmpty(str(row, col('text')), col('text'))}\nLabel: `, nonEmpty(str(row, col('label')), col('label')));
    case 'preference':
      // For supervised tuning the chosen answer is the completion; preference tuning reads all three.
      str(row, col('rejected'));
      return wrap(str(row, col('prompt')), nonEmpty(str(row, col('chosen')), col('chosen')));
    case 'alpaca': {
      const instruction = nonEmpty(str(row, col('instruction')), col('instruction'));
      const input = str(row, col('input'), true);
      const output = nonEmpty(str(row, col('output')), col('output'));
      if (template === 'alpaca') return { line, prompt: alpacaPrompt(instruction, input), completion: output };
      return wrap(input ? `${instruction}\n\n${input}` : instruction, output);
    }
    case 'chat':
    case 'sharegpt': {
      const messages = messagesOf(row, col(format === 'chat' ? 'messages' : 'conversations'), format === 'sharegpt');
      if (!messages.length) throw new RowProblem('the conversation is empty');
      if (messages.at(-1)!.role !== 'assistant') throw new RowProblem(`the last message is from "${messages.at(-1)!.role}"; it must be the assistant's answer`);
      if (!messages.at(-1)!.content.trim()) throw new RowProblem("the assistant's answer is empty");
      return chatPair(chat, messages, line);
    }
  }
}

/**
 * A conversation as prompt (everything up to the last answer, with the generation prompt) and
 * completion (the last answer as the template writes it). Only the last answer is learned.
 */
function chatPair(chat: RenderChat, messages: ChatMessage[], line: number): TrainingText {
  const prompt = chat(messages.slice(0, -1), true);
  const full = chat(messages, false);
  if (!full.startsWith(prompt)) throw new RowProblem('the chat template writes the conversation differently from its beginning, so the answer cannot be told apart');
  return { line, prompt, completion: full.slice(prompt.length) };
}

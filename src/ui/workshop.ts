/**
 * A workshop file: one JSON file a host shares so that every attendee's studio opens in the same
 * state: the model (the bundled one, or a Hub repository), the data (a bundled sample or a URL),
 * the settings and the seed. Read here, in the page, with a message that names the field at fault.
 */

export const WORKSHOP_FORMAT = 'tabtune-workshop';

export type WorkshopMethod = 'lora' | 'qlora' | 'qlora4' | 'bitfit' | 'prompt' | 'full';

/** Where a file comes from: a sample shipped in public/samples/, or a URL. */
export type WorkshopSource = { sample: string } | { url: string };

export interface WorkshopConfig {
  method: WorkshopMethod;
  steps: number;
  learning_rate: number;
  r: number;
  /** LoRA on the model's default modules (attention), or on every linear layer. */
  target_modules: 'default' | 'all-linear';
  batch_size: number;
  block_size: number;
  /** Share of the rows held out to watch the validation loss (0: none). */
  validation: number;
  eval_every: number;
  patience: number;
  /** Share of the rows held out as a test part, when no test file is given. */
  test: number;
  /** Test prompts answered greedily and compared with their completions, before and after (0: none). */
  exact_match: number;
  sample_every: number;
  /** '' takes the first held-out prompts. */
  sample_prompt: string;
}

export interface WorkshopFile {
  format: typeof WORKSHOP_FORMAT;
  version: 1;
  title: string;
  description: string;
  model: { bundled: string } | { hub: string };
  data: WorkshopSource;
  test: WorkshopSource | null;
  config: WorkshopConfig;
  seed: number;
}

/** Models shipped with the studio in public/models/, by name, with their files. */
export const BUNDLED_MODELS: Record<string, string[]> = {
  'moby-gpt2': ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'],
};

export const WORKSHOP_DEFAULTS: WorkshopConfig = {
  method: 'lora', steps: 60, learning_rate: 3e-3, r: 8, target_modules: 'default', batch_size: 16, block_size: 32, validation: 0.05, eval_every: 20, patience: 0, test: 0,
  exact_match: 50, sample_every: 10, sample_prompt: '',
};

export class WorkshopError extends Error {
  override name = 'WorkshopError';
  readonly file: string;
  readonly field: string | undefined;
  constructor(message: string, file: string, field?: string) {
    super(message);
    this.file = file;
    this.field = field;
  }
}

const METHODS: WorkshopMethod[] = ['lora', 'qlora', 'qlora4', 'bitfit', 'prompt', 'full'];
const SAFE_NAME = /^[\w][\w.-]*$/;

/** Reads a workshop file's text; anything missing takes the default, anything wrong is refused by name. */
export function parseWorkshop(text: string, file: string): WorkshopFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new WorkshopError(`${file} is not valid JSON: ${(e as Error).message}`, file);
  }
  const bad = (field: string, why: string) => new WorkshopError(`${file}: "${field}" ${why}`, file, field);
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new WorkshopError(`${file} is not a workshop file: it holds no JSON object`, file);
  const o = raw as Record<string, unknown>;
  if (o.format !== WORKSHOP_FORMAT) throw bad('format', `must be "${WORKSHOP_FORMAT}", got ${JSON.stringify(o.format)}: this is not a tabtune workshop file`);
  if (o.version !== 1) throw bad('version', `must be 1 (this studio reads version 1), got ${JSON.stringify(o.version)}`);

  const model = o.model as Record<string, unknown> | undefined;
  let m: WorkshopFile['model'];
  if (model && typeof model.bundled === 'string') {
    if (!BUNDLED_MODELS[model.bundled]) throw bad('model.bundled', `names no bundled model: ${JSON.stringify(model.bundled)}; bundled: ${Object.keys(BUNDLED_MODELS).join(', ')}`);
    m = { bundled: model.bundled };
  } else if (model && typeof model.hub === 'string' && /^[\w.-]+\/[\w.-]+$/.test(model.hub)) {
    m = { hub: model.hub };
  } else {
    throw bad('model', 'must be {"bundled": "moby-gpt2"} or {"hub": "owner/name"}');
  }

  const source = (field: string, v: unknown, required: boolean): WorkshopSource | null => {
    if (v === undefined || v === null) {
      if (required) throw bad(field, 'is missing: give {"sample": "file name"} or {"url": "https://..."}');
      return null;
    }
    const s = v as Record<string, unknown>;
    if (typeof s.sample === 'string') {
      if (!SAFE_NAME.test(s.sample)) throw bad(`${field}.sample`, `must be a file name in the studio's samples, got ${JSON.stringify(s.sample)}`);
      return { sample: s.sample };
    }
    if (typeof s.url === 'string') {
      if (!/^https?:\/\//.test(s.url)) throw bad(`${field}.url`, `must start with http:// or https://, got ${JSON.stringify(s.url)}`);
      return { url: s.url };
    }
    throw bad(field, 'must be {"sample": "file name"} or {"url": "https://..."}');
  };

  const c = (o.config ?? {}) as Record<string, unknown>;
  if (typeof c !== 'object' || Array.isArray(c)) throw bad('config', 'must be an object of settings');
  const config = { ...WORKSHOP_DEFAULTS };
  const number = (key: keyof WorkshopConfig, min: number, max: number, whole: boolean) => {
    const v = c[key];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (whole && !Number.isInteger(v))) {
      throw bad(`config.${key}`, `must be ${whole ? 'a whole number' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(v)}`);
    }
    (config as Record<string, unknown>)[key] = v;
  };
  if (c.method !== undefined) {
    if (!METHODS.includes(c.method as WorkshopMethod)) throw bad('config.method', `must be one of ${METHODS.join(', ')}, got ${JSON.stringify(c.method)}`);
    config.method = c.method as WorkshopMethod;
  }
  if (c.target_modules !== undefined) {
    if (c.target_modules !== 'default' && c.target_modules !== 'all-linear') throw bad('config.target_modules', `must be "default" or "all-linear", got ${JSON.stringify(c.target_modules)}`);
    config.target_modules = c.target_modules;
  }
  number('steps', 1, 100_000, true);
  number('learning_rate', 1e-7, 1, false);
  number('r', 1, 256, true);
  number('batch_size', 1, 512, true);
  number('block_size', 8, 8192, true);
  number('validation', 0, 0.5, false);
  number('eval_every', 1, 100_000, true);
  number('patience', 0, 1000, true);
  number('test', 0, 0.5, false);
  number('exact_match', 0, 10_000, true);
  number('sample_every', 1, 100_000, true);
  if (c.sample_prompt !== undefined) {
    if (typeof c.sample_prompt !== 'string') throw bad('config.sample_prompt', `must be text, got ${JSON.stringify(c.sample_prompt)}`);
    config.sample_prompt = c.sample_prompt;
  }
  const known = new Set(Object.keys(WORKSHOP_DEFAULTS));
  const unknown = Object.keys(c).filter((k) => !known.has(k));
  if (unknown.length) throw bad(`config.${unknown[0]}`, `is not a setting this studio knows; known: ${[...known].join(', ')}`);

  const seed = o.seed ?? 1337;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 2 ** 31) throw bad('seed', `must be a whole number from 0 to 2^31, got ${JSON.stringify(seed)}`);
  const data = source('data', o.data, true)!;
  const test = source('test', o.test, false);
  if (config.exact_match > 0 && !test && config.test === 0) throw bad('config.exact_match', 'needs a test part: give "test" (a file) or "config.test" (a share of the rows)');
  return {
    format: WORKSHOP_FORMAT, version: 1, title: typeof o.title === 'string' && o.title.trim() ? o.title.trim() : file.replace(/\.json$/i, ''),
    description: typeof o.description === 'string' ? o.description : '', model: m, data, test, config, seed,
  };
}

/** The address a workshop source is fetched from (samples relative to the studio's base URL). */
export function sourceUrl(s: WorkshopSource, base: string): string {
  return 'sample' in s ? `${base}samples/${s.sample}` : s.url;
}

/** The file name a source is known by. */
export function sourceName(s: WorkshopSource): string {
  return 'sample' in s ? s.sample : decodeURIComponent(new URL(s.url).pathname.split('/').pop() || 'data');
}

import { readFileSync } from 'node:fs';
import { resolveGPT2Config, resolveTrainConfig, type GPT2Config, type TrainConfig } from '../../src/core/config';
import { DEMO_PRESETS } from '../../src/core/presets';
import { ByteTokenizer } from '../../src/core/tokenizer/bytes';

export const SAMPLE_TEXT = readFileSync(new URL('../../public/samples/moby-dick-ch1.txt', import.meta.url), 'utf8');
export const SAMPLE_TOKENS = new ByteTokenizer().encode(SAMPLE_TEXT);

export function tinyConfigs(train: Partial<TrainConfig> = {}): { model: GPT2Config; train: TrainConfig } {
  const model = resolveGPT2Config(DEMO_PRESETS.tiny.model);
  return { model, train: resolveTrainConfig({ ...DEMO_PRESETS.tiny.train, ...train }, model) };
}

export const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** BitFit (Ben Zaken et al., 2022): only the bias terms train; every weight matrix stays frozen. */
import { ConfigError } from '../errors';
import type { CausalLM } from '../model/base';

export function useBitFit(model: CausalLM): void {
  const biases = [...model.params.keys()].filter((n) => n.endsWith('.bias'));
  if (biases.length === 0) {
    throw new ConfigError('BitFit trains biases, and this model has none (Llama-family layers have no bias); use LoRA instead', { field: 'method' });
  }
  model.trainableFilter = (name) => name.endsWith('.bias');
}

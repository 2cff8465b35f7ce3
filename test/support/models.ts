/** The small Hugging Face checkpoints under test/fixtures, built as the studio builds them, and their logits. */
import { fileURLToPath } from 'node:url';
import { folderFiles } from '../../src/cli/files';
import type { CausalLM } from '../../src/core/model/base';
import { buildModel, inspectModel, loadWeights } from '../../src/core/model/hf';
import { tf } from './tf-node';

export const fixtureDir = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));

export async function loadFixture(name: string): Promise<CausalLM> {
  const files = folderFiles(fixtureDir(name));
  const summary = await inspectModel(files);
  return buildModel(summary.spec, await loadWeights(files, summary));
}

/** The logits of one sequence, read back (and the tensors gone). */
export async function logitsOf(model: CausalLM, ids: number[]): Promise<Float32Array> {
  const out = tf.tidy(() => model.forward(tf.tensor2d(ids, [1, ids.length], 'int32')));
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return data;
}

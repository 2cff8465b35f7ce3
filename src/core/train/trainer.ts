import * as tf from '@tensorflow/tfjs-core';
import type { TrainConfig } from '../config';
import { sampleBatch, type Batch } from '../data/batch';
import { TrainingError } from '../errors';
import { checkShape, readNamed, type CausalLM, type NamedWeights } from '../model/base';
import { CheckpointError, ConfigError } from '../errors';
import { Rng } from '../rng';
import { AdamW, type AdamWState } from './adamw';
import { SGD } from './sgd';
import { learningRate } from './schedule';

/** What one optimizer step reports to whoever is watching. */
export interface StepReport {
  step: number;
  /** The step the run ends at, so a watcher can draw progress without asking. */
  totalSteps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  stepMs: number;
  tokensPerSec: number;
  numTensors: number;
  numBytes: number;
}

/** Everything needed to continue a run exactly where it stopped. */
export interface TrainerCheckpoint {
  step: number;
  rngState: number;
  weights: NamedWeights;
  optimizer: AdamWState;
}

/**
 * Owns one model's optimizer and batch order. The model's variables are updated in place;
 * each step's temporaries live inside one tf.tidy, so the tensor count is flat across steps.
 */
export class Trainer {
  step = 0;
  readonly rng: Rng;
  private readonly opt: AdamW | SGD;
  private readonly trainable: Map<string, tf.Variable>;

  constructor(readonly model: CausalLM, readonly cfg: TrainConfig) {
    if ([...model.adapters.values()].some((a) => a.merged)) {
      throw new ConfigError('the adapters are merged into the base weights; unmerge them before training', { field: 'lora' });
    }
    // Only what the model says is trainable (the adapters, when it has any) gets gradients and moments.
    this.trainable = model.trainableParams();
    this.opt = cfg.optimizer === 'sgd' ? new SGD(this.trainable, cfg) : new AdamW(this.trainable, cfg);
    // Batch order has its own stream so that changing the init does not change the data order.
    this.rng = new Rng(cfg.seed ^ 0x5bd1e995);
  }

  /** One optimizer step on windows drawn from a token stream (plain text, packed). */
  async trainStep(tokens: Int32Array): Promise<StepReport> {
    return this.trainOn((rng) => sampleBatch(tokens, this.cfg.batch_size, this.cfg.block_size, rng));
  }

  /**
   * One optimizer step on the batches `draw` gives, one per micro-batch (examples with loss
   * weights, for instance). `draw` uses the trainer's seeded generator, which checkpoints keep.
   */
  async trainOn(draw: (rng: Rng) => Batch): Promise<StepReport> {
    const t0 = performance.now();
    const { grad_clip } = this.cfg;
    const accum = this.cfg.grad_accum_steps ?? 1;
    const step = this.step + 1;
    const lr = learningRate(step, this.cfg);
    const vars = [...this.trainable.values()];
    // Gradients of each micro-batch, summed; kept across micro-batches, released below.
    // (Plain objects, not Maps: tf.tidy keeps only the tensors of objects and arrays it returns.)
    // All micro-batches are drawn first (CPU arrays, cheap), so each can be weighted by the share
    // of counted positions it holds: the step's loss is the mean over every counted position, as
    // transformers normalises accumulated steps, not the mean of the micro-batch means.
    const batches = Array.from({ length: accum }, () => draw(this.rng));
    const counts = batches.map((b) => (b.weights ? b.weights.reduce((a, w) => a + w, 0) : b.batchSize * b.blockSize));
    const counted = counts.reduce((a, b) => a + b, 0);
    if (counted === 0) throw new TrainingError(`step ${step} has no position that counts in the loss (every target is masked)`, { field: 'dataset' });
    let sums: Record<string, tf.Tensor> | null = null;
    let lossSum: tf.Tensor | null = null;
    let tokensSeen = 0;
    for (let micro = 0; micro < accum; micro++) {
      const batch = batches[micro];
      const share = counts[micro] / counted;
      if (share === 0) continue;
      const B = batch.batchSize;
      const T = batch.blockSize;
      tokensSeen += B * T;
      const prevSums = sums;
      const prevLoss = lossSum;
      const next = tf.tidy(() => {
        const ids = tf.tensor2d(batch.ids, [B, T], 'int32');
        const targets = tf.tensor2d(batch.targets, [B, T], 'int32');
        const weights = batch.weights ? tf.tensor2d(batch.weights, [B, T]) : undefined;
        this.model.training = true;
        this.model.seedDropout((this.cfg.seed * 1009 + step * 31 + micro) >>> 0);
        let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
        try {
          result = tf.variableGrads(() => this.model.loss(ids, targets, weights), vars);
        } finally {
          this.model.training = false;
        }
        const grads: Record<string, tf.Tensor> = {};
        for (const [k, g0] of Object.entries(result.grads)) {
          const name = this.model.hfName(k);
          const g = share === 1 ? g0 : tf.mul(g0, share);
          grads[name] = prevSums ? tf.add(prevSums[name], g) : g;
        }
        const value = share === 1 ? result.value : tf.mul(result.value, share);
        const loss: tf.Tensor = prevLoss ? tf.add(prevLoss, value) : value;
        return { grads, loss };
      }) as { grads: Record<string, tf.Tensor>; loss: tf.Tensor };
      if (prevSums) tf.dispose([...Object.values(prevSums), prevLoss!]);
      sums = next.grads;
      lossSum = next.loss;
    }
    const both = tf.tidy(() => {
      const named = new Map<string, tf.Tensor>();
      for (const [k, g] of Object.entries(sums!)) named.set(k, g);
      // Summed pairwise, not with tf.addN: WebGPU's AddN binds every input at once and fails
      // past the device's storage-buffer limit (8 on many adapters), silently zeroing the sum.
      // Each square in a tidy of its own: one gradient's worth of temporaries at a time.
      const norm = tf.sqrt([...named.values()].map((g) => tf.tidy(() => tf.sum(tf.square(g)))).reduce((a, b) => tf.add(a, b))); // []
      // Global-norm clipping stays on the device: no read back to decide the scale, which the
      // optimizer applies parameter by parameter (no second copy of every gradient).
      const scale = grad_clip > 0 ? (tf.minimum(1, tf.div(grad_clip, tf.add(norm, 1e-6))) as tf.Scalar) : undefined;
      // The gradients are let go as their weights are updated (disposed again below: a no-op).
      this.opt.apply(named, lr, scale, true);
      return tf.stack([lossSum!, norm]); // [2]
    });
    tf.dispose([...Object.values(sums!), lossSum!]);
    let loss: number;
    let gradNorm: number;
    try {
      // The one sync point of a step: the loss and gradient norm are what the user watches.
      [loss, gradNorm] = await both.data();
    } finally {
      both.dispose();
    }
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      // The weights in memory are now damaged; the step does not count and no checkpoint is written from them.
      throw new TrainingError(
        `training diverged at step ${step}: loss ${loss}, gradient norm ${gradNorm}. Lower the learning rate (${this.cfg.learning_rate}) and resume from the last checkpoint.`,
        { field: 'train.learning_rate' },
      );
    }
    this.step = step;
    const stepMs = performance.now() - t0;
    const mem = tf.memory();
    return {
      step,
      totalSteps: this.cfg.steps,
      loss,
      lr,
      gradNorm,
      stepMs,
      tokensPerSec: (tokensSeen * 1000) / stepMs,
      numTensors: mem.numTensors,
      numBytes: mem.numBytes,
    };
  }

  /**
   * What a resumed run needs: the trainable weights (the adapters for LoRA, the biases for
   * BitFit, everything for full fine-tuning), optimizer state, step and batch order.
   */
  async checkpoint(): Promise<TrainerCheckpoint> {
    return {
      step: this.step,
      rngState: this.rng.state,
      weights: await readNamed(this.trainable),
      optimizer: await this.opt.exportState(),
    };
  }

  /** Restores the trainable weights, optimizer state, step and batch order of a checkpoint. */
  restore(ckpt: TrainerCheckpoint): void {
    for (const [name, v] of this.trainable) {
      const w = ckpt.weights[name];
      if (!w) throw new CheckpointError(`the checkpoint has no ${name}; it belongs to another kind of run`, { field: name });
      checkShape(name, w.shape, v.shape);
      tf.tidy(() => v.assign(tf.tensor(w.data, w.shape, 'float32')));
    }
    this.opt.loadState(ckpt.optimizer);
    this.step = ckpt.step;
    this.rng.state = ckpt.rngState;
  }

  /** Disposes the optimizer state; the model stays with its owner. */
  dispose(): void {
    this.opt.dispose();
  }
}

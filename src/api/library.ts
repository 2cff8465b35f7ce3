/**
 * The models a person brought: inspected from their files before anything big is read, loaded
 * with progress, stored in IndexedDB (through the store) for the next visit, and one of them held
 * on the device for logits and generation.
 */
import * as tf from '@tensorflow/tfjs-core';
import { generate, type SampleOptions } from '../core/generate';
import type { CausalLM } from '../core/model/base';
import {
  addParameter, buildModel, checkComplete, inspectModel, parseHFConfig, readParameters, type ModelFiles, type ModelSpec, type ModelSummary,
} from '../core/model/hf';
import type { NamedWeights } from '../core/model/base';
import { AdapterBank, type AdapterSummary } from '../core/peft/adapters';
import { HFTokenizer, loadTokenizer, stopTokenIds } from '../core/tokenizer/hf';
import { CheckpointError, ConfigError, DataError, InUseError, TabtuneError } from '../core/errors';
import {
  datasetChunks, deleteDataset as deleteDatasetRecord, listDatasets as listDatasetRecords, loadDatasetRecord, saveDataset as saveDatasetRecord,
  updateDataset as updateDatasetRecord, type DatasetRecord,
} from '../store/datasets';
import type { KV } from '../store/kv';
import { SCHEMA } from '../store/schema';
import {
  deleteTuneRun as deleteTuneRunRecord, isTuneResumable, listTuneRuns, loadTuneBest, loadTuneCheckpoint, loadTuneFiles, loadTuneRun, saveTuneBest, saveTuneCheckpoint, saveTuneFiles, saveTuneRun, type TuneRunRecord,
} from '../store/tunes';
import { UNNAMED } from './blob-files';
import {
  deleteModel, listModels, loadModelRecord, loadTensorBytes, loadTextFile, resumableTensors, saveModel, type ModelRecord,
} from '../store/models';
import type { AdapterInfo, TuneEstimate, TuneEstimateRequest, DataProgress, DataSource, DatasetInfo, SaveDatasetRequest, DatasetPreview, DatasetRequest, EvalInfo, FinetuneRequest, FinetuneResult, GenerateRequest, GenerateResult, GeneratedPiece, ModelInfo, ModelProgress, SampleInfo, ScoreProgress, StepReport } from './protocol';
import { resolveTrainConfig, type TrainConfig } from '../core/config';
import { checkTokens, type ExampleList } from '../core/data/batch';
import { DatasetBuilder, decodedPairs, splitDataset, type BuiltDataset } from '../core/data/dataset';
import { readParquet } from '../core/data/parquet';
import { kindOf, sniffKind, type FileKind } from '../core/data/parse';
import { adapterFolder, mergedFolder, promptFolder, readAdapterFolder } from '../core/io/export';
import { scaleOutRecipe, type RecipeInput } from '../core/io/recipe';
import { zipFiles } from '../core/io/zip';
import { resolveLoraConfig, targetedModules, type LoraConfig } from '../core/peft/lora';
import { estimateTuneMemory } from '../core/train/memory';
import { useBlockAttention } from '../core/model/attention';
import { defaultSamplePrompts, exactMatch, greedyIds, type ExactMatch, type SamplePrompt } from '../core/train/samples';
import { attachMethod, checkHeldOut, dataLoss, defaultLearningRate, perplexityOn, runFinetune, type EvalReport, type FinetuneResume, type Method } from '../core/train/finetune';

const TEXT_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'chat_template.jinja'];

/** What a running fine-tune tells its watcher, and asks of it. */
export interface TuneHooks {
  onStep(r: StepReport): void;
  onEval(e: EvalInfo): void;
  shouldStop(): boolean;
  gate?(): Promise<void>;
  wantsCheckpoint?(): boolean;
  onCheckpoint?(step: number): void;
  onData?(p: DataProgress): void;
  onSample?(s: SampleInfo): void;
  onScore?(p: ScoreProgress): void;
}

interface Loaded {
  id: string;
  model: CausalLM;
  tokenizer: HFTokenizer | null;
  stopIds: number[];
  info: ModelInfo;
  /**
   * Fine-tuning changed it since it was read (its base weights, or a run left a method attached):
   * loading it again brings the base back. Adapters held in `bank` do not change it.
   */
  changed: boolean;
  /** The adapters held for this base, one (or none) active: generation uses the active one. */
  bank: AdapterBank;
}

/** Where fine-tuning's defaults differ from training from scratch: no warmup, no decay of what is learned, down to 0. */
export const FINETUNE_DEFAULTS = { min_lr: 0, warmup_steps: 0, weight_decay: 0 } as const satisfies Partial<TrainConfig>;

/** What a WebAssembly (wasm32) memory can grow to. */
const WASM_MEMORY = 4 * 2 ** 30;

export class ModelLibrary {
  private loaded: Loaded | null = null;
  /** Times a model was built from its weights (an import or a load): switching adapters must not add to it. */
  modelLoads = 0;

  /** `maxBufferBytes` tells the current device's buffer limit (null: none). */
  constructor(private readonly kv: KV, private readonly maxBufferBytes: () => number | null = () => null) {}

  /** What a folder holds, from config.json and the safetensors headers only. */
  async inspect(files: ModelFiles): Promise<ModelInfo> {
    return this.describe(files, await inspectModel(files));
  }

  private async describe(files: ModelFiles, summary: ModelSummary): Promise<ModelInfo> {
    const name = files.name === UNNAMED ? ((await nameInConfig(files)) ?? UNNAMED) : files.name;
    return infoFrom(`${slug(name)}-${await contentFingerprint(files, summary)}`, name, summary.spec, {
      numParams: summary.numParams, fileBytes: summary.fileBytes, dtypes: summary.dtypes,
      files: summary.files.map((f) => f.path), hasTokenizer: await files.has('tokenizer.json'),
      chatTemplate: await hasChatTemplate(files), stored: false,
    });
  }

  /**
   * Reads the weights with progress, stores them, and holds the model ready. Tensor by tensor:
   * each is read, stored, decoded to float32, and its bytes dropped, so the peak is the float32
   * model plus one tensor, not every byte twice.
   */
  async import(files: ModelFiles, onProgress: (p: ModelProgress) => void): Promise<ModelInfo> {
    const summary = await inspectModel(files);
    const info = await this.describe(files, summary);
    const texts: Record<string, string> = {};
    for (const p of TEXT_FILES) if (await files.has(p)) texts[p] = await files.text(p);
    const tokenizer = texts['tokenizer.json'] ? await loadTokenizer(files) : null;
    this.release();
    const weights: NamedWeights = {};
    const total = summary.files.reduce((n, f) => n + f.header.tensors.reduce((m, t) => m + t.end - t.begin, 0), 0);
    // An import cut short (a reload, a dropped connection) continues: stored tensors are not read again.
    const already = await resumableTensors(this.kv, info.id);
    let done = 0;
    for (const t of already.values()) {
      addParameter(weights, { ...t, bytes: await loadTensorBytes(this.kv, info.id, t) }, info.name);
      done += t.byteLength;
    }
    const source = files.name;
    async function* tensors() {
      for await (const p of readParameters(files, summary, undefined, (name) => already.has(name))) {
        addParameter(weights, p, source);
        yield p;
        done += p.bytes.byteLength;
        onProgress({ phase: 'reading', done, total, detail: p.name });
      }
    }
    // On failure what was stored stays for the next attempt to continue from; the record is
    // written last, so the model is not listed until it is complete.
    const record = await saveModel(this.kv, info.id, info.name, texts, tensors(), undefined, already);
    checkComplete(summary.spec, weights, source);
    const stored = { ...info, stored: true, storedBytes: record.storedBytes };
    await this.hold(stored, summary.spec, weights, tokenizer, tokenizer ? await stopTokenIds(files, tokenizer) : eosOf(texts));
    onProgress({ phase: 'ready', done: total, total, detail: info.name });
    return stored;
  }

  async list(): Promise<ModelInfo[]> {
    const out: ModelInfo[] = [];
    for (const r of await listModels(this.kv)) {
      const config = await loadTextFile(this.kv, r.id, 'config.json');
      if (!config) continue;
      out.push(await recordInfo(r, parseHFConfig(JSON.parse(config)), await this.kvFiles(r)));
    }
    return out;
  }

  /** A stored model onto the device, without its original files. */
  async load(id: string, onProgress: (p: ModelProgress) => void): Promise<ModelInfo> {
    // Loading again the model that is held is free, unless it was fine-tuned: then the base comes back.
    if (this.loaded?.id === id && !this.loaded.changed) {
      // The base, exactly: a held adapter stays held, not active. (A bank that refuses says the base
      // is not the base any more: it is read again below.)
      try {
        this.loaded.bank.use(null);
        return this.loaded.info;
      } catch {
        this.loaded.changed = true;
      }
    }
    const record = await loadModelRecord(this.kv, id);
    if (!record) throw new TabtuneError(`no stored model "${id}"`, { field: 'model' });
    const files = await this.kvFiles(record);
    const spec = parseHFConfig(JSON.parse(await files.text('config.json')));
    const info = await recordInfo(record, spec, files);
    // The same base read again: the adapters held for it stay (they never touched its weights).
    const bank = this.loaded?.id === id ? this.loaded.bank : null;
    bank?.letGo();
    this.release(bank);
    try {
      const weights: NamedWeights = {};
      let done = 0;
      for (const t of record.tensors) {
        addParameter(weights, { ...t, bytes: await loadTensorBytes(this.kv, id, t) }, record.name);
        done += t.byteLength;
        onProgress({ phase: 'loading', done, total: record.storedBytes, detail: t.name });
      }
      checkComplete(spec, weights, record.name);
      const tokenizer = (await files.has('tokenizer.json')) ? await loadTokenizer(files) : null;
      const stopIds = tokenizer ? await stopTokenIds(files, tokenizer) : eosOf({ 'config.json': await files.text('config.json') });
      await this.hold(info, spec, weights, tokenizer, stopIds, bank);
    } catch (e) {
      // The base could not be read again (storage, device memory): its held adapters have no model now.
      if (this.loaded?.bank !== bank) bank?.dispose();
      throw e;
    }
    onProgress({ phase: 'ready', done: record.storedBytes, total: record.storedBytes, detail: info.name });
    return info;
  }

  async delete(id: string): Promise<void> {
    const record = await loadModelRecord(this.kv, id);
    await this.refuseIfNeeded(id, (r) => r.modelId === id, `the model ${record?.name ?? id}`);
    if (this.loaded?.id === id) this.release();
    await deleteModel(this.kv, id);
  }

  /** The kept runs that can still be resumed, and so need their model and datasets. */
  async resumableRuns(): Promise<TuneRunRecord[]> {
    return (await listTuneRuns(this.kv)).filter(isTuneResumable);
  }

  /** The run training now (before its first checkpoint it is not resumable yet, but it needs its data). */
  private training: TuneRunRecord | null = null;

  /** A resumable run reads its model and datasets again: while one is kept, or one trains, they stay. */
  private async refuseIfNeeded(id: string, needs: (r: TuneRunRecord) => boolean, what: string): Promise<void> {
    const runs = [...(this.training ? [this.training] : []), ...(await this.resumableRuns()).filter((r) => r.id !== this.training?.id)].filter(needs);
    if (!runs.length) return;
    const r = runs[0];
    const field = what.startsWith('the model') ? 'model' : 'dataset';
    if (r.id === this.training?.id) throw new InUseError(`${what} is in use by the fine-tuning run ${r.id}, training now: stop it first. Nothing was deleted.`, { field });
    throw new InUseError(
      `${what} is needed to resume the fine-tuning run ${r.id} (step ${r.step} of ${r.totalSteps})${runs.length > 1 ? ` and ${runs.length - 1} more` : ''}: ` +
        `finish that run, or delete it or its checkpoints, first. Nothing was deleted.`,
      { field },
    );
  }

  /** Logits at every position of the ids (or of the text, tokenized), from the held model. */
  async logits(id: string, input: { ids?: number[]; text?: string }): Promise<{ ids: number[]; logits: Float32Array; vocabSize: number }> {
    const m = this.require(id);
    const ids = input.ids ?? this.tokenizerOf(m).encode(input.text ?? '');
    if (ids.length === 0 || ids.length > m.model.contextLength) {
      throw new ConfigError(`${ids.length} tokens; the model takes 1 to ${m.model.contextLength}`, { field: 'ids' });
    }
    if (ids.some((i) => !Number.isInteger(i) || i < 0 || i >= m.model.vocabSize)) {
      throw new ConfigError(`token ids must be whole numbers from 0 to ${m.model.vocabSize - 1}`, { field: 'ids' });
    }
    const out = tf.tidy(() => m.model.forward(tf.tensor2d(ids, [1, ids.length], 'int32')));
    // Read back: the caller asked for the numbers.
    const logits = (await out.data()) as Float32Array;
    out.dispose();
    return { ids, logits, vocabSize: m.model.vocabSize };
  }

  /** Streams a continuation of the prompt; each piece carries the text decoded so far. */
  async generate(req: GenerateRequest, onPiece: (p: GeneratedPiece) => void, shouldStop: () => boolean): Promise<GenerateResult> {
    if (req.adapter === undefined) {
      const m = this.require(req.modelId);
      return this.sample(m, this.tokenizerOf(m), req, onPiece, shouldStop);
    }
    const m = await this.switchableBase(req.modelId);
    const tokenizer = this.tokenizerOf(m);
    // This generation with the adapter asked for (null: the base); the active one is put back after.
    const before = m.bank.active;
    m.bank.use(req.adapter);
    try {
      return await this.sample(m, tokenizer, req, onPiece, shouldStop);
    } finally {
      m.bank.use(before);
    }
  }

  private async sample(m: Loaded, tokenizer: HFTokenizer, req: GenerateRequest, onPiece: (p: GeneratedPiece) => void, shouldStop: () => boolean): Promise<GenerateResult> {
    // A chat template writes its own special tokens (BOS, role markers), so none are added again.
    const input = req.chat ? tokenizer.applyChatTemplate([{ role: 'user', content: req.prompt }]) : req.prompt;
    const prompt = tokenizer.encode(input, { addSpecialTokens: !req.chat });
    const t0 = performance.now();
    let firstTokenMs = 0;
    const ids: number[] = [];
    let text = '';
    let stopReason: GenerateResult['stopReason'] = 'length';
    const options: Partial<SampleOptions> = { ...req.options, stopIds: m.stopIds };
    for await (const t of generate(m.model, prompt, options)) {
      if (ids.length === 0) firstTokenMs = performance.now() - t0;
      if (t.done === 'stop') {
        stopReason = 'stop';
        break;
      }
      ids.push(t.id);
      text = tokenizer.decode(ids, { skipSpecialTokens: true });
      onPiece({ id: t.id, text });
      if (t.done) stopReason = t.done;
      // Let a stop request in: on CPU-like backends a read back resolves without a macrotask.
      await new Promise((r) => setTimeout(r, 0));
      if (shouldStop()) {
        stopReason = 'cancelled';
        break;
      }
    }
    const ms = performance.now() - t0;
    return { text, input, ids, promptTokens: prompt.length, stopReason, firstTokenMs, tokensPerSec: ids.length / (ms / 1000) };
  }

  /**
   * A data file read as it streams (a File is read in chunks, never whole), with the format,
   * mapping and template applied and every row tokenized by the held model's tokenizer.
   */
  private async readDataset(m: Loaded, given: DataSource, blockSize: number, onProgress: (p: DataProgress) => void, previewRows = 20): Promise<BuiltDataset> {
    const tokenizer = this.tokenizerOf(m);
    const req = await this.resolveSource(given);
    const kind: FileKind = req.file || req.bytes ? kindOf(req.dataset) : sniffKind(req.text ?? '');
    const builder = new DatasetBuilder(req.dataset, kind, {
      format: req.format,
      mapping: req.mapping,
      template: req.template,
      renderChat: tokenizer.chatTemplate ? (msgs, g) => tokenizer.applyChatTemplate(msgs, { addGenerationPrompt: g }) : null,
      encode: (t, special) => tokenizer.encode(t, { addSpecialTokens: special }),
      blockSize,
      previewRows,
    });
    const source: Blob = req.file ?? new Blob([(req.bytes ?? new TextEncoder().encode(req.text ?? '')) as BlobPart]);
    const total = source.size;
    const columnsOf = (e: unknown) => {
      // A format or mapping that does not fit the columns: the columns go with the error, for mapping them.
      if (e instanceof DataError && (e.field === 'format' || e.field === 'mapping')) (e as DataError & { columns?: string[] }).columns = builder.columns;
      return e;
    };
    if (kind === 'parquet') {
      // Parquet is read by ranges (its footer first), one row group at a time.
      try {
        const { columns } = await readParquet(
          req.dataset,
          { byteLength: total, slice: (a, b) => source.slice(a, b).arrayBuffer() },
          (rows, columns) => builder.addRows(rows, columns),
          (rows, all) => onProgress({ done: Math.round((total * rows) / Math.max(1, all)), total, rows: builder.rowsSoFar }),
        );
        builder.addRows([], columns, total);
        return builder.end();
      } catch (e) {
        throw columnsOf(e);
      }
    }
    let done = 0;
    const reader = source.stream().getReader();
    let lastYield = performance.now();
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      try {
        builder.push(value);
      } catch (e) {
        void reader.cancel();
        throw columnsOf(e);
      }
      done += value.length;
      // Progress, and a moment for other messages (a stop, a second request) every 100 ms.
      if (performance.now() - lastYield > 100) {
        onProgress({ done, total, rows: builder.rowsSoFar });
        await new Promise((r) => setTimeout(r, 0));
        lastYield = performance.now();
      }
    }
    let built: BuiltDataset;
    try {
      built = builder.end();
    } catch (e) {
      throw columnsOf(e);
    }
    onProgress({ done: total, total, rows: built.examples?.length ?? 1 });
    return built;
  }

  /**
   * A stored dataset as a source: its file (reassembled from its chunks) and, unless the request
   * says otherwise, the format, mapping and template it was saved with.
   */
  private async resolveSource(req: DataSource): Promise<DataSource> {
    if (!req.datasetId) return req;
    const r = await loadDatasetRecord(this.kv, req.datasetId);
    if (!r) throw new TabtuneError(`no stored dataset "${req.datasetId}"; it may have been deleted`, { field: 'dataset' });
    const parts: Uint8Array[] = [];
    for await (const c of datasetChunks(this.kv, r)) parts.push(c);
    return {
      ...req,
      dataset: r.name,
      file: new Blob(parts as BlobPart[]),
      format: req.format ?? (r.options.format as DataSource['format']),
      mapping: req.mapping ?? r.options.mapping,
      template: req.template ?? (r.options.template as DataSource['template']),
    };
  }

  /** Keeps a data file in storage with how it is read and split; listed once it is whole. */
  async saveDataset(req: SaveDatasetRequest, onProgress: (p: DataProgress) => void): Promise<DatasetInfo> {
    const source: Blob = req.file ?? new Blob([(req.bytes ?? new TextEncoder().encode(req.text ?? '')) as BlobPart]);
    const total = source.size;
    const name = req.file || req.bytes ? req.dataset : sniffKind(req.text ?? '') === 'text' ? `${req.dataset}.txt` : `${req.dataset}.jsonl`;
    let done = 0;
    async function* chunks() {
      const reader = source.stream().getReader();
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) return;
        done += value.length;
        onProgress({ done, total, rows: 0 });
        yield value;
      }
    }
    const id = `${slug(name)}-${Date.now().toString(36)}${Math.floor(Math.random() * 46656).toString(36).padStart(3, '0')}`;
    const record = await saveDatasetRecord(
      this.kv,
      { id, name, options: { format: req.format, mapping: req.mapping, template: req.template }, split: req.split, summary: req.summary },
      chunks(),
    );
    return datasetInfo(record);
  }

  async listDatasets(): Promise<DatasetInfo[]> {
    return (await listDatasetRecords(this.kv)).map(datasetInfo);
  }

  async updateDataset(id: string, change: Partial<Pick<DatasetInfo, 'options' | 'split' | 'summary'>>): Promise<DatasetInfo> {
    const r = await updateDatasetRecord(this.kv, id, change);
    if (!r) throw new TabtuneError(`no stored dataset "${id}"`, { field: 'dataset' });
    return datasetInfo(r);
  }

  async deleteDataset(id: string): Promise<void> {
    const record = await loadDatasetRecord(this.kv, id);
    await this.refuseIfNeeded(id, (r) => tuneDatasetIds(r).includes(id), `the dataset ${record?.name ?? id}`);
    await deleteDatasetRecord(this.kv, id);
  }

  /** What a data file will teach, before training: the report, a preview of the exact training text, an estimate of time. */
  async inspectDataset(req: DatasetRequest, onProgress: (p: DataProgress) => void): Promise<DatasetPreview> {
    const m = this.require(req.modelId);
    const blockSize = Math.min(req.blockSize ?? 128, m.model.contextLength);
    let built: BuiltDataset;
    try {
      built = await this.readDataset(m, req, blockSize, onProgress, req.previewRows ?? 12);
    } catch (e) {
      const columns = (e as { columns?: string[] }).columns;
      if (!columns) throw e;
      // The file reads, but its columns need a format or a mapping: say so, with the columns to choose from.
      return {
        file: req.dataset, kind: req.file || req.bytes ? kindOf(req.dataset) : sniffKind(req.text ?? ''), format: req.format ?? '', template: req.template ?? '', columns,
        rows: 0, rejected: [], rejectedCount: 0, truncated: [], truncatedCount: 0, tokens: 0, histogram: { edges: [], counts: [] }, bytes: 0, lines: 0, blockSize,
        preview: [], estimate: { stepsPerEpoch: 0, msPerStep: null, secondsPerEpoch: null }, problem: (e as Error).message,
      };
    }
    const batch = req.batchSize ?? 4;
    const trainShare = 1 - (req.validation ?? 0) - (req.test ?? 0);
    const trainRows = built.examples ? Math.round(built.examples.length * trainShare) : 0;
    const stepsPerEpoch = Math.max(1, Math.ceil(req.packing || !built.examples ? (built.tokenCount * trainShare) / (batch * blockSize) : trainRows / batch));
    // Padded rows are as long as the longest of their batch; the block is the upper bound. A step
    // that cannot fit here is not timed: trying it would exhaust the device (WebAssembly aborts).
    const fits = Number.isInteger(batch) && batch >= 1 && !this.estimateTune({ modelId: req.modelId, method: 'lora', r: 8, batch, block: blockSize }).refusal;
    const msPerStep = fits ? await this.timeStep(m, batch, blockSize).catch(() => NaN) : NaN;
    return {
      file: built.file, kind: built.kind, format: built.format, template: built.template, columns: built.columns,
      rows: built.examples?.length ?? 1, rejected: built.rejected.slice(0, 200), rejectedCount: built.rejectedCount,
      truncated: built.truncated.slice(0, 200), truncatedCount: built.truncatedCount, tokens: built.tokenCount,
      histogram: built.histogram, bytes: built.bytes, lines: built.lines, blockSize,
      preview: built.preview.map((p) => ({ line: p.line, fields: p.fields, prompt: p.prompt, completion: p.completion, promptTokens: p.promptTokens, completionTokens: p.completionTokens })),
      problem: null,
      estimate: Number.isFinite(msPerStep) ? { stepsPerEpoch, msPerStep, secondsPerEpoch: (stepsPerEpoch * msPerStep) / 1000 } : { stepsPerEpoch, msPerStep: null, secondsPerEpoch: null },
    };
  }

  /**
   * Milliseconds a training step of [batch, block] takes on this device, estimated as three
   * forward passes (the backward pass costs about two): one warm-up, one timed.
   */
  private async timeStep(m: Loaded, batch: number, blockSize: number): Promise<number> {
    const run = async () => {
      const t0 = performance.now();
      const out = tf.tidy(() => m.model.loss(tf.zeros([batch, blockSize], 'int32') as tf.Tensor2D, tf.zeros([batch, blockSize], 'int32') as tf.Tensor2D));
      // Read back: the time counts only once the device is done.
      await out.data();
      out.dispose();
      return performance.now() - t0;
    };
    await run();
    return 3 * (await run());
  }

  /** Fine-tunes the held model on a text with one method; the model keeps what it learned. */
  /**
   * Fine-tunes the held model with one method; the model keeps what it learned. The run is kept in
   * storage from its first step: its data as stored datasets, its settings, metrics and checkpoints,
   * so it can be resumed after a reload or a crash.
   */
  async finetune(req: FinetuneRequest, hooks: TuneHooks, runId?: string): Promise<FinetuneResult> {
    const m = this.require(req.modelId);
    this.tokenizerOf(m);
    // The data is kept first: a run names it by id, so a resumed run reads exactly the same rows.
    const stored = await this.keepSources(req);
    const now = Date.now();
    const run: TuneRunRecord = {
      schema: SCHEMA.tune, id: runId ?? newTuneRunId(m.info.name, req.method), modelId: m.id, modelName: m.info.name, datasetId: stored.datasetId ?? null,
      request: stored as unknown as Record<string, unknown>, datasetName: req.dataset, totalSteps: 0, status: 'running', step: 0,
      latestCheckpoint: null, best: null, history: [], evals: [], samples: [], report: null, outcome: null, error: null, createdAt: now, updatedAt: now,
    };
    try {
      return await this.execute(run, hooks, false);
    } catch (e) {
      // Refused before anything was trained (bad data, a wrong mapping): the copies kept for it go,
      // with the run record; nothing is left that no run points at.
      const kept = await loadTuneRun(this.kv, run.id).catch(() => undefined);
      if (!kept || (kept.step === 0 && !kept.latestCheckpoint)) {
        await deleteTuneRunRecord(this.kv, run.id).catch(() => undefined);
        for (const id of [stored.datasetId, stored.validationFile?.datasetId, stored.testFile?.datasetId]) {
          if (id && id !== req.datasetId && id !== req.validationFile?.datasetId && id !== req.testFile?.datasetId) await this.deleteDataset(id).catch(() => undefined);
        }
      }
      throw e;
    }
  }

  /**
   * The device memory a run of these settings needs on the held model, and whether it fits here:
   * a GPU refuses a buffer above its limit; WebAssembly addresses at most 4 GiB.
   */
  estimateTune(req: TuneEstimateRequest): TuneEstimate {
    const m = this.require(req.modelId);
    const model = m.model;
    const targets = req.method === 'lora' || req.method === 'qlora' ? targetedModules(model, resolveLoraConfig(m.info.arch, { target_modules: req.targetModules }).target_modules) : [];
    let biasParams = 0;
    for (const [name, v] of model.params) if (name.endsWith('.bias')) biasParams += v.size;
    const linear = model.linearModules();
    const shape = {
      numParams: model.numParams(), biasParams, linearParams: linear.reduce((n, l) => n + l.in * l.out, 0),
      layers: m.info.layers, hidden: m.info.hidden, heads: m.info.heads, vocabSize: m.info.vocabSize,
      // The widest linear layer of a block is the MLP's (lm_head is not among them).
      intermediate: Math.max(m.info.hidden, ...linear.map((l) => Math.max(l.in, l.out))),
    };
    const block = Math.min(req.block, m.info.contextLength);
    const backend = tf.getBackend();
    // GPT-2's attention goes block-diagonal on WebAssembly with few heads (src/core/model/attention.ts).
    const blockAttention = m.info.arch === 'gpt2' && useBlockAttention(shape.heads);
    const memory = estimateTuneMemory(shape, { method: req.method, targets, r: req.r, bits: req.bits ?? 8, virtualTokens: req.virtualTokens ?? 0, batch: req.batch, block, blockAttention });
    const limit = this.maxBufferBytes();
    const mib = (b: number) => `${Math.ceil(b / 2 ** 20).toLocaleString('en')} MiB`;
    let refusal: string | null = null;
    if (limit && memory.largest.bytes > limit) {
      refusal = `${memory.largest.what} take ${mib(memory.largest.bytes)}, more than this GPU's largest buffer (${mib(limit)}): lower the batch or block size.`;
    } else if (backend === 'wasm' && memory.total > WASM_MEMORY) {
      refusal = `This run needs about ${mib(memory.total)}, more than the 4 GiB WebAssembly can address: lower the batch or block size, or use LoRA or QLoRA.`;
    }
    return { ...memory, backend, limit, refusal };
  }

  /** Continues a kept run from its latest checkpoint, exactly as if it had never stopped. */
  async resumeTuneRun(runId: string, hooks: TuneHooks): Promise<FinetuneResult> {
    const run = await loadTuneRun(this.kv, runId);
    if (!run) throw new TabtuneError(`no kept run "${runId}"`, { field: 'run' });
    if (!isTuneResumable(run)) throw new TabtuneError(`run ${run.id} ${run.status === 'done' ? 'is finished' : 'has no checkpoint to resume from'}`, { field: 'run' });
    if (this.loaded?.id !== run.modelId) await this.load(run.modelId, () => undefined);
    return this.execute(run, hooks, true);
  }

  /** Data given as a file, bytes or text, kept as a stored dataset; the request then names it by id. */
  private async keepSources(req: FinetuneRequest): Promise<FinetuneRequest> {
    const split = { validation: req.validation ?? 0, test: req.test ?? 0, seed: Number((req.train as { seed?: number } | undefined)?.seed ?? 1337) };
    const summary = { format: req.format ?? 'detected', rows: 0, rejected: 0 };
    const keep = async <T extends { dataset: string; datasetId?: string; file?: Blob; bytes?: Uint8Array; text?: string }>(src: T): Promise<T> => {
      if (src.datasetId) return src;
      const info = await this.saveDataset({ dataset: src.dataset, file: src.file, bytes: src.bytes, text: src.text, format: req.format, mapping: req.mapping, template: req.template, split, summary }, () => undefined);
      return { ...src, datasetId: info.id, file: undefined, bytes: undefined, text: undefined };
    };
    return {
      ...(await keep(req)),
      validationFile: req.validationFile ? await keep(req.validationFile) : undefined,
      testFile: req.testFile ? await keep(req.testFile) : undefined,
    };
  }

  private async execute(run: TuneRunRecord, hooks: TuneHooks, resuming: boolean): Promise<FinetuneResult> {
    this.training = run;
    try {
      return await this.executeRun(run, hooks, resuming);
    } finally {
      this.training = null;
    }
  }

  /** A run's settings resolved, and its data read and split, exactly as the run trains on them. */
  private async runData(m: Loaded, req: FinetuneRequest, onData: (p: DataProgress) => void) {
    const method = req.method as Method;
    const train = resolveTrainConfig(
      {
        steps: 50, batch_size: 4, block_size: Math.min(128, m.model.contextLength), learning_rate: defaultLearningRate(method), ...FINETUNE_DEFAULTS,
        checkpoint_every: 25, ...(req.train as Partial<TrainConfig>),
      },
      { n_positions: m.model.contextLength },
    );
    const built = await this.readDataset(m, req, train.block_size, onData);
    const other = (v: FinetuneRequest['validationFile']) =>
      v ? this.readDataset(m, { dataset: v.dataset, datasetId: v.datasetId, file: v.file, bytes: v.bytes, text: v.text, format: req.format, mapping: req.mapping, template: req.template }, train.block_size, () => undefined) : null;
    const valBuilt = await other(req.validationFile);
    const testBuilt = await other(req.testFile);
    const split = splitDataset(
      built,
      { validation: valBuilt ? 0 : (req.validation ?? (req.evalEvery ? 0.1 : 0)), test: testBuilt ? 0 : (req.test ?? 0), seed: train.seed },
      req.completionOnly,
      req.packing,
      valBuilt,
      testBuilt,
    );
    return { method, train, built, testBuilt, ...split };
  }

  /** The same run for bigger machines, zipped: its training split, and TRL + PEFT and Axolotl settings. */
  private recipeZip(m: Loaded, req: FinetuneRequest, prepared: Awaited<ReturnType<ModelLibrary['runData']>>, lora: LoraConfig | null): Uint8Array {
    const { method, train, data, trainTexts, trainText } = prepared;
    const tokenizer = this.tokenizerOf(m);
    const recipe = scaleOutRecipe({
      baseModel: m.info.name,
      method: (method === 'qlora' ? 'lora' : method) as RecipeInput['method'],
      quantBits: method === 'qlora' ? (req.bits ?? 8) : undefined,
      lora,
      virtualTokens: req.numVirtualTokens ?? 8,
      train,
      data: data.kind === 'tokens' ? { text: trainText! } : { pairs: trainTexts ?? decodedPairs(data.train, (ids) => tokenizer.decode(ids, { skipSpecialTokens: true })), completionOnly: data.completionOnly, packing: data.packing },
    });
    const enc = new TextEncoder();
    return zipFiles([...recipe].map(([name, body]) => [name, enc.encode(body)] as [string, Uint8Array]), new Date());
  }

  /** A kept run's scale-out recipe, made again from its kept data and settings (its model must be loaded). */
  async tuneRunRecipe(runId: string): Promise<{ name: string; bytes: Uint8Array }> {
    const run = await loadTuneRun(this.kv, runId);
    if (!run) throw new TabtuneError(`no kept run "${runId}"`, { field: 'run' });
    const m = this.require(run.modelId);
    const req = run.request as unknown as FinetuneRequest;
    const prepared = await this.runData(m, req, () => undefined);
    const lora = prepared.method === 'lora' || prepared.method === 'qlora' ? resolveLoraConfig(m.info.arch, req.lora as Partial<LoraConfig>) : null;
    return { name: `${slug(m.info.name)}-scale-out-recipe.zip`, bytes: this.recipeZip(m, req, prepared, lora) };
  }

  private async executeRun(run: TuneRunRecord, hooks: TuneHooks, resuming: boolean): Promise<FinetuneResult> {
    const req = run.request as unknown as FinetuneRequest;
    let m = this.require(run.modelId);
    const tokenizer = this.tokenizerOf(m);
    const prepared = await this.runData(m, req, hooks.onData ?? (() => undefined));
    const { method, train, built, data, report, testBuilt } = prepared;
    if (data.kind === 'tokens') checkTokens(data.train, train.block_size, req.dataset);
    const evalEvery = req.evalEvery ?? 0;
    if (evalEvery > 0) checkHeldOut(data, 'validation', train.block_size);
    // The test part is scored after training: a part too small to score must refuse now, not then.
    const scoreTest = !!(req.test || testBuilt);
    if (scoreTest) checkHeldOut(data, 'test', train.block_size);
    let forgetting: Int32Array | null = null;
    if (req.forgetting) {
      forgetting = Int32Array.from(tokenizer.encode(req.forgetting.text, { addSpecialTokens: false }));
      checkTokens(forgetting, train.block_size, req.forgetting.name);
    }
    const lora = method === 'lora' || method === 'qlora' ? resolveLoraConfig(m.info.arch, req.lora as Partial<LoraConfig>) : null;
    const eos = tokenizer.eosId ?? m.stopIds[0];
    if (eos === undefined && data.kind === 'examples') throw new ConfigError(`${m.info.name} names no EOS token, so it cannot learn where an answer ends`, { field: 'eos_token' });
    // Every run starts from the base: a model tuned by an earlier run is read again from the store.
    if (m.changed) {
      await this.load(run.modelId, () => undefined);
      m = this.require(run.modelId);
    }
    // A held adapter is set aside (kept, not active) while the run trains its own.
    m.bank.use(null);
    const datasetInfo = { ...report, rejected: report.rejected.slice(0, 200) };
    // A resume reads its checkpoint before anything is written: a refusal leaves the run as it was.
    let resume: FinetuneResume | null = null;
    if (resuming) {
      const ckpt = run.latestCheckpoint ? await loadTuneCheckpoint(this.kv, run.latestCheckpoint) : undefined;
      if (!ckpt) throw new CheckpointError(`run ${run.id}'s checkpoint at step ${run.step} cannot be read; delete the run to start over`, { field: 'run' });
      // The best weights the checkpoint knew (not those of a best found after it).
      const bestStep = ckpt.watch.best?.step;
      resume = { from: { trainer: ckpt.trainer, watch: ckpt.watch }, bestWeights: bestStep === undefined ? null : await loadTuneBest(this.kv, run.id, bestStep) };
      // A best found after the checkpoint belongs to a timeline that is being replayed: the run's best is the checkpoint's again.
      run = { ...run, best: ckpt.watch.best ? { step: ckpt.watch.best.step, valLoss: ckpt.watch.best.valLoss } : null };
    }
    // The forgetting check's "before" is the base's perplexity: measured before the method is attached.
    const perplexityBefore = forgetting && !resuming ? await perplexityOn(m.model, forgetting, train.block_size) : null;
    // Exact match needs answers to compare: rows with a prompt and a completion, and a test part.
    const matchLimit = req.exactMatch ?? 0;
    if (!Number.isInteger(matchLimit) || matchLimit < 0) throw new ConfigError(`exactMatch must be a whole number of test rows (0: none), got ${req.exactMatch}`, { field: 'exactMatch' });
    if (req.samples) {
      const { every, maxNewTokens = 24 } = req.samples;
      if (!Number.isInteger(every) || every < 0) throw new ConfigError(`samples.every must be a whole number of steps (0: none), got ${every}`, { field: 'samples.every' });
      if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new ConfigError(`samples.maxNewTokens must be a whole number of at least 1, got ${maxNewTokens}`, { field: 'samples.maxNewTokens' });
    }
    if (matchLimit > 0 && !(scoreTest && data.kind === 'examples')) {
      throw new ConfigError('exact match is scored on a test part of rows with a prompt and a completion: set a test share or a test file of such rows', { field: 'exactMatch' });
    }
    const decodeText = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });
    const scoreMatch = async (what: 'before' | 'after'): Promise<ExactMatch> =>
      exactMatch(m.model, (data as { test: ExampleList }).test, decodeText, m.stopIds, matchLimit, 5, (done, total) => hooks.onScore?.({ what, done, total }), hooks.shouldStop);
    // The base's score, before anything is attached; a resumed run kept it with its report.
    const matchBefore: ExactMatch | null =
      matchLimit > 0 ? ((run.report as { exactMatchBefore?: ExactMatch } | null)?.exactMatchBefore ?? (resuming ? null : await scoreMatch('before'))) : null;
    m.changed = true;
    // These change the base itself: the adapters held for it cannot be switched on it afterwards.
    const changes = { full: 'full fine-tuning', bitfit: 'BitFit', qlora: `QLoRA (its base quantized to ${req.bits ?? 8} bits)` } as Partial<Record<Method, string>>;
    if (changes[method]) m.bank.markBaseChanged(changes[method]!, method === 'full' || method === 'bitfit');
    const attached = await attachMethod(m.model, { method, lora, virtualTokens: req.numVirtualTokens ?? 8, bits: req.bits ?? 8 }, train.block_size, train.seed);
    const history: StepReport[] = run.history.slice();
    const evals: EvalInfo[] = (run.evals as unknown as EvalInfo[]).slice();
    const samples: SampleInfo[] = (run.samples ?? []).slice();
    const sampling = req.samples && req.samples.every > 0 ? req.samples : null;
    const watched: SamplePrompt[] = !sampling
      ? []
      : sampling.prompts?.length
        ? sampling.prompts.filter((p) => p.length > 0).map((p) => ({ text: p, ids: tokenizer.encode(p, { addSpecialTokens: true }) }))
        : defaultSamplePrompts(data, (ids) => tokenizer.decode(ids, { skipSpecialTokens: true }));
    const sampleAt = async (step: number, final = false) => {
      for (const p of watched) {
        // A stop skips the samples before training; those of a step are made even then, so a run
        // resumed from that step's checkpoint has them, as an uninterrupted run does.
        if (step === 0 && hooks.shouldStop()) return;
        const ids = await greedyIds(m.model, p.ids, sampling?.maxNewTokens ?? 24, m.stopIds);
        const s: SampleInfo = { step, prompt: p.text, text: tokenizer.decode(ids, { skipSpecialTokens: true }), ...(final ? { final } : {}) };
        samples.push(s);
        hooks.onSample?.(s);
      }
    };
    // The rows are read as they were read now, whatever the dataset's options say later: a resume
    // must see the same token ids (the detected format and default template are written down).
    const frozen = { ...req, format: req.format ?? (built.examples ? (built.format as FinetuneRequest['format']) : undefined), template: req.template ?? (built.examples ? (built.template as FinetuneRequest['template']) : undefined), mapping: req.mapping ?? {} };
    run = await saveTuneRun(this.kv, {
      ...run, request: frozen as unknown as Record<string, unknown>, totalSteps: train.steps, status: 'running', error: null,
      report: { ...datasetInfo, ...(matchBefore ? { exactMatchBefore: matchBefore } : {}) } as unknown as Record<string, unknown>,
    });
    // Writes to storage go one after another: a checkpoint and a best never race on the record.
    let writes: Promise<unknown> = Promise.resolve();
    const write = (f: () => Promise<TuneRunRecord>) => (writes = writes.then(async () => (run = await f())));
    const toInfo = (e: EvalReport): EvalInfo => ({
      step: e.step, trainLoss: e.trainLoss, valLoss: e.valLoss, improved: e.improved, stop: e.stop, overfitting: e.overfitting,
      best: { step: e.best.step, valLoss: e.best.valLoss },
    });
    let outcome;
    let result: FinetuneResult;
    try {
      // What the model writes before it learns anything (with the method attached: a quantized base is the start).
      if (!resuming) await sampleAt(0);
      outcome = await runFinetune(
        m.model, train, data, eos ?? 0, { evalEvery, patience: req.patience ?? 0, minDelta: req.minDelta ?? 0, forgetting, perplexityBefore },
        {
          onStep: async (r) => {
            history.push(r);
            hooks.onStep(r);
            if (sampling && r.step % sampling.every === 0) await sampleAt(r.step);
            // Let a stop request in: on CPU-like backends a read back resolves without a macrotask.
            await new Promise((res) => setTimeout(res, 0));
          },
          onEval: (e) => {
            evals.push(toInfo(e));
            hooks.onEval(evals.at(-1)!);
          },
          shouldStop: hooks.shouldStop,
          gate: hooks.gate,
          wantsCheckpoint: hooks.wantsCheckpoint,
          checkpoint: {
            every: train.checkpoint_every,
            save: async (c) => {
              await write(() => saveTuneCheckpoint(this.kv, run, c, history, evals as unknown as Record<string, unknown>[], samples));
              hooks.onCheckpoint?.(c.trainer.step);
            },
          },
          onBest: async (weights, point) => {
            await write(() => saveTuneBest(this.kv, run, weights, { step: point.step, valLoss: point.valLoss }));
          },
        },
        resume,
      );
    } catch (e) {
      await writes.catch(() => undefined);
      await saveTuneRun(this.kv, { ...run, status: 'failed', error: e instanceof Error ? e.message : String(e) }).catch(() => undefined);
      throw e;
    }
    await writes;
    try {
      const folder = lora
        ? await adapterFolder(m.model, lora, m.info.name)
        : method === 'prompt' && outcome.steps > 0
          ? await promptFolder(m.model, m.info.name, m.info.layers, m.info.heads)
          : new Map<string, Uint8Array>();
      // Nothing was trained (stopped before the first step): no adapter to keep.
      if (outcome.steps === 0) folder.clear();
      const files = [...folder].map(([name, b]) => ({ name, bytes: b }));
      // The finished adapter is kept with the run first, to download again later: what follows may fail.
      if (files.length) await saveTuneFiles(this.kv, run.id, files);
      const testLoss = scoreTest ? await dataLoss(m.model, data, 'test', train.block_size, eos ?? 0) : null;
      // A stopped run is not scored or sampled again: the person asked it to end.
      const matchAfter = matchLimit > 0 && !outcome.cancelled ? await scoreMatch('after') : null;
      // The model as it is kept (the best weights, if they were restored), unless the last step showed it already.
      if (sampling && outcome.steps > 0 && !outcome.cancelled && (outcome.restoredBest || samples.at(-1)?.step !== outcome.steps)) {
        await sampleAt(outcome.restoredBest && outcome.best ? outcome.best.step : outcome.steps, true);
      }
      result = {
        runId: run.id,
        steps: outcome.steps,
        trainable: attached.trainable,
        total: attached.total,
        dataset: datasetInfo,
        files,
        zip: files.length ? zipFiles(folder, new Date()) : null,
        recipe: this.recipeZip(m, req, prepared, lora),
        quantized: attached.quantized,
        evals,
        best: outcome.best && { step: outcome.best.step, valLoss: outcome.best.valLoss },
        stoppedEarly: outcome.stoppedEarly,
        cancelled: outcome.cancelled,
        restoredBest: outcome.restoredBest,
        forgetting: outcome.forgetting && req.forgetting ? { file: req.forgetting.name, ...outcome.forgetting } : null,
        testLoss,
        samples,
        // A stopped run is not scored after; its base's score is still worth showing.
        exactMatch: matchAfter || matchBefore ? { before: matchBefore, after: matchAfter } : null,
      };
      const { files: _f, zip: _z, recipe: _r, evals: _e, dataset: _d, samples: _s, ...summary } = result;
      await saveTuneRun(this.kv, { ...run, samples, status: outcome.cancelled ? 'stopped' : 'done', outcome: summary as unknown as Record<string, unknown> });
    } catch (e) {
      // Trained, but what follows failed: the run says so (its checkpoint and any kept files stay).
      await saveTuneRun(this.kv, { ...run, status: 'failed', error: `after training: ${e instanceof Error ? e.message : String(e)}` }).catch(() => undefined);
      throw e;
    }
    // The adapter just trained is held with the others, active: generation now uses it, and it can be compared.
    const config = result.files.find((f) => f.name === 'adapter_config.json');
    if (config) {
      m.bank.adopt(run.id, `${req.dataset} (${method})`, JSON.parse(new TextDecoder().decode(config.bytes)), run.id);
      // LoRA and prompt tuning leave the base as it was read.
      if (!changes[method]) m.changed = false;
    }
    return result;
  }

  /**
   * The held model with what fine-tuning did folded in (LoRA merged; full and BitFit weights as
   * they are), as a Hugging Face folder zipped: config, tokenizer files and model.safetensors.
   */
  async exportMerged(id: string, adapterId: string | null = null): Promise<{ name: string; bytes: Uint8Array }> {
    let m = this.require(id);
    // The adapter asked for (a run's), not whichever Compare left active.
    if (adapterId !== null && m.bank.has(adapterId)) {
      m = await this.switchableBase(id);
      m.bank.use(adapterId);
    }
    if (m.model.softPrompt) throw new TabtuneError('a prompt-tuned model cannot be merged: its virtual tokens are inputs, not weights. Download the adapter instead.', { field: 'method' });
    const record = await loadModelRecord(this.kv, id);
    if (!record) throw new TabtuneError(`no stored model "${id}"`, { field: 'model' });
    const files = await this.kvFiles(record);
    // Merging folds the active adapter into the base and disposes it: it is no longer held apart.
    if (m.model.adapters.size) m.bank.forgetActive('a merge (Download merged model)');
    m.changed = true;
    const folder = await mergedFolder(m.model, files);
    return { name: `${slug(m.info.name)}-merged.zip`, bytes: zipFiles(folder, new Date()) };
  }

  /**
   * A PEFT adapter (LoRA or prompt tuning, from tabtune or Python PEFT) onto the held model, from
   * its base: the two files, a folder holding them, or a zip of them. It is held with the others
   * and made active.
   */
  async applyAdapter(id: string, adapter: ModelFiles): Promise<AdapterInfo> {
    let m = this.require(id);
    if (m.changed) {
      await this.load(id, () => undefined);
      m = this.require(id);
    }
    try {
      const info = await this.addAdapter(id, adapter);
      m.bank.use(info.id);
      return { ...info, active: true };
    } catch (e) {
      // A refused adapter changed nothing held; the model is the base, as after a failed apply before.
      // The refusal is what the person needs to read, not a second one from here.
      try {
        m.bank.use(null);
      } catch {
        m.changed = true;
      }
      throw e;
    }
  }

  /**
   * Holds a PEFT adapter for the loaded model's base, not active: from its files (the two files,
   * a folder or a zip), checked against the base before anything is made.
   */
  async addAdapter(id: string, adapter: ModelFiles, runId: string | null = null): Promise<AdapterInfo> {
    const m = this.require(id);
    const { config, tensors } = await readAdapterFolder(adapter);
    // Two files picked without a folder have no name of their own.
    const name = adapter.name === UNNAMED ? 'adapter from files' : adapter.name;
    const ids = new Set(m.bank.list().map((a) => a.id));
    let adapterId = runId ?? slug(name);
    for (let i = 2; ids.has(adapterId); i++) adapterId = `${slug(name)}-${i}`;
    return this.adapterInfo(m, m.bank.add(adapterId, name, config, tensors, { runId }));
  }

  /** Holds the adapter a kept fine-tuning run finished with (once: asked again, the held one). */
  async addRunAdapter(id: string, runId: string): Promise<AdapterInfo> {
    const m = this.require(id);
    if (m.bank.has(runId)) return this.adapterInfo(m, m.bank.list().find((a) => a.id === runId)!);
    const run = await loadTuneRun(this.kv, runId);
    if (!run) throw new TabtuneError(`no kept run "${runId}"`, { field: 'run' });
    if (run.modelId !== m.id) throw new TabtuneError(`run ${runId} tuned ${run.modelName}, not the loaded ${m.info.name}: load that model to use its adapter`, { field: 'run' });
    const files = await loadTuneFiles(this.kv, runId);
    const method = String(run.request.method);
    if (!files?.length) throw new TabtuneError(`run ${runId} kept no adapter: it stopped before its first step, or ${method} gives none`, { field: 'run' });
    const byName = new Map(files.map((f) => [f.name, f.bytes]));
    const folder: ModelFiles = {
      name: `${run.datasetName} (${method})`,
      has: async (p) => byName.has(p),
      size: async (p) => byName.get(p)?.length ?? 0,
      text: async (p) => new TextDecoder().decode(byName.get(p)),
      read: async (p, start, end) => byName.get(p)!.slice(start, end),
    };
    return this.addAdapter(id, folder, runId);
  }

  /** The adapters held for the loaded model, in the order they came, and which is active. */
  listAdapters(id: string): AdapterInfo[] {
    const m = this.require(id);
    return m.bank.list().map((a) => this.adapterInfo(m, a));
  }

  /**
   * The held model, ready to switch adapters: a base that a QLoRA run quantized, or a merge folded,
   * is read again first (its adapters stay held; nothing is lost). A base that full fine-tuning or
   * BitFit changed is not: those weights live only here, and the refusal says to load it again.
   */
  private async switchableBase(id: string): Promise<Loaded> {
    const m = this.require(id);
    const blocked = m.bank.blocker();
    if (!blocked || blocked.lossy) return m;
    await this.load(id, () => undefined);
    return this.require(id);
  }

  /** Makes a held adapter active, or none (null: the base exactly), without reading the base again. */
  async useAdapter(id: string, adapterId: string | null): Promise<AdapterInfo | null> {
    const m = await this.switchableBase(id);
    m.bank.use(adapterId);
    const a = m.bank.list().find((x) => x.id === adapterId);
    return a ? this.adapterInfo(m, a) : null;
  }

  /** Lets go of a held adapter (its tensors are disposed); if it was active, the model is the base again. */
  removeAdapter(id: string, adapterId: string): void {
    this.require(id).bank.remove(adapterId);
  }

  private adapterInfo(m: Loaded, a: AdapterSummary): AdapterInfo {
    const total = m.model.numParams() + a.size;
    return {
      id: a.id, name: a.name, peftType: a.peftType, r: a.r, targetModules: a.targetModules, runId: a.runId, active: a.active,
      baseModel: typeof a.config.base_model_name_or_path === 'string' ? a.config.base_model_name_or_path : null,
      trainable: a.size, total,
    };
  }

  private require(id: string): Loaded {
    if (this.loaded?.id !== id) throw new TabtuneError(`model "${id}" is not loaded; load it first`, { field: 'model' });
    return this.loaded;
  }

  private tokenizerOf(m: Loaded): HFTokenizer {
    if (!m.tokenizer) throw new TabtuneError(`${m.info.name} has no tokenizer.json, so it cannot read text; give token ids`, { file: 'tokenizer.json' });
    return m.tokenizer;
  }

  /** Builds the model from its weights and holds it; `bank`: the adapters held for the same base before. */
  private async hold(info: ModelInfo, spec: ModelSpec, weights: NamedWeights, tokenizer: HFTokenizer | null, stopIds: number[], bank: AdapterBank | null = null) {
    this.release(bank);
    const model = buildModel(spec, weights, { maxTensorBytes: this.maxBufferBytes() ?? undefined });
    this.modelLoads++;
    bank?.moveTo(model);
    this.loaded = { id: info.id, model, tokenizer, stopIds, info, changed: false, bank: bank ?? new AdapterBank(model) };
  }

  /** Disposes the held model and its adapters, except a bank kept for the same base. */
  private release(keep: AdapterBank | null = null): void {
    if (this.loaded && this.loaded.bank !== keep) this.loaded.bank.dispose();
    this.loaded?.model.dispose();
    this.loaded = null;
  }

  /** The stored small files of a model, read like a folder (for the tokenizer and stop ids). */
  private async kvFiles(r: ModelRecord): Promise<ModelFiles> {
    const texts = new Map<string, string>();
    for (const p of r.textFiles) {
      const t = await loadTextFile(this.kv, r.id, p);
      if (t !== undefined) texts.set(p, t);
    }
    return {
      name: r.name,
      has: async (p) => texts.has(p),
      size: async (p) => texts.get(p)?.length ?? 0,
      text: async (p) => {
        const t = texts.get(p);
        if (t === undefined) throw new Error(`${p} is not stored for ${r.name}`);
        return t;
      },
      read: async () => {
        throw new Error('stored models are read tensor by tensor');
      },
    };
  }
}

function datasetInfo(r: DatasetRecord): DatasetInfo {
  return { id: r.id, name: r.name, bytes: r.bytes, options: r.options as DatasetInfo['options'], split: r.split, summary: r.summary, createdAt: r.createdAt };
}

/** A run id that sorts by time and names its model and method. */
export function newTuneRunId(modelName: string, method: string): string {
  return `${slug(modelName)}-${method}-${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36).padStart(2, '0')}`;
}

function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'model';
}

/**
 * Tells models apart that share a name and shapes (a checkpoint folder and its fine-tune, two
 * picks of "unnamed" files): a hash of the headers and of a few bytes sampled from each tensor
 * region, read with a handful of small range reads.
 */
async function contentFingerprint(files: ModelFiles, summary: ModelSummary): Promise<string> {
  let h = 0x811c9dc5;
  const mix = (bytes: Uint8Array) => {
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  };
  for (const f of summary.files) {
    mix(new TextEncoder().encode(JSON.stringify(f.header.tensors.map((t) => [t.name, t.dtype, t.shape, t.begin]))));
    const data = f.header.tensors.at(-1)?.end ?? 0;
    for (const at of [0, Math.floor(data / 3), Math.floor((2 * data) / 3), Math.max(0, data - 32)]) {
      const start = f.header.dataStart + at;
      mix(await files.read(f.path, start, Math.min(start + 32, f.header.dataStart + data)));
    }
  }
  return h.toString(16).padStart(8, '0');
}

/** transformers writes the repository name into config.json as _name_or_path. */
async function nameInConfig(files: ModelFiles): Promise<string | null> {
  try {
    const n = JSON.parse(await files.text('config.json'))._name_or_path;
    return typeof n === 'string' && n.trim() ? n.trim() : null;
  } catch {
    return null;
  }
}

async function hasChatTemplate(files: ModelFiles): Promise<boolean> {
  if (await files.has('chat_template.jinja')) return true;
  if (!(await files.has('tokenizer_config.json'))) return false;
  try {
    const t = JSON.parse(await files.text('tokenizer_config.json')).chat_template;
    return typeof t === 'string' || (Array.isArray(t) && t.length > 0);
  } catch {
    return false;
  }
}

function eosOf(texts: Record<string, string>): number[] {
  try {
    const e = JSON.parse(texts['config.json'] ?? '{}').eos_token_id;
    return (Array.isArray(e) ? e : [e]).filter((x: unknown) => Number.isInteger(x));
  } catch {
    return [];
  }
}

interface Extra {
  numParams: number;
  fileBytes: number;
  dtypes: string[];
  files: string[];
  hasTokenizer: boolean;
  chatTemplate: boolean;
  stored: boolean;
  storedBytes?: number;
}

function infoFrom(id: string, name: string, spec: ModelSpec, x: Extra): ModelInfo {
  const c = spec.config;
  const shape =
    spec.arch === 'gpt2'
      ? { layers: spec.config.n_layer, hidden: spec.config.n_embd, heads: spec.config.n_head, kvHeads: spec.config.n_head, contextLength: spec.config.n_positions }
      : {
          layers: spec.config.num_hidden_layers, hidden: spec.config.hidden_size, heads: spec.config.num_attention_heads,
          kvHeads: spec.config.num_key_value_heads, contextLength: spec.config.max_position_embeddings,
        };
  return {
    id, name: name.split('/').pop() || name, arch: spec.arch, vocabSize: c.vocab_size, ...shape,
    numParams: x.numParams, paramBytes: x.numParams * 4, fileBytes: x.fileBytes, dtypes: x.dtypes, files: x.files,
    hasTokenizer: x.hasTokenizer, chatTemplate: x.chatTemplate, stored: x.stored, storedBytes: x.storedBytes ?? 0,
  };
}

async function recordInfo(r: ModelRecord, spec: ModelSpec, files: ModelFiles): Promise<ModelInfo> {
  const numParams = r.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  return infoFrom(r.id, r.name, spec, {
    numParams, fileBytes: r.storedBytes, dtypes: [...new Set(r.tensors.map((t) => t.dtype))].sort(), files: r.textFiles,
    hasTokenizer: r.textFiles.includes('tokenizer.json'), chatTemplate: await hasChatTemplate(files), stored: true, storedBytes: r.storedBytes,
  });
}

/** The stored datasets a run reads: its data, and its validation and test files. */
export function tuneDatasetIds(r: TuneRunRecord): string[] {
  const req = r.request as { datasetId?: string; validationFile?: { datasetId?: string }; testFile?: { datasetId?: string } };
  return [req.datasetId, req.validationFile?.datasetId, req.testFile?.datasetId].filter((x): x is string => !!x);
}

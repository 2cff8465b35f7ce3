import type { StudioClient } from '../api/client';
import { message } from './errors';
import { BUNDLED_MODELS, parseWorkshop, sourceName, sourceUrl, WORKSHOP_FORMAT, type WorkshopFile, type WorkshopSource } from './workshop';
import type { AdapterInfo, SettingSpec, TuneEstimate, RunBroadcast, StorageInfo, DataProgress, StorageItem, DatasetFormatName, DatasetInfo, DatasetPreview, TuneRunInfo, EvalInfo, FileEntry, FinetuneResult, GenerateResult, ModelInfo, ModelProgress, SampleInfo, SamplingOptions, StepReport } from '../api/protocol';
import { TUNE_PRESETS, type TuneChoice, type TunePresetName } from './presets';
export { TUNE_PRESETS, type TuneChoice, type TunePresetName };

/** A field that must be a whole number in a range: the sentence that says so, or null. */
const whole = (v: unknown, min: number, max: number, label: string) =>
  typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max ? `${label} must be a whole number from ${min} to ${max}.` : null;

/** Where the Train form is kept between visits (localStorage). */
export const FORM_SETTING = 'tabtune.form';

/** Files the fine-tune panel reads: plain text, or rows in a known format. */
export const DATA_ACCEPT = '.txt,.md,.jsonl,.ndjson,.json,.csv,.tsv,.parquet';
/** The roles each row format reads, for mapping a file's columns to them. */
export const FORMAT_ROLES: Record<DatasetFormatName, string[]> = {
  text: ['text'],
  prompt_completion: ['prompt', 'completion'],
  alpaca: ['instruction', 'input', 'output'],
  chat: ['messages'],
  sharegpt: ['conversations'],
  preference: ['prompt', 'chosen', 'rejected'],
  classification: ['text', 'label'],
};


/**
 * The settings under "Every setting" in the Train form; the others have fields of their own
 * (steps, learning rate, batch, block, seed, r) or are the studio's to choose (checkpoint_every).
 */
export const ADVANCED = new Set([
  'optimizer', 'lr_scheduler', 'warmup_steps', 'min_lr', 'weight_decay', 'grad_clip', 'grad_accum_steps', 'beta1', 'beta2', 'eps', 'momentum',
  'lora_alpha', 'lora_dropout', 'use_rslora',
]);

/** Bring-your-own models: pick or drop a Hugging Face folder, see it, import it, generate with it. */
export class ModelsState {
  models = $state<ModelInfo[]>([]);
  /** Files picked, or a hub repository looked up, but not yet imported, with what they hold. */
  pending = $state.raw<({ kind: 'files'; files: FileEntry[] } | { kind: 'hub'; repo: string }) & { info: ModelInfo } | null>(null);
  repo = $state('');
  progress = $state<ModelProgress | null>(null);
  loadedId = $state<string | null>(null);
  busy = $state(false);
  error = $state<string | null>(null);

  prompt = $state('The sea');
  /** Use the model's chat template (instruct models). */
  chat = $state(false);
  /** The prompt the shown output continues (the box may have changed since). */
  shownPrompt = $state('');
  /** One sentence for screen readers when an import, load or generation ends. */
  announcement = $state('');
  sampling = $state<SamplingOptions>({ maxNewTokens: 40, temperature: 0.8, topK: 50, topP: 0.95, seed: 0 });
  output = $state('');
  generating = $state(false);
  /** Why the last generation failed: shown by its button. */
  generateError = $state<string | null>(null);
  /** Counts what changed the held model's adapters (a load, an apply, a merge), for views that list them. */
  modelChanges = $state(0);
  /** Compare is generating in the worker: what would change the model waits. */
  comparing = $state(false);
  result = $state<GenerateResult | null>(null);

  /** Fine-tuning the loaded model: the settings, the live losses, and the files it gives. */
  tune = $state({
    method: 'lora' as TuneChoice, steps: 30, learningRate: 2e-3, r: 8, virtualTokens: 8, text: '',
    /** LoRA on the model's default modules (attention) or on every linear layer. */
    targetModules: 'default' as 'default' | 'all-linear',
    /** '' detects the format from the columns. */
    format: '' as DatasetFormatName | '',
    /** Role -> column, for files whose columns have other names. */
    mapping: {} as Record<string, string>,
    template: '' as '' | 'none' | 'alpaca' | 'chatml' | 'model',
    completionOnly: true,
    packing: false,
    test: 0,
    batchSize: 4,
    blockSize: 128,
    validation: 0.1, evalEvery: 10, patience: 3, forgetting: false,
    /** Watched as the run goes: '' takes the first held-out prompts. */
    samplePrompt: '', sampleEvery: 10,
    /** Test prompts answered before and after, scored by exact match (0: not scored; needs a test part). */
    exactMatch: 0,
    seed: 1337,
  });
  /** The workshop file in use (its settings were applied), and where opening it is. */
  workshop = $state.raw<WorkshopFile | null>(null);
  workshopPhase = $state<string | null>(null);
  workshopError = $state<string | null>(null);
  /** Files fetched for a workshop, with the source each came from. */
  private readonly workshopSources = new WeakMap<File, WorkshopSource>();
  /** Where exact-match scoring is (the base before training, the tuned model after). */
  scoring = $state.raw<{ what: 'before' | 'after'; done: number; total: number } | null>(null);
  /** A data file chosen instead of pasted text (read in the worker as it streams). */
  tuneFile = $state.raw<File | null>(null);
  /** Datasets kept in this browser, and the one in use (null: a new file or pasted text). */
  datasets = $state<DatasetInfo[]>([]);
  datasetId = $state<string | null>(null);
  /** A separate validation file, instead of a share of the training data. */
  validationFile = $state.raw<File | null>(null);
  /** A separate test file, scored once at the end, instead of a test share. */
  testFile = $state.raw<File | null>(null);
  /** What the data will teach, read before training. */
  dataPreview = $state.raw<DatasetPreview | null>(null);
  dataProgress = $state.raw<DataProgress | null>(null);
  inspecting = $state(false);
  dataError = $state<string | null>(null);
  /** The data file could not be kept in this browser (it can still be trained on now). */
  keepWarning = $state<string | null>(null);
  private inspectSeq = 0;
  tuneLosses = $state.raw<number[]>([]);
  tunePoints = $state.raw<{ step: number; loss: number }[]>([]);
  /** The last step's report: learning rate, gradient norm, speed, device memory. */
  tuneStep = $state.raw<StepReport | null>(null);
  /** When this run's first step of this visit came (for the elapsed time and the ETA). */
  tuneStartedAt = $state<number | null>(null);
  tuneEndedAt = $state<number | null>(null);
  /** The last steps' times, for the ETA. */
  tuneStepTimes = $state.raw<number[]>([]);
  tuneEvals = $state.raw<EvalInfo[]>([]);
  /** What the model wrote for the watched prompts: before training (step 0) and as it went. */
  tuneSamples = $state.raw<SampleInfo[]>([]);
  tuning = $state(false);
  paused = $state(false);
  /** Why the last fine-tune could not start or failed: shown by its button. */
  tuneError = $state<string | null>(null);
  tuneResult = $state.raw<FinetuneResult | null>(null);
  downloads = $state.raw<{ name: string; url: string }[]>([]);
  /** The last run's scale-out recipe (a zip), as a download. */
  recipeDownload = $state.raw<{ name: string; url: string } | null>(null);
  /** A PEFT adapter applied from files. */
  adapter = $state.raw<AdapterInfo | null>(null);
  exporting = $state(false);

  loaded = $derived(this.models.find((m) => m.id === this.loadedId) ?? null);

  private readonly client: StudioClient;
  /** A hub mirror (like HF_ENDPOINT); the Hugging Face Hub when undefined. */
  readonly hubEndpoint: string | undefined;

  /** General text for the forgetting check (the bundled sample), fetched when asked for. */
  private readonly general: { url: string; name: string } | null;

  constructor(client: StudioClient, hubEndpoint?: string, general?: { url: string; name: string }) {
    this.client = client;
    this.hubEndpoint = hubEndpoint;
    this.general = general ?? null;
  }

  /** Takes a data file for fine-tuning (nothing is read here: the worker streams it) and inspects it. */
  async chooseData(file: File | undefined): Promise<void> {
    if (!file) return;
    this.tuneFile = file;
    this.datasetId = null;
    this.dataPreview = null;
    this.dataError = null;
    this.tune.format = '';
    this.tune.mapping = {};
    this.tune.template = '';
    await this.inspectData();
  }

  clearData(): void {
    this.tuneFile = null;
    this.datasetId = null;
    this.tune.format = '';
    this.tune.mapping = {};
    this.tune.template = '';
    this.dataPreview = null;
    this.dataError = null;
  }

  /** The data source of a request: the chosen file, or the pasted text. */
  private source(): { dataset: string; file?: File; datasetId?: string; text?: string } {
    // A file that was kept is named by its id: the run then reads what is stored, not a second copy.
    if (this.tuneFile && !this.datasetId) return { dataset: this.tuneFile.name, file: this.tuneFile };
    if (this.datasetId) return { dataset: this.datasets.find((d) => d.id === this.datasetId)?.name ?? 'dataset', datasetId: this.datasetId };
    return { dataset: 'pasted text', text: this.tune.text };
  }

  /** A data source is chosen: a file, a kept dataset, or pasted text. */
  hasData = $derived(!!this.tuneFile || !!this.datasetId || !!this.tune.text.trim());

  async refreshDatasets(): Promise<void> {
    try {
      this.datasets = await this.client.listDatasets();
    } catch (e) {
      this.error = this.failed(e);
    }
    await this.refreshStorage();
  }

  /** A dataset kept in this browser, with the format, mapping, template and split it was kept with. */
  async useDataset(d: DatasetInfo): Promise<void> {
    this.tuneFile = null;
    this.datasetId = d.id;
    this.tune.format = d.options.format ?? '';
    this.tune.mapping = { ...(d.options.mapping ?? {}) };
    this.tune.template = d.options.template ?? '';
    this.tune.validation = d.split.validation;
    this.tune.test = d.split.test;
    await this.inspectData();
  }

  async removeDataset(id: string): Promise<void> {
    try {
      await this.client.deleteDataset(id);
      if (this.datasetId === id) {
        this.datasetId = null;
        this.dataPreview = null;
      }
      await this.refreshDatasets();
    } catch (e) {
      this.error = this.failed(e);
    }
  }

  /**
   * After a good read: a new file is kept in this browser (so a reload keeps it, with its split);
   * a kept dataset remembers the options it was last read with.
   */
  private async keep(preview: DatasetPreview): Promise<void> {
    const t = this.tune;
    const split = { validation: t.validation, test: t.test, seed: t.seed };
    const summary = { format: preview.format, rows: preview.rows, rejected: preview.rejectedCount };
    const rows = this.rowOptions();
    if (this.tuneFile && !this.datasetId) {
      const file = this.tuneFile;
      const saved = await this.client.saveDataset({ dataset: file.name, file, ...rows, split, summary });
      if (this.tuneFile === file) this.datasetId = saved.id;
    } else if (this.datasetId) {
      await this.client.updateDataset(this.datasetId, { options: { ...rows }, split, summary });
    } else return;
    await this.refreshDatasets();
  }

  /** The format, mapping and template chosen (empty: detected). */
  private rowOptions() {
    const t = this.tune;
    const mapping = Object.fromEntries(Object.entries(t.mapping).filter(([, c]) => c));
    return { format: t.format || undefined, mapping: Object.keys(mapping).length ? mapping : undefined, template: t.template || undefined };
  }

  /** Reads the data as the run will and shows what it will teach; the latest request wins. */
  private inspectTimer: ReturnType<typeof setTimeout> | null = null;

  /**
   * Reads the data again a moment after typing stops: while typing, not when the field is left,
   * so the page does not move under a click on Fine-tune.
   */
  inspectSoon(): void {
    if (this.inspectTimer) clearTimeout(this.inspectTimer);
    this.inspectTimer = setTimeout(() => {
      this.inspectTimer = null;
      void this.inspectData();
    }, 400);
  }

  /** A read of the data was asked for during a run. */
  private readAfterRun = false;

  /** The read of the data in progress (resolved when none is). */
  private inspection: Promise<void> = Promise.resolve();

  inspectData(): Promise<void> {
    this.inspection = this.readData();
    return this.inspection;
  }

  private async readData(): Promise<void> {
    // The worker is busy training: the data is read again when the run ends.
    if (this.tuning) {
      this.readAfterRun = true;
      return;
    }
    if (!this.loadedId || !this.hasData) return;
    // A batch or block the form refuses is not read with (nor timed): the refusal says what to change.
    if (this.shapeProblem()) return;
    const seq = ++this.inspectSeq;
    this.inspecting = true;
    this.dataError = null;
    const t = this.tune;
    try {
      const preview = await this.client.inspectDataset(
        {
          modelId: this.loadedId, ...this.source(), ...this.rowOptions(),
          blockSize: t.blockSize, batchSize: t.batchSize, validation: t.validation, test: t.test, packing: t.packing,
        },
        (p) => {
          if (seq === this.inspectSeq) this.dataProgress = p;
        },
      );
      if (seq !== this.inspectSeq) return;
      this.dataPreview = preview;
      this.dataError = preview.problem;
      if (preview.problem) return;
      this.keepWarning = null;
      // The data reads well; not being able to keep it is a warning, not a reason to refuse training.
      await this.keep(preview).catch((e) => (this.keepWarning = `${preview.file} could not be kept in this browser: ${this.failed(e)}`));
      this.announcement = `${preview.file}: ${preview.format}, ${preview.rows.toLocaleString('en')} rows, ${preview.rejectedCount} rejected.`;
    } catch (e) {
      if (seq !== this.inspectSeq) return;
      this.dataPreview = null;
      this.dataError = this.failed(e);
    } finally {
      if (seq === this.inspectSeq) {
        this.inspecting = false;
        this.dataProgress = null;
      }
    }
  }

  /** The validation loss rose at the last checks while the training loss fell. */
  overfitting = $derived(this.tuneEvals.at(-1)?.overfitting ?? false);

  async refresh(): Promise<void> {
    try {
      if (!this.settingSpecs.length) this.settingSpecs = await this.client.settingSpecs();
      this.models = await this.client.listModels();
    } catch (e) {
      this.error = this.failed(e);
    }
    await this.refreshStorage();
  }

  /** Reads config.json and the safetensors headers of the chosen files: nothing big yet. */
  async choose(files: FileEntry[]): Promise<void> {
    if (this.busy) {
      this.error = 'An import is running; wait for it to finish before choosing another model.';
      return;
    }
    this.error = null;
    this.pending = null;
    if (files.length === 0) {
      this.error = 'No files were chosen. Choose the files of one model folder, or the folder itself.';
      return;
    }
    try {
      this.pending = { kind: 'files', files, info: await this.client.inspectModelFiles(files) };
    } catch (e) {
      this.error = this.failed(e);
    }
  }

  /** Reads a hub repository's config.json and safetensors headers (a few kilobytes). */
  async lookUp(): Promise<void> {
    this.error = null;
    this.pending = null;
    const repo = this.repo.trim();
    if (!repo) {
      this.error = 'Type a repository name, like HuggingFaceTB/SmolLM2-135M.';
      return;
    }
    await this.run(async () => {
      this.progress = { phase: 'reading', done: 0, total: 1, detail: `${repo}: config and headers` };
      this.pending = { kind: 'hub', repo, info: await this.client.inspectHubModel(repo, this.hubEndpoint) };
    });
  }

  async importPending(): Promise<void> {
    if (!this.pending || this.busy) return;
    const p = this.pending;
    await this.run(async () => {
      const onProgress = (x: ModelProgress) => (this.progress = x);
      try {
        const info = p.kind === 'files' ? await this.client.importModel(p.files, onProgress) : await this.client.importHubModel(p.repo, this.hubEndpoint, onProgress);
        this.pending = null;
        this.adopt(info);
        await this.refresh();
        this.announcement = `${info.name} is imported, kept in this browser, and loaded.`;
      } catch (e) {
        // What was read is kept; the same action continues from there.
        throw new Error(`${this.failed(e)} What was already ${p.kind === 'hub' ? 'downloaded' : 'read'} is kept: press the button again to continue.`);
      }
    });
  }

  async load(id: string): Promise<void> {
    await this.run(async () => {
      const info = await this.client.loadModel(id, (p) => (this.progress = p));
      this.lastModelId = null;
      this.modelChanges++;
      this.adopt(info);
      this.announcement = `${info.name} is loaded.`;
    });
  }

  async remove(id: string): Promise<void> {
    await this.run(async () => {
      await this.client.deleteModel(id);
      if (this.loadedId === id) this.loadedId = null;
      await this.refresh();
    });
  }

  async generate(): Promise<void> {
    if (!this.loadedId || this.generating || this.comparing) return;
    this.generating = true;
    this.generateError = null;
    this.output = '';
    this.result = null;
    this.shownPrompt = this.prompt;
    try {
      const chat = this.chat && (this.loaded?.chatTemplate ?? false);
      this.result = await this.client.generate({ modelId: this.loadedId, prompt: this.prompt, options: { ...this.sampling }, chat }, (p) => {
        this.output = p.text;
      });
      this.output = this.result.text;
      this.announcement = `Generated ${this.result.ids.length} tokens.`;
    } catch (e) {
      this.generateError = this.failed(e);
    } finally {
      this.generating = false;
    }
  }

  /** A Fine-tune click is being decided (the data is still being read): a second click waits its turn. */
  private starting = false;

  /** Why Fine-tune would do nothing now, although the settings are fine (null: it would start). */
  get tuneBusy(): string | null {
    if (this.tuning || this.starting) return 'A run is starting or running: watch it on Live run.';
    if (this.generating) return 'A generation is running: stop it, or wait for it, first.';
    if (this.busy) return 'A model is being imported or loaded: wait for it first.';
    return null;
  }

  async finetune(): Promise<void> {
    const busy = this.tuneBusy;
    if (!this.loadedId || busy) {
      if (this.loadedId && !this.tuning) this.tuneError = busy;
      return;
    }
    this.starting = true;
    try {
      await this.startTune();
    } finally {
      this.starting = false;
    }
  }

  private async startTune(): Promise<void> {
    const t = this.tune;
    // A read of the data asked for by the last keystrokes goes first, then Fine-tune decides.
    if (this.inspectTimer) {
      clearTimeout(this.inspectTimer);
      this.inspectTimer = null;
      void this.inspectData();
    }
    if (this.inspecting) await this.inspection;
    if (this.tuneBlocker) {
      this.tuneError = this.tuneBlocker;
      return;
    }
    const modelId = this.loadedId!;
    await this.runTune(async (onStep, onEval, onSample) => {
      let forgetting: { name: string; text: string } | undefined;
      if (t.forgetting && this.general) {
        const res = await fetch(this.general.url);
        if (!res.ok) throw new Error(`could not load ${this.general.name} for the forgetting check: HTTP ${res.status}`);
        forgetting = { name: this.general.name, text: await res.text() };
      }
      const evalEvery = t.validation > 0 || this.validationFile ? t.evalEvery : 0;
      return this.client.finetuneModel(
        {
          modelId,
          ...this.source(),
          ...this.rowOptions(),
          completionOnly: t.completionOnly,
          packing: t.packing,
          test: t.test,
          method: t.method === 'qlora4' ? 'qlora' : t.method,
          bits: t.method === 'qlora4' ? 4 : 8,
          lora: { r: t.r, lora_alpha: 2 * t.r, ...(t.targetModules === 'all-linear' ? { target_modules: 'all-linear' } : {}), ...this.advancedOf('lora') },
          // Prompt tuning's virtual tokens come before the block: leave them room in the context.
          // A checkpoint every 10 steps: a lost page costs at most 10 steps (LoRA's are small to write);
          // full fine-tuning writes every weight and its two moments, so every 50.
          train: { ...this.advancedOf('train'), seed: t.seed, steps: t.steps, checkpoint_every: t.method === 'full' ? 50 : 10, learning_rate: t.learningRate, batch_size: t.batchSize, block_size: Math.min(t.blockSize, (this.loaded?.contextLength ?? t.blockSize) - (t.method === 'prompt' ? t.virtualTokens : 0)) },
          numVirtualTokens: t.virtualTokens,
          validation: t.validation,
          validationFile: this.validationFile ? { dataset: this.validationFile.name, file: this.validationFile } : undefined,
          testFile: this.testFile ? { dataset: this.testFile.name, file: this.testFile } : undefined,
          evalEvery,
          patience: t.patience,
          forgetting,
          // Every 0 (or an emptied field) samples nothing.
          samples: { every: Number.isFinite(t.sampleEvery) && t.sampleEvery > 0 ? Math.max(1, Math.round(t.sampleEvery)) : 0, prompts: t.samplePrompt.trim() ? [t.samplePrompt] : undefined },
          exactMatch: (t.test > 0 || this.testFile) && Number.isFinite(t.exactMatch) && t.exactMatch > 0 ? Math.round(t.exactMatch) : undefined,
        },
        onStep,
        onEval,
        onSample,
        (p) => (this.scoring = p),
      );
    });
  }

  /**
   * A kept run's settings back in the Train form (its model loaded, its kept data chosen), to run
   * again with changes. False when it cannot be (busy, or the model is gone).
   */
  async duplicateRun(run: TuneRunInfo): Promise<boolean> {
    if (this.tuning || this.busy || this.generating || this.comparing) return false;
    this.runsError = null;
    if (!(await this.runModel(run))) return false;
    const s = run.settings;
    const tr = s.train;
    const lo = s.lora;
    const t = this.tune;
    const num = (v: unknown, fallback: number) => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);
    Object.assign(t, {
      method: s.method === 'qlora' && s.bits === 4 ? 'qlora4' : s.method,
      steps: num(tr.steps, t.steps), learningRate: num(tr.learning_rate, t.learningRate), batchSize: num(tr.batch_size, t.batchSize),
      blockSize: num(tr.block_size, t.blockSize), seed: num(tr.seed, t.seed), r: num(lo.r, t.r),
      targetModules: lo.target_modules === 'all-linear' ? 'all-linear' : 'default', virtualTokens: s.numVirtualTokens ?? t.virtualTokens,
      evalEvery: s.evalEvery || t.evalEvery, patience: s.patience ?? t.patience, exactMatch: s.exactMatch ?? 0,
      sampleEvery: s.samples?.every ?? t.sampleEvery, samplePrompt: s.samples?.prompts?.[0] ?? '',
    });
    // The form sends lora_alpha = 2 r unless told otherwise: only a different one is a setting of its own.
    const alpha = lo.lora_alpha !== undefined && lo.lora_alpha !== 2 * num(lo.r, t.r);
    this.advanced = Object.fromEntries(
      [...Object.entries(tr), ...Object.entries(lo)].filter(([k, v]) => ADVANCED.has(k) && (k !== 'lora_alpha' || alpha) && (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean')),
    ) as Record<string, number | string | boolean>;
    t.sampleEvery = s.samples ? s.samples.every : 0;
    t.forgetting = s.forgetting;
    const data = this.datasets.find((d) => d.id === s.datasetId);
    if (data) {
      // The data as the run read it: its format, mapping, template and masking, not the dataset's defaults.
      this.tuneFile = null;
      this.datasetId = data.id;
      t.format = s.format ?? data.options.format ?? '';
      t.mapping = { ...(s.mapping ?? data.options.mapping ?? {}) };
      t.template = s.template ?? data.options.template ?? '';
      t.completionOnly = s.completionOnly ?? true;
      t.packing = s.packing ?? false;
      t.validation = s.validation ?? data.split.validation;
      t.test = s.test ?? data.split.test;
      await this.inspectData();
    }
    this.announcement =
      `The settings of the ${run.method} run on ${run.dataset} are in the Train form` +
      (data ? '' : ` (its data is no longer kept here: choose data on the Data screen)`) +
      ': change what you like and press Fine-tune.';
    return true;
  }

  /** Loads a kept run's model if another is loaded; false (with the reason on Runs) when it cannot be. */
  private async runModel(run: TuneRunInfo): Promise<boolean> {
    if (this.loadedId === run.modelId) return true;
    await this.load(run.modelId);
    if (this.loadedId === run.modelId) return true;
    this.runsError = `${run.modelName} could not be loaded: ${this.error ?? 'it is no longer kept in this browser'}.`;
    return false;
  }

  /** A kept run's scale-out recipe, made again from its kept data and settings. */
  async downloadRunRecipe(run: TuneRunInfo): Promise<void> {
    if (this.tuning || this.busy || this.generating || this.comparing || this.exporting) return;
    this.runsError = null;
    if (!(await this.runModel(run))) return;
    this.exporting = true;
    try {
      const { name, bytes } = await this.client.tuneRunRecipe(run.id);
      this.save(name, bytes as BlobPart, 'application/zip');
    } catch (e) {
      this.runsError = this.failed(e);
    } finally {
      this.exporting = false;
    }
  }

  /** A kept run's adapter folded into its base, downloaded as a Hugging Face folder (zip). */
  async downloadRunMerged(run: TuneRunInfo): Promise<void> {
    if (this.tuning || this.busy || this.generating || this.comparing || this.exporting) return;
    this.runsError = null;
    if (!(await this.runModel(run))) return;
    this.exporting = true;
    try {
      await this.client.addAdapter(run.modelId, { runId: run.id });
      const { name, bytes } = await this.client.exportMerged(run.modelId, run.id);
      this.save(name, bytes as BlobPart, 'application/zip');
      this.modelChanges++;
      this.announcement = `${name} is ready: ${run.modelName} with the ${run.method} run on ${run.dataset} folded in.`;
    } catch (e) {
      this.runsError = this.failed(e);
    } finally {
      this.exporting = false;
    }
  }

  /** Continues a kept run from its latest checkpoint: its curve so far comes back first. */
  async resumeRun(run: TuneRunInfo): Promise<void> {
    if (this.tuning || this.generating || this.busy) return;
    this.tune.steps = run.totalSteps;
    // The run's model is loaded by the resume; the panel shows it from now (and goes back if it fails).
    const before = this.loadedId;
    this.loadedId = run.modelId;
    const ok = await this.runTune((onStep, onEval, onSample) => this.client.resumeTuneRun(run.id, onStep, onEval, onSample, (p) => (this.scoring = p)), run);
    if (!ok) this.loadedId = before;
  }

  /**
   * One run from start to its files: live steps and checks, the results and downloads. The last
   * run's results stay until this one's first step, so a refused start loses nothing.
   */
  private async runTune(
    start: (onStep: (r: StepReport) => void, onEval: (e: EvalInfo) => void, onSample: (s: SampleInfo) => void) => Promise<FinetuneResult>,
    prior?: TuneRunInfo,
  ): Promise<boolean> {
    this.tuning = true;
    this.tuneError = null;
    const t = this.tune;
    let fresh = false;
    const clearLast = () => {
      fresh = true;
      // A resumed run's curve starts with what it trained before.
      this.tuneLosses = prior ? prior.history.map((h) => h.loss) : [];
      this.tunePoints = prior ? prior.history.map((h) => ({ step: h.step, loss: h.loss })) : [];
      this.tuneEvals = prior ? prior.evals.slice() : [];
      this.tuneSamples = prior ? prior.samples.slice() : [];
      this.tuneStep = null;
      this.tuneStartedAt = null;
      this.tuneEndedAt = null;
      this.liveNotice = null;
      this.liveError = null;
      this.tuneStepTimes = [];
      this.tuneResult = null;
      for (const d of this.downloads) URL.revokeObjectURL(d.url);
      this.downloads = [];
      if (this.recipeDownload) URL.revokeObjectURL(this.recipeDownload.url);
      this.recipeDownload = null;
      this.adapter = null;
    };
    try {
      const result = await start(
        (r) => {
          if (!fresh) clearLast();
          this.tuneStartedAt ??= Date.now() - r.stepMs;
          this.tuneStepTimes = [...this.tuneStepTimes.slice(-19), r.stepMs];
          this.tuneLosses = [...this.tuneLosses, r.loss];
          this.tunePoints = [...this.tunePoints, { step: r.step, loss: r.loss }];
          this.tuneStep = r;
          this.scoring = null;
        },
        (e) => {
          this.tuneEvals = [...this.tuneEvals, e];
          if (e.overfitting) this.announcement = `Step ${e.step}: validation loss is rising while training loss falls: the model is starting to overfit.`;
        },
        (x) => {
          // A new run's first word is its samples before training (step 0): the last run's results go then.
          if (!fresh) clearLast();
          this.tuneSamples = [...this.tuneSamples, x];
        },
      );
      if (!fresh) clearLast();
      const r = (this.tuneResult = result);
      const named = r.files.map((f) => ({ name: f.name, url: URL.createObjectURL(new Blob([f.bytes as BlobPart])) }));
      const method = prior ? prior.method : t.method === 'qlora4' ? 'qlora' : t.method;
      const zip = r.zip ? [{ name: `${slugOf(this.loaded?.name ?? 'model')}-${method}-adapter.zip`, url: URL.createObjectURL(new Blob([r.zip as BlobPart], { type: 'application/zip' })) }] : [];
      this.downloads = [...zip, ...named];
      this.recipeDownload = { name: `${slugOf(this.loaded?.name ?? 'model')}-scale-out-recipe.zip`, url: URL.createObjectURL(new Blob([r.recipe as BlobPart], { type: 'application/zip' })) };
      this.announcement =
        (r.stoppedEarly ? `Early stopping after ${r.steps} steps` : r.cancelled ? `Stopped after ${r.steps} steps` : `Fine-tuning finished after ${r.steps} steps`) +
        (r.restoredBest && r.best ? `; the weights of step ${r.best.step} (the best validation loss) are kept.` : '.');
      return true;
    } catch (e) {
      this.tuneError = this.failed(e);
      return false;
    } finally {
      if (this.tuneStartedAt !== null) this.tuneEndedAt = Date.now();
      this.tuning = false;
      this.paused = false;
      this.scoring = null;
      await this.refreshRuns();
      if (this.readAfterRun) {
        this.readAfterRun = false;
        void this.inspectData();
      }
    }
  }

  /** Fine-tuning runs kept in this browser, newest first. */
  tuneRuns = $state.raw<(TuneRunInfo & { live?: { step: number; loss: number } })[]>([]);

  async refreshRuns(): Promise<void> {
    try {
      this.tuneRuns = await this.client.listTuneRuns();
    } catch (e) {
      this.error = this.failed(e);
    }
    await this.refreshStorage();
  }

  /**
   * A step of a run another tab trains, heard on the runs channel: its row moves live. The run
   * stays read-only here (its lock is held there).
   */
  heard(m: RunBroadcast, ownTab: string | null): void {
    if (m.tab === ownTab) return;
    if (m.type === 'end') {
      void this.refreshRuns();
      return;
    }
    const run = this.tuneRuns.find((r) => r.id === m.runId);
    if (!run) {
      void this.refreshRuns();
      return;
    }
    this.tuneRuns = this.tuneRuns.map((r) =>
      r.id === m.runId ? { ...r, status: 'elsewhere', resumable: false, live: { step: m.step, loss: m.loss }, totalSteps: m.totalSteps } : r,
    );
  }

  /** This site's storage: used, allowed, persistent. */
  storage = $state.raw<StorageInfo | null>(null);
  /** What takes the room, offered for deletion (shown on demand, and when storage is full). */
  storageItems = $state.raw<StorageItem[] | null>(null);
  /** Storage filled up at the last write: the offer to free space says so. */
  storageFull = $state(false);
  storageError = $state<string | null>(null);

  /** An error as shown; a full storage also opens the offer to delete old checkpoints, models or datasets. */
  private failed(e: unknown): string {
    if ((e as Error | null)?.name === 'StorageFullError') {
      this.storageFull = true;
      void this.showStorageItems();
    }
    return message(e);
  }

  async showStorageItems(): Promise<void> {
    try {
      this.storageItems = await this.client.storageItems();
      this.storageError = null;
    } catch (e) {
      this.storageError = message(e);
    }
  }

  /** Deletes one offered item, then shows what is left and the storage used. */
  async freeSpace(item: StorageItem): Promise<void> {
    if (item.blockedBy) return;
    try {
      if (item.kind === 'checkpoints') await this.client.deleteTuneCheckpoints(item.id);
      else if (item.kind === 'model') {
        await this.client.deleteModel(item.id);
        if (this.loadedId === item.id) this.loadedId = null;
        await this.refresh();
      } else {
        await this.client.deleteDataset(item.id);
        if (this.datasetId === item.id) {
          this.datasetId = null;
          this.dataPreview = null;
        }
        await this.refreshDatasets();
      }
      this.storageFull = false;
      this.announcement = `Deleted ${item.name} (${formatBytes(item.bytes)}).`;
      await this.refreshRuns();
      await this.showStorageItems();
    } catch (e) {
      this.storageError = message(e);
    }
  }

  async refreshStorage(): Promise<void> {
    this.storage = await this.client.storageInfo().catch(() => null);
  }

  /** Asks the browser to keep this site's data under storage pressure (only the page can ask). */
  async persist(): Promise<void> {
    const granted = await navigator.storage?.persist?.().catch(() => false);
    this.announcement = granted ? 'This browser will keep tabtune\'s data.' : 'The browser did not grant persistent storage; it may clear tabtune\'s data when space runs low.';
    await this.refreshStorage();
  }

  async deleteRun(id: string): Promise<void> {
    try {
      await this.client.deleteTuneRun(id);
      await this.refreshRuns();
    } catch (e) {
      this.runsError = this.failed(e);
    }
  }

  /** A file handed to the browser to save. */
  private save(name: string, data: BlobPart, type = 'application/octet-stream'): void {
    const url = URL.createObjectURL(new Blob([data], { type }));
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  async downloadRunMetrics(run: TuneRunInfo): Promise<void> {
    try {
      this.save(`${run.id}-metrics.csv`, await this.client.tuneRunMetrics(run.id), 'text/csv');
    } catch (e) {
      this.runsError = this.failed(e);
    }
  }

  async exportRun(run: TuneRunInfo): Promise<void> {
    try {
      const { name, bytes } = await this.client.exportTuneRun(run.id);
      this.save(name, bytes as BlobPart, 'application/zip');
    } catch (e) {
      this.runsError = this.failed(e);
    }
  }

  /** A run file (from Export run) kept in this browser. */
  async importRun(file: File | undefined): Promise<void> {
    if (!file) return;
    this.runsError = null;
    try {
      const info = await this.client.importTuneRun(file, file.name);
      this.announcement = `The run ${info.id} is kept in this browser.`;
      await this.refreshRuns();
    } catch (e) {
      this.runsError = this.failed(e);
    }
  }

  /** Why importing a run file failed, shown by the runs list. */
  runsError = $state<string | null>(null);

  /** The adapter files a kept run finished with, downloaded one by one. */
  async downloadRunFiles(run: TuneRunInfo): Promise<void> {
    try {
      for (const f of await this.client.tuneRunFiles(run.id)) this.save(f.name, f.bytes as BlobPart);
    } catch (e) {
      this.runsError = this.failed(e);
    }
  }

  /** What went wrong with an action of the Live run screen (pause, checkpoint, the merged download), shown there. */
  liveError = $state<string | null>(null);
  /** What an action of the Live run screen did, shown there (as well as told to screen readers). */
  liveNotice = $state<string | null>(null);

  /** Save checkpoint now: the run writes one after its current step (it can resume from there). */
  async saveCheckpoint(): Promise<void> {
    if (!this.tuning) return;
    try {
      await this.client.checkpointNow();
      this.announcement = this.liveNotice = `A checkpoint is written after step ${this.tuneStep?.step ?? 0}: the run can resume from there after a reload.`;
    } catch (e) {
      this.liveError = this.failed(e);
    }
  }

  /** The tab is being hidden or closed: the run writes a checkpoint after its current step. */
  checkpointSoon(): void {
    if (this.tuning) void this.client.checkpointNow().catch(() => undefined);
  }

  /** Every training and LoRA setting, with its default, range and help, as the engine validates them. */
  settingSpecs = $state.raw<SettingSpec[]>([]);
  /** Advanced settings the person set, by config name ('' or absent: the default). */
  advanced = $state<Record<string, number | string | boolean | null>>({});
  /** Memory the run of these settings needs here, and whether it fits (null: not known yet). */
  estimate = $state.raw<(TuneEstimate & { asked: string }) | null>(null);
  private estimateTimer: ReturnType<typeof setTimeout> | null = null;

  /** The settings that decide memory changed: ask the worker again, once they settle. */
  estimateSoon(): void {
    if (this.estimateTimer) clearTimeout(this.estimateTimer);
    this.estimateTimer = setTimeout(() => {
      this.estimateTimer = null;
      void this.estimateNow();
    }, 250);
  }

  /** The settings an estimate is for: one that was asked for other settings is stale. */
  estimateKey = $derived(`${this.tune.method} r${this.tune.r} ${this.tune.targetModules} ${this.tune.batchSize}x${this.tune.blockSize}${this.tune.method === 'prompt' ? ` +${this.tune.virtualTokens}` : ''} ${this.loadedId}`);

  private async estimateNow(): Promise<void> {
    const t = this.tune;
    if (!this.loadedId || this.tuning) return;
    // Settings the form refuses are not estimated: the refusal says what to change.
    if (this.shapeProblem()) {
      this.estimate = null;
      return;
    }
    try {
      const req = {
        modelId: this.loadedId, method: t.method === 'qlora4' ? 'qlora' : t.method, r: t.r, bits: t.method === 'qlora4' ? 4 : 8,
        targetModules: t.targetModules === 'all-linear' ? 'all-linear' : undefined, virtualTokens: t.virtualTokens, batch: t.batchSize,
        // As the run gets it: prompt tuning's virtual tokens come out of the context.
        block: Math.min(t.blockSize, (this.loaded?.contextLength ?? t.blockSize) - (t.method === 'prompt' ? t.virtualTokens : 0)),
      } as const;
      // What it was asked for, so a view (and a test) can tell a settled estimate from a stale one.
      const asked = this.estimateKey;
      this.estimate = { ...(await this.client.estimateTune(req)), asked };
    } catch {
      // A model changing under the question (a load, a run starting): the next change asks again.
      this.estimate = null;
    }
  }

  /** The last visit's form has been put back (or there was none): changes are kept from here on. */
  formReady = $state(false);
  /** The model this browser had loaded before the page was reloaded (it is offered, not loaded: it may be big). */
  lastModelId = $state<string | null>(null);

  /** The form as it stands, for the next visit: the model in use, the data chosen, every setting. */
  formState(): string {
    const { text, ...tune } = this.tune;
    // Pasted text is kept too, unless it is large (files are kept as datasets instead).
    return JSON.stringify({ v: 1, modelId: this.loadedId ?? this.lastModelId, datasetId: this.datasetId, tune: text.length <= 100_000 ? { ...tune, text } : tune, advanced: this.advanced });
  }

  /**
   * The form of the last visit, back after a reload: the settings, the advanced ones, the kept dataset
   * chosen; the model is offered with one click (loading it could be what ended the last visit).
   */
  restoreForm(saved: string | null): void {
    // From now on the form is kept as it changes (see App.svelte).
    this.formReady = true;
    if (!saved) return;
    let f: { v?: number; modelId?: string | null; datasetId?: string | null; tune?: Partial<ModelsState['tune']>; advanced?: Record<string, number | string | boolean | null> };
    try {
      f = JSON.parse(saved);
    } catch {
      return;
    }
    if (f.v !== 1) return;
    // Only fields the form knows, of the type it has, and for named choices one it offers: a value
    // from an older page (or edited by hand) is dropped, not trusted.
    const CHOICES: Partial<Record<keyof ModelsState['tune'], readonly string[]>> = {
      method: ['lora', 'qlora', 'qlora4', 'bitfit', 'prompt', 'full'],
      targetModules: ['default', 'all-linear'],
      format: ['', ...Object.keys(FORMAT_ROLES)],
      template: ['', 'none', 'alpaca', 'chatml', 'model'],
    };
    for (const [k, v] of Object.entries(f.tune ?? {})) {
      const key = k as keyof ModelsState['tune'];
      if (!(key in this.tune) || typeof v !== typeof this.tune[key]) continue;
      if (typeof v === 'number' && !Number.isFinite(v)) continue;
      if (CHOICES[key] && !CHOICES[key]!.includes(v as string)) continue;
      if (key === 'mapping' && (v === null || Array.isArray(v) || !Object.values(v as object).every((x) => typeof x === 'string'))) continue;
      (this.tune as Record<string, unknown>)[key] = v;
    }
    if (f.advanced && typeof f.advanced === 'object') {
      const ok = (name: string, v: unknown) => {
        const spec = this.settingSpecs.find((x) => x.name === name);
        if (!spec || !ADVANCED.has(name) || v === null) return false;
        if (spec.choices) return spec.choices.includes(v as string);
        return typeof v === typeof spec.default && (typeof v !== 'number' || Number.isFinite(v));
      };
      this.advanced = Object.fromEntries(Object.entries(f.advanced).filter(([k, v]) => ok(k, v)));
    }
    const data = this.datasets.find((d) => d.id === f.datasetId);
    if (data && !this.tuneFile) {
      this.datasetId = data.id;
      this.tune.format = data.options.format ?? '';
      this.tune.mapping = { ...(data.options.mapping ?? {}) };
      this.tune.template = data.options.template ?? '';
    }
    if (f.modelId && !this.loadedId && this.models.some((m) => m.id === f.modelId)) this.lastModelId = f.modelId;
  }

  /** The advanced settings of one section that the person set, by their config names. */
  private advancedOf(section: 'train' | 'lora'): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const spec of this.settingSpecs) {
      if (spec.section !== section || !ADVANCED.has(spec.name)) continue;
      const v = this.advanced[spec.name];
      if (v !== undefined && v !== null && v !== '') out[spec.name] = v;
    }
    return out;
  }

  /** The run's shape out of range (r, batch, block against the model's context), in the words of the fields. */
  private shapeProblem(): string | null {
    const t = this.tune;
    return whole(t.r, 1, 256, 'r') ?? whole(t.batchSize, 1, 512, 'Batch') ?? whole(t.blockSize, 8, this.loaded?.contextLength ?? 1e9, 'Block');
  }

  /** Why Fine-tune cannot start now, in the words of the fields (null: it can). */
  tuneBlocker = $derived.by((): string | null => {
    const t = this.tune;
    const ctx = this.loaded?.contextLength ?? 1e9;
    if (!this.loaded) return 'Load a model first.';
    if (this.comparing) return 'Compare is generating: wait for it, or stop it there.';
    if (!this.hasData) return 'Choose a data file or paste some text first.';
    if (this.inspecting) return 'The data is still being read.';
    if (this.dataError) return 'Fix the data first (see the message in the data panel).';
    const share = (v: unknown, label: string) => (typeof v !== 'number' || !(v >= 0 && v <= 0.5) ? `${label} must be from 0 to 0.5.` : null);
    return (
      whole(t.steps, 1, 100000, 'Steps') ??
      (typeof t.learningRate !== 'number' || !(t.learningRate > 0 && t.learningRate <= 1) ? 'Learning rate must be above 0 and at most 1.' : null) ??
      this.shapeProblem() ??
      (t.method === 'prompt' ? whole(t.virtualTokens, 1, Math.max(1, ctx - 8), 'Virtual tokens') : null) ??
      (this.validationFile ? null : share(t.validation, 'Validation share')) ??
      (this.testFile ? null : share(t.test, 'Test share')) ??
      whole(t.evalEvery, 1, 100000, 'Check every') ??
      whole(t.patience, 0, 1000, 'Patience') ??
      this.advancedProblem() ??
      (this.estimate?.asked === this.estimateKey ? this.estimate.refusal : null) ??
      null
    );
  });

  /** An advanced setting outside its range, named as the engine names it. */
  private advancedProblem(): string | null {
    for (const spec of this.settingSpecs) {
      const v = this.advanced[spec.name];
      if (!ADVANCED.has(spec.name) || v === undefined || v === null || v === '' || spec.min === undefined || spec.max === undefined) continue;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < spec.min || v > spec.max || (spec.integer && !Number.isInteger(v))) {
        return `${spec.name} must be ${spec.integer ? 'a whole number' : 'a number'} from ${spec.min} to ${spec.max}.`;
      }
    }
    return null;
  }

  /** The pasted text changed: what was shown for the old text no longer holds. */
  textEdited(): void {
    if (!this.tuneFile && !this.datasetId) {
      this.dataPreview = null;
      this.dataError = null;
    }
  }

  /** The model is in use: the form's defaults follow its context. */
  private adopt(info: ModelInfo): void {
    this.loadedId = info.id;
    // The block the person chose stays, unless this model's context is shorter.
    this.tune.blockSize = Math.min(this.tune.blockSize, info.contextLength);
    if (this.tuneFile || this.datasetId || this.tune.text.trim()) void this.inspectData();
  }

  async stop(): Promise<void> {
    this.paused = false;
    await this.client.stopGenerating().catch(() => undefined);
  }

  /** The held model with its fine-tuning folded in, downloaded as a zipped Hugging Face folder. */
  async downloadMerged(): Promise<void> {
    if (!this.loadedId || this.tuning || this.exporting) return;
    this.exporting = true;
    this.liveError = null;
    try {
      const { name, bytes } = await this.client.exportMerged(this.loadedId, this.tuneResult?.runId ?? null);
      this.save(name, bytes as BlobPart, 'application/zip');
      // The merged adapter is folded into the model now, and no longer held apart.
      this.modelChanges++;
      this.adapter = null;
      this.announcement = `${name} is ready: a Hugging Face folder that transformers loads.`;
    } catch (e) {
      this.liveError = this.failed(e);
    } finally {
      this.exporting = false;
    }
  }

  /** Applies a PEFT adapter (its two files, or a zip of them) to the loaded model's base. */
  async applyAdapter(files: FileEntry[]): Promise<void> {
    if (!this.loadedId || this.tuning || this.generating || this.comparing) return;
    if (!files.length) return;
    await this.run(async () => {
      const info = await this.client.applyAdapter(this.loadedId!, files);
      this.modelChanges++;
      this.adapter = info;
      this.announcement = `Adapter ${info.name} (${info.peftType}) is applied; generation now uses it.`;
    });
  }

  /** Pause holds the run after its current step; resume goes on from there, exactly. */
  async togglePause(): Promise<void> {
    if (!this.tuning) return;
    try {
      if (this.paused) {
        await this.client.resumeFinetune();
        this.paused = false;
        this.announcement = 'Fine-tuning resumed.';
      } else {
        await this.client.pauseFinetune();
        this.paused = true;
        this.announcement = `Fine-tuning paused after step ${this.tuneLosses.length}.`;
      }
    } catch (e) {
      this.liveError = this.failed(e);
    }
  }

  /** Sets the Fine-tune form from a preset (the data and model stay). */
  applyPreset(name: TunePresetName): void {
    const p = TUNE_PRESETS[name];
    Object.assign(this.tune, { method: p.method, targetModules: p.targetModules, steps: p.steps, learningRate: p.learningRate, r: p.r, batchSize: p.batchSize, validation: p.validation, evalEvery: p.evalEvery, patience: p.patience });
    if ('blockSize' in p) this.tune.blockSize = Math.min(p.blockSize, this.loaded?.contextLength ?? p.blockSize);
    this.announcement = `${p.label}: ${p.help}.`;
  }

  /**
   * Opens a workshop: the model (the bundled one is imported from the studio's own files on first
   * use), the data and test files, the settings and seed; `start` then fine-tunes at once.
   */
  async openWorkshop(w: WorkshopFile, start: boolean, base: string): Promise<void> {
    if (this.tuning || this.busy || this.workshopPhase === 'model' || this.workshopPhase === 'data') {
      this.workshopError = 'A run, an import or a workshop is being set up; wait for it, or stop it, first.';
      return;
    }
    this.workshopError = null;
    this.workshop = w;
    try {
      this.workshopPhase = 'model';
      await this.workshopModel(w.model, base);
      const want = 'bundled' in w.model ? w.model.bundled : w.model.hub;
      if (this.models.find((m) => m.id === this.loadedId)?.name !== want) throw new Error(this.error ?? `${want} could not be loaded`);
      this.workshopPhase = 'data';
      const fetchFile = async (src: WorkshopSource) => {
        const url = sourceUrl(src, base);
        const res = await fetch(url);
        if (!res.ok) throw new Error(`${sourceName(src)} could not be fetched from ${url}: HTTP ${res.status}`);
        const file = new File([await res.blob()], sourceName(src));
        // Remembered, so that "Save these settings" names the same source again.
        this.workshopSources.set(file, src);
        return file;
      };
      const data = await fetchFile(w.data);
      this.testFile = w.test ? await fetchFile(w.test) : null;
      this.validationFile = null;
      const c = w.config;
      Object.assign(this.tune, {
        method: c.method, steps: c.steps, learningRate: c.learning_rate, r: c.r, targetModules: c.target_modules, batchSize: c.batch_size, blockSize: c.block_size, validation: c.validation,
        evalEvery: c.eval_every, patience: c.patience, test: w.test ? 0 : c.test, exactMatch: c.exact_match, sampleEvery: c.sample_every, samplePrompt: c.sample_prompt, seed: w.seed,
      });
      await this.chooseData(data);
      if (this.dataError) throw new Error(this.dataError);
      this.workshopPhase = start ? 'training' : 'ready';
      this.announcement = `Workshop "${w.title}" is set up${start ? ': fine-tuning starts.' : '. Press Fine-tune to start.'}`;
      if (start) {
        const before = this.tuneResult;
        await this.finetune();
        if (this.tuneError) this.workshopError = this.tuneError;
        else if (this.tuneResult === before) this.workshopError = 'Fine-tuning did not start: the model is busy (a generation?). Press Fine-tune when it is free.';
      }
      this.workshopPhase = this.workshopError ? null : 'ready';
    } catch (e) {
      this.workshopPhase = null;
      this.workshopError = this.failed(e);
    }
  }

  /** The workshop's model, imported if it is not kept here yet, and loaded. */
  private async workshopModel(model: WorkshopFile['model'], base: string): Promise<void> {
    const name = 'bundled' in model ? model.bundled : model.hub;
    const kept = this.models.find((m) => m.name === name);
    if (kept) {
      if (this.loadedId !== kept.id) await this.load(kept.id);
      return;
    }
    if ('hub' in model) {
      // A download of a Hub model can be large: it is shown, and waits for the person's click.
      this.repo = model.hub;
      await this.lookUp();
      throw new Error(
        this.pending
          ? `This workshop starts from ${model.hub} (${formatBytes(this.pending.info.fileBytes)}), which is not in this browser yet: press Import below, then open the workshop again.`
          : `This workshop starts from ${model.hub}, which could not be looked up: ${this.error ?? 'no answer'}.`,
      );
    }
    const bundled = model.bundled;
    await this.run(async () => {
      const files: FileEntry[] = [];
      const paths = BUNDLED_MODELS[bundled];
      for (const [i, path] of paths.entries()) {
        this.progress = { phase: 'reading', done: i, total: paths.length, detail: `${bundled}/${path}` };
        const res = await fetch(`${base}models/${bundled}/${path}`);
        if (!res.ok) throw new Error(`the bundled model's ${path} could not be fetched: HTTP ${res.status}`);
        files.push({ path: `${bundled}/${path}`, file: await res.blob() });
      }
      const info = await this.client.importModel(files, (x) => (this.progress = x));
      this.adopt(info);
      await this.refresh();
    });
  }

  /** The bundled model, imported from the studio's own files the first time, and loaded. */
  async useBundled(name: string, base: string): Promise<void> {
    if (this.tuning || this.busy) return;
    this.error = null;
    try {
      await this.workshopModel({ bundled: name }, base);
    } catch (e) {
      this.error = this.failed(e);
    }
  }

  /** A sample shipped with the studio, fetched and read as the training data. */
  async useSample(name: string, base: string): Promise<void> {
    if (this.tuning) return;
    this.dataError = null;
    try {
      const src: WorkshopSource = { sample: name };
      const res = await fetch(sourceUrl(src, base));
      if (!res.ok) throw new Error(`the sample ${name} could not be fetched: HTTP ${res.status}`);
      const file = new File([await res.blob()], name);
      // Remembered, so that "Save these settings" can name it in a workshop file.
      this.workshopSources.set(file, src);
      await this.chooseData(file);
    } catch (e) {
      this.dataError = this.failed(e);
    }
  }

  /** The one-click demo: the workshop file shipped with the studio, opened and started. */
  async quickDemo(base: string): Promise<void> {
    try {
      const res = await fetch(`${base}samples/quick-demo.workshop.json`);
      if (!res.ok) throw new Error(`the quick demo's workshop file could not be fetched: HTTP ${res.status}`);
      await this.openWorkshop(parseWorkshop(await res.text(), 'quick-demo.workshop.json'), true, base);
    } catch (e) {
      this.workshopError = message(e);
    }
  }

  /** Reads a workshop file chosen by the person and applies it (without starting). */
  async openWorkshopFile(file: File | undefined, base: string): Promise<void> {
    if (!file) return;
    try {
      await this.openWorkshop(parseWorkshop(await file.text(), file.name), false, base);
    } catch (e) {
      this.workshopError = message(e);
    }
  }

  /** The Fine-tune form as a workshop file, to share: the same model, data, settings and seed on every machine. */
  workshopFile(): WorkshopFile | string {
    const model = this.models.find((m) => m.id === this.loadedId);
    if (!model) return 'Load a model first: a workshop file names the model it starts from.';
    if (!BUNDLED_MODELS[model.name] && !/^[\w.-]+\/[\w.-]+$/.test(model.name)) {
      return `${model.name} was imported from files on this machine: a workshop file can name the bundled model or a Hugging Face Hub repository, which every attendee can get.`;
    }
    if (!this.tuneFile) return 'Choose the data from a workshop (or the Quick demo) first: a workshop file names data every attendee can fetch.';
    const data = this.workshopSources.get(this.tuneFile);
    if (!data) return `${this.tuneFile.name} came from this machine: a workshop file can name the studio's samples or a URL. Put the file online, or start from a workshop file that names it.`;
    const test = this.testFile ? this.workshopSources.get(this.testFile) : null;
    if (this.testFile && !test) return `The test file ${this.testFile.name} came from this machine: a workshop file can name the studio's samples or a URL.`;
    const t = this.tune;
    const w: WorkshopFile = {
      format: WORKSHOP_FORMAT, version: 1, title: this.workshop?.title ?? `${model.name} on ${sourceName(data)}`, description: this.workshop?.description ?? '',
      model: BUNDLED_MODELS[model.name] ? { bundled: model.name } : { hub: model.name }, data, test: test ?? null,
      config: {
        method: t.method, steps: t.steps, learning_rate: t.learningRate, r: t.r, target_modules: t.targetModules, batch_size: t.batchSize, block_size: t.blockSize, validation: t.validation,
        eval_every: t.evalEvery, patience: t.patience, test: t.test, exact_match: t.exactMatch, sample_every: t.sampleEvery, sample_prompt: t.samplePrompt,
      },
      seed: t.seed,
    };
    // What is written must open again: the same checks as reading it.
    try {
      return parseWorkshop(JSON.stringify(w), 'this workshop');
    } catch (e) {
      return `These settings cannot be shared as they are: ${message(e)}`;
    }
  }

  downloadWorkshop(): void {
    const w = this.workshopFile();
    if (typeof w === 'string') {
      this.workshopError = w;
      return;
    }
    this.workshopError = null;
    this.save(`${w.title.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'workshop'}.workshop.json`, JSON.stringify(w, null, 2) + '\n', 'application/json');
  }

  private async run(work: () => Promise<void>): Promise<void> {
    if (this.busy) return;
    if (this.comparing) {
      this.error = 'Compare is generating: wait for it, or stop it there.';
      return;
    }
    this.busy = true;
    this.error = null;
    try {
      await work();
    } catch (e) {
      this.error = this.failed(e);
    } finally {
      this.busy = false;
      this.progress = null;
    }
  }
}


/** "reading 45% (12 MB of 27 MB)" */
export function describeProgress(p: ModelProgress): string {
  const pct = p.total > 0 ? Math.floor((100 * p.done) / p.total) : 0;
  const verb = { reading: 'Reading weights', storing: 'Storing', loading: 'Loading from this browser', ready: 'Ready' }[p.phase];
  return `${verb}: ${pct}% (${formatBytes(p.done)} of ${formatBytes(p.total)})`;
}

function slugOf(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'model';
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/**
 * The UI's handle on the worker: the same StudioApi, with callbacks wrapped for comlink so
 * the UI never imports comlink, tfjs or the core.
 */
import { proxy, wrap, type Remote } from 'comlink';
import type { DataProgress, DatasetInfo, DatasetRequest, SaveDatasetRequest, EvalInfo, FileEntry, FinetuneRequest, GenerateRequest, GeneratedPiece, ModelProgress, SampleInfo, ScoreProgress, StepReport, StudioApi, TrainRequest } from './protocol';

export class StudioClient {
  private readonly remote: Remote<StudioApi>;
  readonly worker: Worker;
  /** Rejects if the worker itself dies (a script that fails to load, an out-of-memory kill). */
  private readonly crashed: Promise<never>;

  constructor() {
    this.worker = new Worker(new URL('../../workers/studio.worker.ts', import.meta.url), { type: 'module', name: 'tabtune-studio' });
    this.remote = wrap<StudioApi>(this.worker);
    this.crashed = new Promise<never>((_, reject) => {
      this.worker.addEventListener('error', (e) => {
        e.preventDefault();
        reject(new Error(`the training worker stopped: ${e.message || 'it could not be loaded'}. Reload the page; checkpoints are kept.`));
      });
    });
    this.crashed.catch(() => undefined);
  }

  /** Every call fails instead of hanging when the worker is gone. */
  private call<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.crashed]);
  }

  init: StudioApi['init'] = (request) => this.call(this.remote.init(request));
  backend: StudioApi['backend'] = () => this.call(this.remote.backend());
  presets: StudioApi['presets'] = () => this.call(this.remote.presets());
  getRun: StudioApi['getRun'] = (preset) => this.call(this.remote.getRun(preset));
  train = (req: TrainRequest, onStep: (r: StepReport) => void) => this.call(this.remote.train(req, proxy(onStep)));
  stop: StudioApi['stop'] = () => this.call(this.remote.stop());
  deleteRun: StudioApi['deleteRun'] = (preset) => this.call(this.remote.deleteRun(preset));
  diagnostics: StudioApi['diagnostics'] = () => this.call(this.remote.diagnostics());
  bench: StudioApi['bench'] = (req) => this.call(this.remote.bench(req));
  inspectModelFiles: StudioApi['inspectModelFiles'] = (files) => this.call(this.remote.inspectModelFiles(files));
  importModel = (files: FileEntry[], onProgress: (p: ModelProgress) => void) => this.call(this.remote.importModel(files, proxy(onProgress)));
  inspectHubModel: StudioApi['inspectHubModel'] = (repo, endpoint) => this.call(this.remote.inspectHubModel(repo, endpoint));
  importHubModel = (repo: string, endpoint: string | undefined, onProgress: (p: ModelProgress) => void) =>
    this.call(this.remote.importHubModel(repo, endpoint, proxy(onProgress)));
  listModels: StudioApi['listModels'] = () => this.call(this.remote.listModels());
  loadModel = (id: string, onProgress: (p: ModelProgress) => void) => this.call(this.remote.loadModel(id, proxy(onProgress)));
  deleteModel: StudioApi['deleteModel'] = (id) => this.call(this.remote.deleteModel(id));
  logits: StudioApi['logits'] = (id, input) => this.call(this.remote.logits(id, input));
  generate = (req: GenerateRequest, onPiece: (p: GeneratedPiece) => void) => this.call(this.remote.generate(req, proxy(onPiece)));
  stopGenerating: StudioApi['stopGenerating'] = () => this.call(this.remote.stopGenerating());
  finetuneModel = (
    req: FinetuneRequest,
    onStep: (r: StepReport) => void,
    onEval: (e: EvalInfo) => void = () => undefined,
    onSample: (s: SampleInfo) => void = () => undefined,
    onScore: (p: ScoreProgress) => void = () => undefined,
  ) => this.call(this.remote.finetuneModel(req, proxy(onStep), proxy(onEval), proxy(onSample), proxy(onScore)));
  saveDataset = (req: SaveDatasetRequest, onProgress: (p: DataProgress) => void = () => undefined) => this.call(this.remote.saveDataset(req, proxy(onProgress)));
  listDatasets = () => this.call(this.remote.listDatasets());
  updateDataset = (id: string, change: Partial<Pick<DatasetInfo, 'options' | 'split' | 'summary'>>) => this.call(this.remote.updateDataset(id, change));
  deleteDataset = (id: string) => this.call(this.remote.deleteDataset(id));
  inspectDataset = (req: DatasetRequest, onProgress: (p: DataProgress) => void = () => undefined) => this.call(this.remote.inspectDataset(req, proxy(onProgress)));
  exportMerged = (modelId: string, adapterId: string | null = null) => this.call(this.remote.exportMerged(modelId, adapterId));
  applyAdapter = (modelId: string, files: FileEntry[]) => this.call(this.remote.applyAdapter(modelId, files));
  addAdapter = (modelId: string, from: FileEntry[] | { runId: string }) => this.call(this.remote.addAdapter(modelId, from));
  listAdapters = (modelId: string) => this.call(this.remote.listAdapters(modelId));
  useAdapter = (modelId: string, adapterId: string | null) => this.call(this.remote.useAdapter(modelId, adapterId));
  removeAdapter = (modelId: string, adapterId: string) => this.call(this.remote.removeAdapter(modelId, adapterId));
  resumeTuneRun = (
    runId: string,
    onStep: (r: StepReport) => void,
    onEval: (e: EvalInfo) => void = () => undefined,
    onSample: (s: SampleInfo) => void = () => undefined,
    onScore: (p: ScoreProgress) => void = () => undefined,
  ) => this.call(this.remote.resumeTuneRun(runId, proxy(onStep), proxy(onEval), proxy(onSample), proxy(onScore)));
  listTuneRuns = () => this.call(this.remote.listTuneRuns());
  deleteTuneRun = (runId: string) => this.call(this.remote.deleteTuneRun(runId));
  tuneRunFiles = (runId: string) => this.call(this.remote.tuneRunFiles(runId));
  tuneRunRecipe: StudioApi['tuneRunRecipe'] = (runId) => this.call(this.remote.tuneRunRecipe(runId));
  tuneRunMetrics = (runId: string) => this.call(this.remote.tuneRunMetrics(runId));
  exportTuneRun = (runId: string) => this.call(this.remote.exportTuneRun(runId));
  importTuneRun = (file: Blob, name?: string) => this.call(this.remote.importTuneRun(file, name));
  tabId = () => this.call(this.remote.tabId());
  storageInfo = () => this.call(this.remote.storageInfo());
  storageItems = () => this.call(this.remote.storageItems());
  deleteTuneCheckpoints = (runId: string) => this.call(this.remote.deleteTuneCheckpoints(runId));
  checkpointNow = () => this.call(this.remote.checkpointNow());
  estimateTune: StudioApi['estimateTune'] = (req) => this.call(this.remote.estimateTune(req));
  settingSpecs: StudioApi['settingSpecs'] = () => this.call(this.remote.settingSpecs());
  pauseFinetune = () => this.call(this.remote.pauseFinetune());
  resumeFinetune = () => this.call(this.remote.resumeFinetune());
}

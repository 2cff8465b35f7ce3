/**
 * The UI's handle on the worker: the same StudioApi, with callbacks wrapped for comlink so
 * the UI never imports comlink, tfjs or the core.
 */
import { proxy, wrap, type Remote } from 'comlink';
import type { StepReport, StudioApi, TrainRequest } from './protocol';

export class StudioClient {
  private readonly remote: Remote<StudioApi>;
  readonly worker: Worker;

  constructor() {
    this.worker = new Worker(new URL('../../workers/studio.worker.ts', import.meta.url), { type: 'module', name: 'tabtune-studio' });
    this.remote = wrap<StudioApi>(this.worker);
  }

  init: StudioApi['init'] = (request) => this.remote.init(request);
  backend: StudioApi['backend'] = () => this.remote.backend();
  getRun: StudioApi['getRun'] = (preset) => this.remote.getRun(preset);
  train = (req: TrainRequest, onStep: (r: StepReport) => void) => this.remote.train(req, proxy(onStep));
  stop: StudioApi['stop'] = () => this.remote.stop();
  deleteRun: StudioApi['deleteRun'] = (preset) => this.remote.deleteRun(preset);
  diagnostics: StudioApi['diagnostics'] = () => this.remote.diagnostics();
}

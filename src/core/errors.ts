/**
 * Named errors that say where a problem is. Names are written out, not taken from the class,
 * because minification renames classes and the name is what crosses the worker boundary. They are plain data plus a name, so the
 * UI can show them next to the field or file that caused them after a trip across threads.
 */
export interface ErrorPlace {
  file?: string;
  line?: number;
  field?: string;
}

export class TabtuneError extends Error {
  readonly file?: string;
  readonly line?: number;
  readonly field?: string;

  constructor(message: string, place: ErrorPlace = {}) {
    super(message);
    this.name = 'TabtuneError';
    this.file = place.file;
    this.line = place.line;
    this.field = place.field;
  }
}

/** A configuration value is missing, of the wrong type, or out of range. */
export class ConfigError extends TabtuneError {
  override name = 'ConfigError';
}

/** A checkpoint could not be restored into the current model (shape or name mismatch). */
export class CheckpointError extends TabtuneError {
  override name = 'CheckpointError';
}

/** The compute backend failed or disappeared (for example a lost WebGPU device). */
export class BackendError extends TabtuneError {
  override name = 'BackendError';
}

/** The training data cannot be used (too short for the context, empty). */
export class DataError extends TabtuneError {
  override name = 'DataError';
}

/** Training cannot go on as configured (the loss diverged to NaN or infinity). */
export class TrainingError extends TabtuneError {
  override name = 'TrainingError';
}

/** The browser's storage (or the disk) is full: nothing already saved was changed. */
export class StorageFullError extends TabtuneError {
  override name = 'StorageFullError';
}

/** A stored thing cannot go: something kept still needs it (a resumable run needs its model and data). */
export class InUseError extends TabtuneError {
  override name = 'InUseError';
}

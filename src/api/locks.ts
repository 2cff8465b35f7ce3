/**
 * One run is owned by one tab at a time: training holds a Web Lock named after the run, so a
 * second tab (its own worker, the same IndexedDB) sees the run as training elsewhere instead of
 * offering to resume it and writing the same checkpoints.
 */
export interface RunLocks {
  /** Runs `fn` holding the lock of `id`; `held: true` without running it if another holder has it. */
  tryWith<T>(id: string, fn: () => Promise<T>): Promise<{ held: true } | { held: false; value: T }>;
  isHeld(id: string): Promise<boolean>;
}

const lockName = (id: string) => `tabtune-run:${id}`;

interface LockManagerLike {
  request(name: string, opts: { ifAvailable: boolean }, cb: (lock: unknown) => Promise<unknown>): Promise<unknown>;
  query(): Promise<{ held?: { name?: string }[] }>;
}

/** Web Locks where the platform has them (browsers, in pages and workers); null elsewhere. */
export function webLocks(): RunLocks | null {
  const locks = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;
  if (!locks) return null;
  return {
    async tryWith<T>(id: string, fn: () => Promise<T>) {
      let ran = false;
      let value: T | undefined;
      await locks.request(lockName(id), { ifAvailable: true }, async (lock) => {
        if (lock === null) return;
        ran = true;
        value = await fn();
      });
      return ran ? { held: false as const, value: value as T } : { held: true as const };
    },
    async isHeld(id: string) {
      const state = await locks.query();
      return (state.held ?? []).some((l) => l.name === lockName(id));
    },
  };
}

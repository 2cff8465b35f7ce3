/**
 * An error as the page shows it: its message, which names the file, line or field. The error's
 * class (DataError, HubError, ...) still crosses the worker boundary as its name, for code; people
 * get the sentence.
 */
export function message(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

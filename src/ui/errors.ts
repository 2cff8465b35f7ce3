/**
 * An error as the page shows it: its message, which names the file, line or field. The error's
 * class (DataError, HubError, ...) still crosses the worker boundary as its name, for code; people
 * get the sentence.
 */
export function message(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  // Emscripten's last word when WebAssembly memory runs out: after it, the backend cannot work again in this page.
  if (/^Aborted\(/.test(text)) {
    return 'The WebAssembly backend ran out of memory (it can hold at most 4 GiB) and cannot work again in this page. Reload the page (models, data and runs are kept; a run resumes from its last checkpoint), then use a smaller batch or block.';
  }
  return text;
}

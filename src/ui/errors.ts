/** An error as the page shows it: its name (DataError, HubError, ...) and message. */
export function message(e: unknown): string {
  if (e instanceof Error) return e.name && e.name !== 'Error' ? `${e.name}: ${e.message}` : e.message;
  return String(e);
}

// What a Redis failure may reveal, in an error or a log line: the server's host:port and the
// error's message and code. Never the URL's password, nor the keys and cookie values that an
// ioredis error carries in its `command`.

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A copy of an error without ioredis' `command` (its args hold keys and cookie values). */
export function sanitize(err: unknown): Error {
  const out = new Error(messageOf(err));
  if (err instanceof Error) {
    out.name = err.name;
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') (out as Error & { code?: string }).code = code;
  }
  return out;
}

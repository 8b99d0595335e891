// Environment interpolation in a configuration value: `${VAR}`, `${VAR:-default}` and `$$`.
// Pure: a function of (text, env); load.ts applies it to every string value of the document.

const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Expands `${VAR}` and `${VAR:-default}` (default used when VAR is unset or empty); `$$` is a
 * literal `$`; any other `$` is kept as is. The error never contains the text itself (it may be
 * a secret); only variable names.
 */
export function interpolate(
  text: string,
  env: NodeJS.ProcessEnv,
): { value: string; defaulted: string[] } | { error: string } {
  let out = '';
  const defaulted: string[] = [];
  const missing: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (next !== '{') {
      out += '$';
      i++;
      continue;
    }
    const close = text.indexOf('}', i + 2);
    if (close === -1) {
      return { error: 'unterminated "${" (write ${NAME} or ${NAME:-default}, and $$ for a literal "$")' };
    }
    const body = text.slice(i + 2, close);
    const sep = body.indexOf(':-');
    const name = sep === -1 ? body : body.slice(0, sep);
    if (!VAR_NAME.test(name)) {
      return { error: 'malformed variable reference (write ${NAME} or ${NAME:-default}, and $$ for a literal "$")' };
    }
    const value = env[name];
    if (sep !== -1) {
      if (value === undefined || value === '') {
        out += body.slice(sep + 2);
        defaulted.push(name);
      } else {
        out += value;
      }
    } else if (value === undefined) {
      missing.push(name);
    } else {
      out += value;
    }
    i = close + 1;
  }
  if (missing.length > 0) {
    const names = missing.map((n) => JSON.stringify(n)).join(', ');
    return {
      error: `environment variable${missing.length > 1 ? 's' : ''} ${names} ${missing.length > 1 ? 'are' : 'is'} not set (give a default with \${NAME:-default})`,
    };
  }
  return { value: out, defaulted };
}

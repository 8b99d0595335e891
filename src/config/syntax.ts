// YAML syntax problems: yaml's own errors and warnings (a duplicate key with its key path, any
// other without one, since the structure is broken there, and with a hint at what usually causes
// that kind of error) and aliases with no anchor before them.
import { visit } from 'yaml';
import type { Document } from 'yaml';
import { dotted, pathAtOffset } from './positions.js';
import type { At, Located } from './positions.js';

export function syntaxProblems(doc: Document, at: At): Located[] {
  const problems: Located[] = [];
  for (const err of [...doc.errors, ...doc.warnings]) {
    const offset = err.pos[0];
    if (err.code === 'DUPLICATE_KEY') {
      const path = pathAtOffset(doc, offset);
      const key = path[path.length - 1];
      problems.push({ path: dotted(path), message: `duplicate key ${JSON.stringify(String(key ?? ''))}`, ...at(offset) });
    } else {
      // The document's structure is broken here, so a key path would be a guess: none is given.
      const hint = yamlHint(err.code, err.message);
      problems.push({ path: '', message: `${yamlMessage(err.message)}${hint ? ` (${hint})` : ''}`, ...at(offset) });
    }
  }
  visit(doc, {
    Alias(_key, node) {
      // An empty alias (a bare "*") is already one of yaml's errors (BAD_ALIAS).
      if (node.source !== '' && !node.resolve(doc)) {
        problems.push({
          path: '',
          message: `unknown alias ${JSON.stringify(`*${node.source}`)} (no anchor ${JSON.stringify(`&${node.source}`)} before it; ${QUOTE_STAR})`,
          ...at(node.range?.[0]),
        });
      }
    },
  });
  return problems;
}

const QUOTE_STAR = 'a value that starts with "*" or "&", such as a "*" pattern, must be quoted: "*"';

/**
 * One line on what usually causes a class of YAML error, by yaml's error code (and, where one
 * code covers several slips, its message). Undefined when there is nothing useful to add.
 */
function yamlHint(code: string, message: string): string | undefined {
  switch (code) {
    case 'TAB_AS_INDENT':
      return 'indent with spaces: YAML does not allow tabs there';
    case 'BAD_INDENT':
      return /flow (sequence|mapping)/i.test(message)
        ? 'usually an unclosed "[" or "{", or a " #" inside one that starts a comment: quote such values'
        : 'usually indentation: keys of one mapping, and items of one list, must start at the same column';
    case 'BLOCK_AS_IMPLICIT_KEY':
    case 'MULTILINE_IMPLICIT_KEY':
      return 'usually a value holding ": " that is not quoted, or a line indented deeper than the key above it';
    case 'MISSING_CHAR':
      if (/quote/i.test(message)) return 'a quoted value is not closed on its line';
      if (/flow|\]|\}/i.test(message)) return 'usually an unclosed "[" or "{", or a " #" inside one that starts a comment: quote such values';
      return 'usually indentation: every "- " of a list must start at the same column; or a key without ":"';
    case 'UNEXPECTED_TOKEN':
      return 'usually indentation, or a value holding ": ", " #" or a leading "-" that is not quoted';
    case 'BAD_ALIAS':
      return QUOTE_STAR;
    case 'BAD_SCALAR_START':
      return 'a value that starts with "@", "`", "%", "|" or ">" must be quoted';
    case 'KEY_OVER_1024_CHARS':
      return 'usually a missing ":" or newline, so that a whole block was read as one key';
    default:
      return undefined;
  }
}

function yamlMessage(message: string): string {
  // yaml messages may end with " at line L, column C" and a code frame; the position is ours.
  const first = message.split('\n')[0] ?? message;
  return first.replace(/ at line \d+, column \d+:?$/, '').replace(/\.$/, '');
}

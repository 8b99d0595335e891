// YAML syntax problems: yaml's own errors and warnings (a duplicate key with its key path, any
// other without one, since the structure is broken there) and aliases with no anchor before them.
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
      problems.push({ path: '', message: yamlMessage(err.message), ...at(offset) });
    }
  }
  visit(doc, {
    Alias(_key, node) {
      if (!node.resolve(doc)) {
        problems.push({
          path: '',
          message: `unknown alias ${JSON.stringify(`*${node.source}`)} (no anchor ${JSON.stringify(`&${node.source}`)} before it)`,
          ...at(node.range?.[0]),
        });
      }
    },
  });
  return problems;
}

function yamlMessage(message: string): string {
  // yaml messages may end with " at line L, column C" and a code frame; the position is ours.
  const first = message.split('\n')[0] ?? message;
  return first.replace(/ at line \d+, column \d+:?$/, '').replace(/\.$/, '');
}

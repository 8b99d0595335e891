// Lint: eslint's and typescript-eslint's recommended rules (not the type-aware sets) and
// import-x's no-cycle over src/, test/ and bench/. `npm run lint`; `npm test` runs it too.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import { importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'build/', 'coverage/', 'node_modules/'] },
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    plugins: { 'import-x': importX },
    settings: {
      // no-cycle follows only the files it can parse: .ts, with typescript-eslint's parser.
      'import-x/extensions': ['.ts'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      // Resolves the sources' `./x.js` specifiers to the `./x.ts` files, as tsc does (NodeNext);
      // an import no resolver finds is invisible to no-cycle.
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: 'tsconfig.test.json' })],
    },
    rules: {
      // A cycle between modules makes their evaluation order matter. Type-only imports are erased
      // at compile time and do not count.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // The code marks a deliberately unused name with a leading underscore (an argument an
      // interface requires, a property left out of a rest copy).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
);

// ESLint (flat config): typescript-eslint's type-aware recommended rules over src/, bench/ and infra/;
// the same parser without the type-aware rules over test/ (see the test block below for why).
// Formatting is prettier's (`prettier --check .` in `npm run lint`); layers and cycles are
// dependency-cruiser's (.dependency-cruiser.cjs). This file checks what neither of those can.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/** Rules that fight a deliberate style of this codebase, off everywhere (each with why). */
const styleChoices = {
  // `async` without `await` is deliberate here: handler tables (the Task API verbs, the workers' ops) and
  // implementations of a Promise-returning interface (SimDriver beside the QEMU driver, fromPromise
  // actors) are `async` so that a synchronous throw becomes a rejection, the path every caller handles.
  '@typescript-eslint/require-await': 'off',
  // `_`-prefixed names are the codebase's "deliberately unused" (destructuring a field away, a callback's
  // unused parameter): keep the rule for everything else.
  '@typescript-eslint/no-unused-vars': [
    'error',
    {
      argsIgnorePattern: '^_',
      varsIgnorePattern: '^_',
      caughtErrorsIgnorePattern: '^_',
      destructuredArrayIgnorePattern: '^_',
      ignoreRestSiblings: true,
    },
  ],
};

export default defineConfig(
  {
    // src/shim/gen/, test/helpers/otlp/gen/: protoc-gen-es output (infra/scripts/gen-proto.sh; buf generate in
    // test/helpers/otlp/proto), not edited by hand.
    ignores: [
      'node_modules/',
      '.corral/',
      'examples/',
      'docs/',
      'infra/guest/',
      'scratch/',
      'dist/',
      'dist.build-*/',
      '**/*.d.ts',
      'src/shim/gen/',
      'test/helpers/otlp/gen/',
    ],
  },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      ...styleChoices,
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      // Every swallowed error says why or is logged (issue 7, item 6): an empty `catch {}` block and an
      // empty `.catch(() => {})` handler both need a comment inside the braces. (no-empty-function is
      // not in typescript-eslint's recommended set; it is what catches the empty arrow handler.)
      'no-empty': ['error', { allowEmptyCatch: false }],
      'no-empty-function': 'off',
      '@typescript-eslint/no-empty-function': 'error',
      // prettier breaks code at 120 columns but not strings, comments or template literals: this catches
      // those. A URL or a regular expression literal cannot be broken, so a line holding one may be longer.
      'max-len': ['error', { code: 120, tabWidth: 2, ignoreUrls: true, ignoreRegExpLiterals: true }],
    },
  },
  {
    // Tests: the same parser and the syntactic rules, without type information. Run type-aware, test/
    // gave only noise (no floating promise: `any` from mocks and JSON fixtures, `expect(obj.method)` as
    // unbound-method, assertions the fixtures need) and doubled ESLint's time.
    files: ['test/**/*.ts', 'vitest.config.ts'],
    extends: [tseslint.configs.disableTypeChecked],
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      // No-op functions (`log() {}`, `out: () => {}`, a fake's `sleep`) are how tests silence a sink or
      // stub a dependency; the rule cannot tell them from a swallowed rejection, so it is for src/ only.
      '@typescript-eslint/no-empty-function': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.cjs', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: { module: 'readonly', require: 'readonly', process: 'readonly', console: 'readonly' },
    },
  },
);

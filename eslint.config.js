// ESLint (flat config): typescript-eslint's type-aware recommended rules over src/, bench/ and infra/;
// the same parser without the type-aware rules over test/ (see the test block below for why).
// Formatting is prettier's (`prettier --check .` in `npm run lint`); layers and cycles are
// dependency-cruiser's (.dependency-cruiser.cjs). This file checks what neither of those can.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Rules that fight a deliberate style of this codebase, off everywhere (each with why). */
const styleChoices = {
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

export default tseslint.config(
  {
    ignores: ['node_modules/', '.corral/', 'examples/', 'docs/', 'infra/guest/', 'scratch/', '**/*.d.ts'],
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
      // prettier breaks code at 120 columns but not strings, comments or template literals: this catches those.
      'max-len': [
        'error',
        { code: 120, tabWidth: 2, ignoreUrls: true, ignoreRegExpLiterals: true, ignorePattern: '^import .* from ' },
      ],
    },
  },
  {
    // Tests: the same parser and the syntactic rules, without type information. The type-aware rules
    // are mostly noise here (`any` from `expect`, mocks and JSON fixtures; unawaited `expect().rejects`
    // is caught by vitest itself), and a type-aware pass over test/ doubles the lint's time.
    files: ['test/**/*.ts', 'vitest.config.ts'],
    extends: [tseslint.configs.disableTypeChecked],
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      // No-op methods (`log() {}`, `stdout() {}`) are how tests silence a sink; an empty rejection handler
      // (an arrow function) still needs its comment.
      '@typescript-eslint/no-empty-function': ['error', { allow: ['methods', 'asyncMethods'] }],
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

/**
 * eslint.config: typescript-eslint `recommended` without type information, so `npm run lint` stays a few seconds on
 * two cores (the type checker already runs as `npm run typecheck`). Formatting is prettier's job alone:
 * eslint-config-prettier switches off every stylistic rule that could disagree with it.
 */
const { defineConfig } = require('eslint/config');
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const prettier = require('eslint-config-prettier');

module.exports = defineConfig(
  { ignores: ['dist/', 'dist-bench/', 'data/', 'coverage/', 'node_modules/'] },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    rules: {
      // Express tells error handlers by arity, so `_next` must stay; `{ der: _d, ...rest }` is how a field is left out.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // Off: validators reject C0 controls on purpose (/[\u0000-\u001f]/ on labels and owners); the rule cannot tell that from a typo.
      'no-control-regex': 'off',
    },
  },
  {
    // The two CommonJS config files at the root (this one and jest.config.js) are loaded by require().
    files: ['**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'commonjs' },
  },
  prettier,
);

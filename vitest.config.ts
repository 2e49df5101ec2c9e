import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Native Temporal core and tfjs-wasm each hold process-global state: isolate test files in forks.
    pool: 'forks',
    // Two cores: the workflow tests train real models, so files run one after another.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // The JSON report is what .ci/run turns into its "N passed, N failed" line.
    reporters: ['default', 'json'],
    outputFile: { json: '.data/test-results.json' },
  },
});

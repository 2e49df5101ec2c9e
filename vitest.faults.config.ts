import { defineConfig } from 'vitest/config';

// The fault suite (`npm run test:faults`): real worker processes against its own dev stack (test/faults/env.ts),
// whose Postgres and S3 it stops and starts. Files are *.fault.ts so that `npm test` (test/**/*.test.ts) never
// picks them up; cases run one after another, each bounded by the undisturbed run's time + outage + 2 minutes.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.fault.ts'],
    globalSetup: ['test/faults/global-setup.ts'],
    pool: 'forks',
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 600_000,
    hookTimeout: 300_000,
    reporters: ['default', 'json'],
    outputFile: { json: '.data/test-results-faults.json' },
  },
});

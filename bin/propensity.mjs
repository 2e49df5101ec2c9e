#!/usr/bin/env node
// Runs the compiled CLI from dist/ (built by `npm install` through `prepare`, or by `npm run build`). When dist/ is
// missing or older than a TypeScript source (an edit since the last build), it runs the sources through tsx instead
// and says so: slower (seconds per command), never stale. PROPENSITY_CLI=source|dist forces one (README, "A fast CLI").
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildState } from './build-state.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const compiled = path.join(root, 'dist', 'cli', 'main.js');

function chooseEntry() {
  const { entry, reason } = buildState(root);
  if (entry === 'source' && !reason.startsWith('PROPENSITY_CLI=')) {
    process.stderr.write(`propensity: ${reason}; running the TypeScript sources through tsx meanwhile\n`);
  }
  return entry;
}

if (chooseEntry() === 'dist') {
  await import(compiled);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(path.join(root, 'cli', 'main.ts'));
}

#!/usr/bin/env node
// Runs the compiled CLI from dist/ (built by `npm install` through `prepare`, or by `npm run build`). When dist/ is
// missing or older than a TypeScript source (an edit since the last build), it runs the sources through tsx instead
// and says so: slower (seconds per command), never stale. PROPENSITY_CLI=source|dist forces one (README, "A fast CLI").
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const compiled = path.join(root, 'dist', 'cli', 'main.js');
// the folders the CLI's code lives in (tsconfig.json's include, less tests, benchmarks and scripts)
const SOURCES = ['activities', 'audit', 'cli', 'db', 'infra', 'migrations', 'ml', 'pipeline', 'registry', 'report', 'schedules', 'store', 'workers', 'workflows'];

/** The newest .ts file under the source folders newer than `since` (ms), if any: a few ms for a few hundred files. */
function newerSource(since) {
  const stack = SOURCES.map((d) => path.join(root, d));
  while (stack.length) {
    const dir = stack.pop();
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.name.endsWith('.ts') && statSync(p).mtimeMs > since) return p;
    }
  }
  return null;
}

function chooseEntry() {
  const forced = process.env.PROPENSITY_CLI;
  if (forced === 'dist') return 'dist';
  if (forced === 'source') return 'source';
  if (!existsSync(compiled)) {
    process.stderr.write('propensity: dist/ is not built (run `npm run build`); running the TypeScript sources through tsx meanwhile\n');
    return 'source';
  }
  const stale = newerSource(statSync(path.join(root, 'dist', '.tsbuildinfo'), { throwIfNoEntry: false })?.mtimeMs ?? 0);
  if (stale) {
    process.stderr.write(`propensity: ${path.relative(root, stale)} changed since the last build (run \`npm run build\`); running the TypeScript sources through tsx meanwhile\n`);
    return 'source';
  }
  return 'dist';
}

if (chooseEntry() === 'dist') {
  await import(compiled);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(path.join(root, 'cli', 'main.ts'));
}

// Whether the compiled JavaScript in dist/ may run, or the TypeScript sources must (through tsx): the one rule
// for the CLI (bin/propensity.mjs) and for the worker processes the dev stack and the demo start (infra/workers.ts).
// Plain JavaScript on purpose: the CLI reads it before it knows whether dist/ is usable.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

// the folders the code lives in (tsconfig.json's include, less tests, benchmarks and scripts)
const SOURCES = ['activities', 'audit', 'cli', 'db', 'infra', 'migrations', 'ml', 'pipeline', 'registry', 'report', 'schedules', 'store', 'workers', 'workflows'];

/** The first .ts file under the source folders newer than `since` (ms), if any: a few ms for a few hundred files. */
function newerSource(root, since) {
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

/**
 * `dist` when dist/ holds a build newer than every TypeScript source, else `source` with the reason (for one line
 * on stderr or in a log). PROPENSITY_CLI=source|dist forces one.
 */
export function buildState(root, env = process.env) {
  const forced = env.PROPENSITY_CLI;
  if (forced === 'dist' || forced === 'source') return { entry: forced, reason: `PROPENSITY_CLI=${forced}` };
  if (!existsSync(path.join(root, 'dist', 'cli', 'main.js'))) return { entry: 'source', reason: 'dist/ is not built (run `npm run build`)' };
  const stale = newerSource(root, statSync(path.join(root, 'dist', '.tsbuildinfo'), { throwIfNoEntry: false })?.mtimeMs ?? 0);
  if (stale) return { entry: 'source', reason: `${path.relative(root, stale)} changed since the last build (run \`npm run build\`)` };
  return { entry: 'dist', reason: null };
}

/**
 * The node arguments that run one TypeScript module of the repository (e.g. `workers/cpu.ts`): its compiled twin in
 * dist/ when the build is fresh, else the source through tsx.
 */
export function nodeArgsFor(root, file, state = buildState(root)) {
  return state.entry === 'dist'
    ? [path.join(root, 'dist', file.replace(/\.ts$/, '.js'))]
    : // tsx by its file URL in this repository, so that a process started in another directory (a rehearsal "host")
      // finds it too
      ['--import', pathToFileURL(createRequire(path.join(root, 'package.json')).resolve('tsx')).href, path.join(root, file)];
}

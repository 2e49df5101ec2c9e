import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BuildState } from '../bin/build-state.mjs';
import { findRepoRoot } from './env.js';

// What a process of ours runs: the compiled JavaScript in dist/ when the build is fresh, else the TypeScript sources
// through tsx. One rule for the CLI and the workers, in bin/build-state.mjs (plain JavaScript, which the CLI reads
// before it knows whether dist/ is usable); loaded from the repository root so that it is found from dist/ too.

const root = findRepoRoot();
const rule = (await import(pathToFileURL(path.join(root, 'bin', 'build-state.mjs')).href)) as typeof import('../bin/build-state.mjs');

export type { BuildState };

/** dist or source, and why (evaluated now: an edit since the last build switches to the sources). */
export const buildState = (): BuildState => rule.buildState(root);

/** The node arguments that run one module of the repository, e.g. `workers/cpu.ts`. */
export const nodeArgsFor = (file: string, state: BuildState = buildState()): string[] => rule.nodeArgsFor(root, file, state);

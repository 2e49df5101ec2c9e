export interface BuildState {
  /** what runs: the compiled JavaScript in dist/, or the TypeScript sources through tsx */
  entry: 'dist' | 'source';
  /** why the sources run (or PROPENSITY_CLI=… when forced); null when dist/ is fresh */
  reason: string | null;
}
export function buildState(root: string, env?: Record<string, string | undefined>): BuildState;
export function nodeArgsFor(root: string, file: string, state?: BuildState): string[];

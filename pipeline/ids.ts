/**
 * The one place that says what an id or a name may look like. Ids end up in Temporal, in S3 keys
 * (`runs/<runId>/…`, `models/<name>/v<N>/…`, `histories/<workflowId>/<runId>.json`) and in file names, so anything
 * that could climb out of a directory (`..`, a leading `/`, a backslash) or hide in a log (control characters) is
 * refused where it enters: the CLI, model references, key builders and history file paths.
 *
 * Pure: no I/O and no Temporal imports, so workflows may import it as well as activities.
 */

/** Model names and aliases: a lowercase letter, then up to 62 lowercase letters, digits, `_` or `-`. */
export const NAME_PATTERN = /^[a-z][a-z0-9_-]{0,62}$/;

/**
 * One segment of an id: a letter or digit, then letters, digits, `.`, `_`, `:` or `-` (`:` because scheduled runs
 * are named `<schedule id>-2026-11-24T02:00:00Z` by Temporal).
 */
const SEGMENT = '[A-Za-z0-9][A-Za-z0-9._:-]*';

/** Workflow ids: segments joined by `/` (children are `<parent>/search`, `<parent>/score`), at most 255 characters, never `..`. */
export const WORKFLOW_ID_PATTERN = new RegExp(`^(?=.{1,255}$)(?!.*\\.\\.)${SEGMENT}(?:/${SEGMENT})*$`);

/** Temporal run ids (UUIDs) and other single-segment ids: like a workflow id without `/`. */
export const RUN_ID_PATTERN = new RegExp(`^(?=.{1,255}$)(?!.*\\.\\.)${SEGMENT}$`);

/** Schedule ids, as schedules/schedules.ts checks them: they prefix their runs' workflow ids. */
export const SCHEDULE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export interface IdRule {
  /** what it is, in messages: "model name", "workflow id", … */
  label: string;
  pattern: RegExp;
  /** the pattern as people read it (README, messages) */
  rule: string;
  example: string;
  maxLength: number;
}

/** Every kind of id, with its pattern, a readable rule and an example (README, "Ids and names"). */
export const ID_RULES = {
  modelName: {
    label: 'model name',
    pattern: NAME_PATTERN,
    rule: 'a lowercase letter, then up to 62 lowercase letters, digits, "_" or "-"',
    example: 'propensity',
    maxLength: 63,
  },
  alias: {
    label: 'alias',
    pattern: NAME_PATTERN,
    rule: 'a lowercase letter, then up to 62 lowercase letters, digits, "_" or "-", and not v<N> (which names a version)',
    example: 'champion',
    maxLength: 63,
  },
  workflowId: {
    label: 'workflow id',
    pattern: WORKFLOW_ID_PATTERN,
    rule: 'segments of letters, digits, ".", "_", ":" or "-" (each starting with a letter or digit) joined by "/", at most 255 characters, never ".."',
    example: 'train-propensity-2026-11-29',
    maxLength: 255,
  },
  runId: {
    label: 'run id',
    pattern: RUN_ID_PATTERN,
    rule: 'letters, digits, ".", "_", ":" or "-", starting with a letter or digit, at most 255 characters, never ".."',
    example: '0195f3a2-6c1e-7d4b-9a51-2f8e4c1d7b90',
    maxLength: 255,
  },
  /** what commands that take "a run id or a workflow id" accept (a run id is a workflow id without "/") */
  runRef: {
    label: 'run id or workflow id',
    pattern: WORKFLOW_ID_PATTERN,
    rule: 'segments of letters, digits, ".", "_", ":" or "-" (each starting with a letter or digit) joined by "/", at most 255 characters, never ".."',
    example: 'train-propensity-2026-11-29',
    maxLength: 255,
  },
  scheduleId: {
    label: 'schedule id',
    pattern: SCHEDULE_ID_PATTERN,
    rule: '1-200 letters, digits, ".", "_" or "-", starting with a letter or digit',
    example: 'nightly-propensity',
    maxLength: 200,
  },
} as const satisfies Record<string, IdRule>;
export type IdKind = keyof typeof ID_RULES;

/** A refused id: `kind` says which rule, `problem` what was wrong with the value. Bad input, never retried. */
export class InvalidIdError extends Error {
  readonly type = 'InvalidId';
  constructor(
    readonly kind: IdKind | 'keySegment',
    readonly value: string,
    readonly problem: string,
    message: string,
  ) {
    super(message);
    this.name = 'InvalidIdError';
  }
}

/** The value as it can be printed: quoted, control characters escaped, long values cut. */
export const quoteId = (value: string): string => {
  const shown = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return JSON.stringify(shown);
};

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const codePoint = (c: string) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

/** The first thing wrong with a value that breaks the path-safety rules every id shares, or null. */
function unsafe(value: string): string | null {
  if (value === '') return 'it is empty';
  const control = CONTROL.exec(value);
  if (control) return `it contains the control character ${codePoint(control[0])} at position ${control.index + 1}`;
  if (value.includes('..')) return 'it contains ".." (a path that climbs out of its directory)';
  if (value.startsWith('/')) return 'it starts with "/"';
  if (value.includes('\\')) return 'it contains a backslash';
  return null;
}

/** Why `value` does not follow `rule` (the first problem found), or null when it does. */
export function idProblem(kind: IdKind, value: string): string | null {
  const r: IdRule = ID_RULES[kind];
  if (typeof value !== 'string') return `it is a ${typeof value}, not a string`;
  const bad = unsafe(value);
  if (bad) return bad;
  if (value.length > r.maxLength) return `it is ${value.length} characters long, at most ${r.maxLength} are allowed`;
  if (kind === 'alias' && /^v\d+$/.test(value)) return `"${value}" names a version, not an alias`;
  if (r.pattern.test(value)) return null;
  if (r.pattern === NAME_PATTERN && !/^[a-z]/.test(value)) return 'it does not start with a lowercase letter';
  if (value.includes('//') || value.endsWith('/')) return 'it has an empty segment between or after "/"';
  const allowed =
    r.pattern === NAME_PATTERN ? /[a-z0-9_-]/ : r.pattern === WORKFLOW_ID_PATTERN ? /[A-Za-z0-9._:\/-]/ : r.pattern === RUN_ID_PATTERN ? /[A-Za-z0-9._:-]/ : /[A-Za-z0-9._-]/;
  const i = [...value].findIndex((c) => !allowed.test(c));
  if (i >= 0) return `it contains ${JSON.stringify([...value][i])} at position ${i + 1}`;
  return 'it does not start with a letter or digit' + (r.pattern === WORKFLOW_ID_PATTERN ? ' (each "/" segment must)' : '');
}

/** The message for a refused value: what was wrong, the rule, the pattern and an example. */
export function invalidIdMessage(kind: IdKind, value: string, problem: string): string {
  const r: IdRule = ID_RULES[kind];
  return `invalid ${r.label} ${quoteId(String(value))}: ${problem}; a ${r.label} is ${r.rule} (pattern ${r.pattern.source}), e.g. ${r.example}`;
}

/** Returns `value` when it follows the rule of `kind`, else throws an InvalidIdError saying why. */
export function checkId(kind: IdKind, value: string): string {
  const problem = idProblem(kind, value);
  if (problem !== null) throw new InvalidIdError(kind, String(value), problem, invalidIdMessage(kind, value, problem));
  return value;
}

export const isValidId = (kind: IdKind, value: string): boolean => idProblem(kind, value) === null;

export const checkModelName = (value: string) => checkId('modelName', value);
export const checkAlias = (value: string) => checkId('alias', value);
export const checkWorkflowId = (value: string) => checkId('workflowId', value);
export const checkRunId = (value: string) => checkId('runId', value);
export const checkRunRef = (value: string) => checkId('runRef', value);
export const checkScheduleId = (value: string) => checkId('scheduleId', value);

/**
 * Asserts one part of an S3 key or file name built from an id: never empty, no control character, no `..`, no
 * leading `/`, no backslash, and no `/` at all unless `allowSlash` (then no empty segment either).
 */
export function assertKeySegment(value: string, what: string, opts: { allowSlash?: boolean } = {}): string {
  let problem = typeof value === 'string' ? unsafe(value) : `it is a ${typeof value}, not a string`;
  if (problem === null && value.includes('/')) {
    if (!opts.allowSlash) problem = 'it contains "/"';
    else if (value.split('/').some((s) => s === '')) problem = 'it has an empty segment between or after "/"';
  }
  if (problem !== null) {
    throw new InvalidIdError(
      'keySegment',
      String(value),
      problem,
      `invalid ${what} ${quoteId(String(value))} for a storage key or file name: ${problem} ` +
        '(key parts never contain "..", a leading "/", a backslash or control characters)',
    );
  }
  return value;
}

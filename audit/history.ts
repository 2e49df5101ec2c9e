/**
 * Workflow histories for auditors: export a run's history (to S3 and a file), read history files back, list the
 * histories started since a date, and replay them against the current workflow code. A replay that diverges from
 * a recorded history is a determinism violation: the code changed what a past run did without a `patched()` guard.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { historyFromJSON, historyToJSON, type History } from '@temporalio/common/lib/proto-utils.js';
import { Worker, type WorkflowBundle } from '@temporalio/worker';
import { assertKeySegment, checkRunId, checkWorkflowId, InvalidIdError } from '../pipeline/ids.js';
import type { ArtifactStore } from '../store/artifacts.js';
import { codeVersion as currentCodeVersion } from '../workers/deps.js';

/** The workflow types whose histories are audited; matched by name, so a type not deployed yet just finds nothing. */
export const AUDITED_WORKFLOW_TYPES = ['trainPipeline', 'hyperparameterSearch', 'scoreUsers'] as const;

export const AuditErrorType = {
  /** a file that is not JSON, not a Temporal history, or a malformed one */
  NotAHistory: 'NotAHistory',
  /** a bare history (no wrapper) and no workflow id given for it */
  MissingWorkflowId: 'MissingWorkflowId',
  /** no such workflow (or run) on the Temporal server */
  UnknownWorkflow: 'UnknownWorkflow',
  FileNotFound: 'FileNotFound',
  InvalidDate: 'InvalidDate',
  /** nothing to replay was named, or a directory holds no history files */
  NoHistories: 'NoHistories',
} as const;
export type AuditErrorTypeName = (typeof AuditErrorType)[keyof typeof AuditErrorType];

export class AuditError extends Error {
  constructor(
    readonly type: AuditErrorTypeName,
    message: string,
  ) {
    super(message);
    this.name = 'AuditError';
  }
}

/** The history JSON `temporal workflow show --output json` writes (and `historyToJSON` produces). */
export interface HistoryJson {
  events: Record<string, unknown>[];
}

/** What test/replay/*.json and `history export` hold: a history plus what replaying it needs. */
export interface HistoryFile {
  /** Replay needs it: histories do not hold their own workflow id, and child ids derive from it. */
  workflowId: string;
  runId: string;
  workflowType: string;
  /** the code version at export time */
  codeVersion: string;
  history: HistoryJson;
}

/** One history ready to replay. */
export interface ReplayItem {
  workflowId: string;
  runId: string;
  workflowType: string;
  source: 'file' | 'server';
  /** the file it was read from (source 'file') */
  file?: string;
  history: History;
}

export type ReplayErrorType = 'DeterminismViolation' | 'ReplayError' | (string & {});

export interface ReplayOutcome {
  workflowId: string;
  runId: string;
  workflowType: string;
  source: 'file' | 'server';
  file?: string;
  ok: boolean;
  error?: { type: ReplayErrorType; message: string };
}

/** The S3 key of an exported history; both ids are checked (pipeline/ids.ts), so the key stays under histories/. */
export const historyKey = (workflowId: string, runId: string) => `histories/${checkWorkflowId(workflowId)}/${checkRunId(runId)}.json`;

/**
 * Where `history export` writes a history by default: `<dir>/<workflowId with / as _>-<runId>.json`, resolved and
 * checked to stay inside `dir` whatever the ids hold.
 */
export function historyFilePath(workflowId: string, runId: string, dir = 'histories'): string {
  const name = `${checkWorkflowId(workflowId).replaceAll('/', '_')}-${checkRunId(runId)}.json`;
  const base = path.resolve(dir);
  const file = path.resolve(base, assertKeySegment(name, 'history file name'));
  if (path.dirname(file) !== base) {
    throw new InvalidIdError('keySegment', name, `it resolves to ${file}, outside ${base}`, `history file ${JSON.stringify(name)} would be written outside ${base}`);
  }
  return file;
}

/** The bytes of a history file, as written to S3, to files and to test/replay/. */
export const serializeHistoryFile = (file: HistoryFile): string => JSON.stringify(file, null, 1) + '\n';

const startedAttributes = (history: History) => history.events?.[0]?.workflowExecutionStartedEventAttributes;

/** Fetches one run's history (the latest run when runId is omitted); an unknown id is an AuditError. */
export async function fetchServerHistory(
  client: Client,
  { workflowId, runId }: { workflowId: string; runId?: string },
): Promise<ReplayItem & { status: string }> {
  // Checked before anything reaches the server: the id goes on into S3 keys and file names.
  checkWorkflowId(workflowId);
  if (runId !== undefined) checkRunId(runId);
  try {
    const description = await client.workflow.getHandle(workflowId, runId).describe();
    const history = await client.workflow.getHandle(workflowId, description.runId).fetchHistory();
    return {
      workflowId,
      runId: description.runId,
      workflowType: description.type,
      source: 'server',
      history,
      status: description.status.name,
    };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      const what = runId ? `workflow ${workflowId} run ${runId}` : `workflow ${workflowId}`;
      throw new AuditError(AuditErrorType.UnknownWorkflow, `${what} not found on the Temporal server in namespace ${client.options.namespace}`);
    }
    throw err;
  }
}

/**
 * Exports a run's history as a HistoryFile (with the code version at export time) and stores it in S3 at
 * `histories/<workflowId>/<runId>.json`.
 */
export async function exportHistory(
  client: Client,
  store: ArtifactStore,
  opts: { workflowId: string; runId?: string; codeVersion?: string },
): Promise<{ file: HistoryFile; uri: string; key: string; events: number; status: string }> {
  const item = await fetchServerHistory(client, opts);
  const file: HistoryFile = {
    workflowId: item.workflowId,
    runId: item.runId,
    workflowType: item.workflowType,
    codeVersion: opts.codeVersion ?? currentCodeVersion(),
    history: JSON.parse(historyToJSON(item.history)) as HistoryJson,
  };
  const key = historyKey(item.workflowId, item.runId);
  await store.put(key, new TextEncoder().encode(serializeHistoryFile(file)), 'application/json');
  return { file, uri: store.uri(key), key, events: item.history.events?.length ?? 0, status: item.status };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const describeJson = (v: unknown) =>
  Array.isArray(v) ? 'an array' : isObject(v) ? `an object with keys ${Object.keys(v).slice(0, 8).join(', ') || '(none)'}` : `a ${typeof v}`;

/**
 * Reads a history file: the wrapper {workflowId, runId, workflowType, codeVersion, history} or a bare Temporal
 * history JSON (`temporal workflow show --output json`), whose workflow id then comes from `opts.workflowId`.
 * Anything else is an AuditError naming the file and what was wrong.
 */
export async function readHistoryFile(file: string, opts: { workflowId?: string } = {}): Promise<ReplayItem> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new AuditError(AuditErrorType.FileNotFound, `${file}: no such file`);
    throw new AuditError(AuditErrorType.NotAHistory, `${file} cannot be read: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AuditError(AuditErrorType.NotAHistory, `${file} is not a Temporal history: it is not JSON (${(err as Error).message.replace(/\s+/g, ' ')})`);
  }
  const notAHistory = (what: string) => new AuditError(AuditErrorType.NotAHistory, `${file} is not a Temporal history: ${what}`);

  let historyJson: unknown;
  let wrapper: Partial<HistoryFile> | undefined;
  if (isObject(json) && 'history' in json) {
    wrapper = json as Partial<HistoryFile>;
    if (typeof wrapper.workflowId !== 'string' || wrapper.workflowId === '') {
      throw notAHistory('the wrapper has no "workflowId" string (expected {workflowId, runId, workflowType, codeVersion, history})');
    }
    historyJson = json.history;
  } else {
    historyJson = json;
  }
  if (!isObject(historyJson) || !Array.isArray(historyJson.events)) {
    throw notAHistory(
      `expected {"events": [...]} as \`temporal workflow show --output json\` writes, or {workflowId, history} as \`propensity history export\` writes; found ${describeJson(historyJson)}`,
    );
  }
  if (historyJson.events.length === 0) throw notAHistory('it has no events');

  let history: History;
  try {
    history = historyFromJSON(historyJson);
  } catch (err) {
    throw notAHistory(`its events do not parse as Temporal history events (${(err as Error).message.slice(0, 300)})`);
  }
  const started = startedAttributes(history);
  if (!started?.workflowType?.name) {
    throw notAHistory(`its first event is ${String((historyJson.events[0] as { eventType?: unknown }).eventType ?? 'of no type')}, not a WorkflowExecutionStarted event with a workflow type`);
  }

  const workflowId = wrapper?.workflowId ?? opts.workflowId;
  if (!workflowId) {
    throw new AuditError(
      AuditErrorType.MissingWorkflowId,
      `${file} is a bare Temporal history, which does not record its workflow id: pass --workflow-id <id> (replay needs it, child workflow ids derive from it)`,
    );
  }
  return {
    workflowId,
    runId: (typeof wrapper?.runId === 'string' && wrapper.runId) || started.originalExecutionRunId || started.firstExecutionRunId || '',
    workflowType: started.workflowType.name,
    source: 'file',
    file,
    history,
  };
}

/** Every history of an audited workflow type started at or after `since` (closed or still running). */
export async function listHistoriesSince(client: Client, since: Date): Promise<ReplayItem[]> {
  if (Number.isNaN(since.getTime())) throw new AuditError(AuditErrorType.InvalidDate, `invalid date: ${String(since)}`);
  const types = AUDITED_WORKFLOW_TYPES.map((t) => `'${t}'`).join(', ');
  const query = `WorkflowType IN (${types}) AND StartTime >= '${since.toISOString()}'`;
  const executions: { workflowId: string; runId: string; type: string; startTime: Date }[] = [];
  for await (const e of client.workflow.list({ query })) executions.push({ workflowId: e.workflowId, runId: e.runId, type: e.type, startTime: e.startTime });
  executions.sort((a, b) => a.startTime.getTime() - b.startTime.getTime() || a.workflowId.localeCompare(b.workflowId));
  const items: ReplayItem[] = [];
  for (const e of executions) {
    const history = await client.workflow.getHandle(e.workflowId, e.runId).fetchHistory();
    items.push({ workflowId: e.workflowId, runId: e.runId, workflowType: e.type, source: 'server', history });
  }
  return items;
}

/** Parses a `--all-since` date (`2026-11-23` or an ISO timestamp). */
export function parseSince(text: string): Date {
  const date = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim()) ? new Date(text.trim()) : new Date(NaN);
  if (Number.isNaN(date.getTime())) {
    throw new AuditError(AuditErrorType.InvalidDate, `"${text}" is not a date: use YYYY-MM-DD or an ISO timestamp such as 2026-11-23T09:00:00Z`);
  }
  return date;
}

/**
 * Replays every history against the workflow code (bundled once for all of them) and reports each: ok, or the
 * error (`DeterminismViolation` when the code issues different commands than the history recorded).
 */
export async function replayHistories(
  items: ReplayItem[],
  code: { workflowsPath: string } | { workflowBundle: WorkflowBundle },
): Promise<ReplayOutcome[]> {
  if (items.length === 0) return [];
  const outcomes: ReplayOutcome[] = [];
  const replay = Worker.runReplayHistories(
    { ...code, replayName: 'propensity-replay' },
    items.map((i) => ({ workflowId: i.workflowId, history: i.history })),
  );
  // The replay worker replays one history at a time, in order.
  for await (const result of replay) {
    const item = items[outcomes.length];
    const outcome: ReplayOutcome = {
      workflowId: item.workflowId,
      runId: item.runId || result.runId,
      workflowType: item.workflowType,
      source: item.source,
      ...(item.file && { file: item.file }),
      ok: !result.error,
    };
    if (result.error) {
      const name = result.error.name;
      const type = name === 'DeterminismViolationError' ? 'DeterminismViolation' : name === 'ReplayError' ? 'ReplayError' : name;
      outcome.error = { type, message: result.error.message };
    }
    outcomes.push(outcome);
  }
  return outcomes;
}

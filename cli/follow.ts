import type { Client, WorkflowExecutionDescription, WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { PipelineProgress, TrainPipelineOutput } from '../workflows/pipeline.js';
import type { SearchProgress } from '../workflows/search.js';
import { formatSelection } from '../ml/search.js';
import { CliError, ExitCode } from './common.js';

/** How far the final training has got: from its heartbeats, or a fresher source (ml.trials, written every epoch). */
export interface FinalProgress {
  epoch: number;
  /** the epoch budget, when known */
  epochs: number | null;
  valLoss: number | null;
  valAuc: number | null;
}

export interface FollowOptions {
  intervalMs?: number;
  /** the final training's epoch budget (training.finalEpochs), for progress read from heartbeats */
  finalEpochs?: number;
  /** a fresher source of the final training's progress than its heartbeats (which reach the server throttled) */
  finalProgress?: () => Promise<FinalProgress | null>;
  /** the completed stages of a closed run whose progress query no worker answers (from ml.run_steps) */
  closedStages?: () => Promise<{ stage: string; detail: string }[]>;
  /** waits between retries while Temporal is unreachable: 1 s, 2 s, 4 s, … up to this (default 30 s) */
  maxBackoffMs?: number;
  /** how long a query may wait for a worker to answer it (a closed run's query is answered by replaying it) */
  queryTimeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const sleeper = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Prints each finished stage, the search's rungs and the final training's epochs while a pipeline runs, and
 * resolves with its result (a closed run: its completed stages, then its result). A lost connection to Temporal is
 * said once and retried with backoff until it comes back; a workflow that does not exist ends with a clear error.
 */
export async function followPipeline(
  client: Client,
  handle: WorkflowHandle,
  log: (line: string) => void,
  opts: FollowOptions = {},
): Promise<TrainPipelineOutput> {
  const sleep = opts.sleep ?? sleeper;
  const link = new ConnectionWatch(temporalAddress(client), log, opts.maxBackoffMs ?? 30_000);
  const queryTimeout = opts.queryTimeoutMs ?? 10_000;
  const t0 = Date.now();
  const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s`;
  let printed = 0;
  let answered = false;
  let lastSearch = '';
  let lastFinal = { line: '', at: 0 };
  let lastStage: string | null = null;
  const stageLine = (c: { stage: string; detail: string }) => log(`${elapsed()}  ✓ ${c.stage.padEnd(9)} ${c.detail}`);

  for (let first = true; ; first = false) {
    if (!first) await sleep(link.lost ? link.backoff() : (opts.intervalMs ?? 1000));
    let d: WorkflowExecutionDescription;
    try {
      d = await handle.describe();
    } catch (err) {
      if (link.failed(err)) continue;
      throw notFound(err, handle) ?? err;
    }
    link.ok();
    const running = d.status.name === 'RUNNING';
    let p: PipelineProgress;
    try {
      p = await withDeadline(client, queryTimeout, () => handle.query<PipelineProgress>('progress'));
    } catch (err) {
      if (link.failed(err)) continue;
      // not answerable yet (no workflow task completed, no worker polling): the next poll catches up
      if (running) continue;
      break;
    }
    answered = true;
    if (p.stage !== 'done' && p.stage !== 'failed') lastStage = p.stage; // a stopped run's query may say 'failed'
    for (; printed < p.completed.length; printed++) stageLine(p.completed[printed]);
    if (!running) break;
    if (p.stage === 'search' && p.searchWorkflowId) {
      const s = await withDeadline(client, queryTimeout, () => client.workflow.getHandle(p.searchWorkflowId!).query<SearchProgress>('searchProgress')).catch(
        () => null,
      );
      const line = s ? searchLine(s) : '';
      if (line && line !== lastSearch) log(`${elapsed()}  … ${(lastSearch = line)}`);
    } else if (p.stage === 'final' && p.replicas?.length) {
      const line = `ensemble: training ${p.replicas.length} seed replica${p.replicas.length > 1 ? 's' : ''} of the best trial (${p.replicas.join(', ')})`;
      if (line !== lastFinal.line) log(`${elapsed()}  … ${(lastFinal = { line, at: Date.now() }).line}`);
    } else if (p.stage === 'final') {
      const f = (await opts.finalProgress?.().catch(() => null)) ?? finalFromHeartbeats(d, opts.finalEpochs ?? null);
      // no final training under way (training.final 'reuse', or the ensemble step): nothing to report
      if (!f) continue;
      const line = finalLine(f, opts.finalEpochs ?? null);
      // at most one line per 10 s (a final training has tens of epochs), but always its first and its last epoch
      const last = !!f && f.epochs !== null && f.epoch >= f.epochs;
      if (line !== lastFinal.line && (Date.now() - lastFinal.at >= 10_000 || last || !lastFinal.line)) {
        log(`${elapsed()}  … ${line}`);
        lastFinal = { line, at: Date.now() };
      }
    }
  }

  // a closed run no worker replays for the query: its stages from where they were recorded, if the caller knows
  if (!answered && opts.closedStages) {
    for (const c of await opts.closedStages().catch(() => [])) stageLine(c);
  }
  for (;;) {
    try {
      const out = (await handle.result()) as TrainPipelineOutput;
      link.ok();
      return out;
    } catch (err) {
      if (!link.failed(err)) throw notFound(err, handle) ?? stopped(err, handle, lastStage) ?? err;
      await sleep(link.backoff());
    }
  }
}

/** "search rung 2/3 (15 epochs): 2/6 trials done, running t004,t009; best t010 val ROC-AUC 0.8601" */
export function searchLine(s: SearchProgress): string {
  const rungs = s.rungs?.length ?? 1;
  const rungDone = s.rungDone ?? s.done;
  const rungTrials = s.rungTrials ?? s.total;
  const best = s.best && s.metric ? `; best ${s.best.trialId} ${formatSelection(s.metric, s.best.value)}` : s.bestValAuc !== null ? `; best val ROC-AUC ${s.bestValAuc.toFixed(4)}` : '';
  return (
    `search rung ${s.rung + 1}/${rungs} (${s.rungs?.[s.rung] ?? '?'} epochs): ${rungDone}/${rungTrials} trials done` +
    (s.failed ? ` (${s.failed} failed in rung 1)` : '') +
    `, running ${s.running.join(',') || '-'}${best}`
  );
}

/** "final training: epoch 12/40, val loss 0.2311, val ROC-AUC 0.8512" (or "starting, up to 40 epochs" before its first epoch) */
export function finalLine(f: FinalProgress | null, finalEpochs: number | null = null): string {
  const budget = f?.epochs ?? finalEpochs;
  if (!f || f.epoch === 0) return `final training: starting${budget ? `, up to ${budget} epochs` : ''}`;
  return (
    `final training: epoch ${f.epoch}${budget ? `/${budget}` : ''}` +
    (f.valLoss !== null ? `, val loss ${f.valLoss.toFixed(4)}` : '') +
    (f.valAuc !== null ? `, val ROC-AUC ${f.valAuc.toFixed(4)}` : '')
  );
}

/**
 * The final training's progress from its last heartbeat as the server holds it (activities/train.ts beats
 * `{ epoch, checkpoint, curve }` every epoch; the server sees them throttled, at most every 0.8 × heartbeat timeout).
 */
export function finalFromHeartbeats(d: Pick<WorkflowExecutionDescription, 'raw'>, epochs: number | null): FinalProgress | null {
  const pending = (d.raw.pendingActivities ?? []).filter((a) => a.activityType?.name === 'trainTrial');
  const payload = pending.at(-1)?.heartbeatDetails?.payloads?.[0];
  if (!pending.length) return null;
  if (!payload) return { epoch: 0, epochs, valLoss: null, valAuc: null };
  const details = decode(payload) as { epoch?: number; curve?: { valLoss?: number; valAuc?: number }[] } | null;
  if (!details || typeof details.epoch !== 'number') return { epoch: 0, epochs, valLoss: null, valAuc: null };
  const last = details.curve?.at(-1);
  return { epoch: details.epoch, epochs, valLoss: finite(last?.valLoss), valAuc: finite(last?.valAuc) };
}

const finite = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Heartbeat details as the default payload converter wrote them; anything else reads as "no details yet". */
function decode(payload: Parameters<typeof defaultPayloadConverter.fromPayload>[0]): unknown {
  try {
    return defaultPayloadConverter.fromPayload(payload);
  } catch {
    return null;
  }
}

/**
 * Whether an error means Temporal could not be reached (gRPC UNAVAILABLE, a refused or reset connection), as
 * opposed to an answer from the server (not found, a failed query, a failed workflow).
 */
export function isConnectionError(err: unknown): boolean {
  for (let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 6; e = e.cause as typeof e, depth++) {
    if (e.code === 14) return true; // gRPC UNAVAILABLE, what the client reports once its own retries are spent
    if (typeof e.code === 'string' && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND)$/.test(e.code)) return true;
    if (typeof e.message === 'string' && /\bUNAVAILABLE\b|ECONNREFUSED|ECONNRESET|Failed to connect|No connection established/.test(e.message)) return true;
  }
  return false;
}

/** The innermost message of an error chain, on one line: what the connection actually said. */
function rootMessage(err: unknown): string {
  let msg = String((err as Error)?.message ?? err);
  for (let e = (err as { cause?: unknown })?.cause, depth = 0; e && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    if (typeof (e as Error).message === 'string' && (e as Error).message) msg = (e as Error).message;
  }
  // grpc-js ends an unreachable server's message with an empty "Resolution note:"
  return msg.replace(/\s+/g, ' ').replace(/\.?\s*Resolution note:\s*$/, '').trim().slice(0, 300);
}

/** Says once that the connection was lost and once that it came back; spaces the retries in between. */
class ConnectionWatch {
  lost = false;
  private since = 0;
  private attempt = 0;

  constructor(
    private readonly address: string,
    private readonly log: (line: string) => void,
    private readonly maxBackoffMs: number,
  ) {}

  /** True when `err` is a lost connection (said once), false for any other error. */
  failed(err: unknown): boolean {
    if (!isConnectionError(err)) return false;
    if (!this.lost) {
      this.lost = true;
      this.since = Date.now();
      this.attempt = 0;
      this.log(`lost the connection to Temporal at ${this.address}: ${rootMessage(err)}; retrying (Ctrl-C stops following, not the run)`);
    }
    return true;
  }

  ok(): void {
    if (!this.lost) return;
    this.lost = false;
    this.log(`reconnected to Temporal at ${this.address} after ${Math.round((Date.now() - this.since) / 1000)} s; following again`);
  }

  backoff(): number {
    return Math.min(this.maxBackoffMs, 1000 * 2 ** this.attempt++);
  }
}

function temporalAddress(client: Client): string {
  return (client.connection as { options?: { address?: string } } | undefined)?.options?.address ?? 'its configured address';
}

/** A query with a deadline, so a closed run that no worker replays does not hold the follower. */
function withDeadline<T>(client: Client, ms: number, fn: () => Promise<T>): Promise<T> {
  const c = client.connection as { withDeadline?: (deadline: number, fn: () => Promise<T>) => Promise<T> } | undefined;
  return typeof c?.withDeadline === 'function' ? c.withDeadline(Date.now() + ms, fn) : fn();
}

/**
 * A followed run that someone cancelled or terminated (`propensity cancel`, the Web UI) ends with what happened, where,
 * and what to do next, instead of the client's "WorkflowFailedError: Workflow execution cancelled".
 */
export function stopped(err: unknown, handle: WorkflowHandle, stage: string | null): CliError | null {
  if ((err as Error)?.name !== 'WorkflowFailedError') return null;
  const cause = (err as { cause?: { name?: string } }).cause?.name;
  const how = cause === 'CancelledFailure' ? 'cancelled' : cause === 'TerminatedFailure' ? 'terminated' : null;
  if (!how) return null;
  const where = stage ? ` during its ${stage} step` : '';
  return new CliError(
    `run ${handle.workflowId} was ${how}${where}; \`propensity run resume ${handle.workflowId}\` starts its next run, which reuses the steps and search trials it completed`,
    ExitCode.error,
    how === 'cancelled' ? 'Cancelled' : 'Terminated',
  );
}

function notFound(err: unknown, handle: WorkflowHandle): CliError | null {
  if ((err as Error)?.name !== 'WorkflowNotFoundError') return null;
  return new CliError(
    `workflow ${handle.workflowId} was not found on Temporal (never started, or deleted after the namespace's retention period)`,
    ExitCode.notFound,
    'UnknownRun',
  );
}

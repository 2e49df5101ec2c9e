/**
 * `propensity cancel`: ends a run whatever state it is in. A cancellation request is the polite way (the workflow
 * stops its activities and records itself as cancelled); a run no worker ever picked up, or whose workflow task
 * keeps failing, never sees that request, so after a grace period it is terminated. Either way ml.pipeline_runs ends
 * up saying `cancelled`, with a row of its own for a run that never wrote one.
 */
import os from 'node:os';
import { WorkflowNotFoundError, type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { sql } from 'kysely';
import { configHash, parsePipelineConfig } from '../../pipeline/config.js';
import type { Db } from '../../db/client.js';
import { checkRunRef } from '../../pipeline/ids.js';
import { CliError, ExitCode } from '../common.js';

/** How a cancel ended: cleanly, by termination after the grace period, or the run closed on its own meanwhile. */
export type CancelOutcome = 'cancelled' | 'terminated' | 'finished';

export interface CancelRunResult {
  workflowId: string;
  runId: string;
  workflowType: string;
  outcome: CancelOutcome;
  /** Temporal's status once the command is done: CANCELLED, TERMINATED, or how the run finished on its own */
  temporalStatus: string;
  graceSeconds: number;
  /** seconds from the cancellation request until the run closed (or was terminated) */
  waitedSeconds: number;
  /** terminated at once, without the grace period: no worker ever picked the run up and none polls its queue */
  immediate: boolean;
  /** why the run did not honour the cancellation request (outcome terminated) */
  reason: string | null;
  /** what happened to ml.pipeline_runs: a row inserted (the run never wrote one), updated, or left alone */
  recorded: 'inserted' | 'updated' | null;
  message: string;
}

const OPEN = new Set(['RUNNING', 'PAUSED']);
const PIPELINE_TYPE = 'trainPipeline';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
}

/**
 * Finds the run an id names: a run id in ml.pipeline_runs, else the latest run of a workflow id on Temporal, else a
 * run id on Temporal (a run that never wrote a row). Postgres-only runs that Temporal no longer knows are UnknownRun.
 */
export async function resolveRun(db: Db, client: Client, id: string): Promise<{ workflowId: string; runId: string }> {
  checkRunRef(id);
  const byRunId = await db.db.selectFrom('ml.pipeline_runs').select(['workflow_id', 'run_id']).where('run_id', '=', id).executeTakeFirst();
  if (byRunId) return { workflowId: byRunId.workflow_id, runId: byRunId.run_id };
  try {
    const d = await client.workflow.getHandle(id).describe();
    return { workflowId: id, runId: d.runId };
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  // The id is checked against its pattern above, so it cannot break out of the quoted literal.
  for await (const e of client.workflow.list({ query: `RunId = '${id}'`, pageSize: 1 })) return { workflowId: e.workflowId, runId: e.runId };
  const row = await db.db
    .selectFrom('ml.pipeline_runs')
    .select(['workflow_id', 'run_id', 'status'])
    .where('workflow_id', '=', id)
    .orderBy('started_at', 'desc')
    .executeTakeFirst();
  if (row) {
    throw new CliError(
      `run ${row.run_id} of ${row.workflow_id} is not known to Temporal any more (status in Postgres: ${row.status}); nothing cancelled`,
      ExitCode.notFound,
      'UnknownRun',
    );
  }
  throw new CliError(
    `no run has run id or workflow id "${id}", neither in ml.pipeline_runs nor on the Temporal server (see \`propensity runs\`)`,
    ExitCode.notFound,
    'UnknownRun',
  );
}

/** Whether a worker ever started a workflow task of this run (it holds a WorkflowTaskStarted event). */
async function pickedUp(client: Client, d: WorkflowExecutionDescription): Promise<boolean> {
  const history = await client.workflow.getHandle(d.workflowId, d.runId).fetchHistory();
  return history.events?.some((e) => e.workflowTaskStartedEventAttributes) ?? false;
}

/** Whether a live worker polls the run's task queue for workflow tasks now (the rule `run`'s worker check uses). */
async function hasPollers(client: Client, taskQueue: string): Promise<boolean> {
  const { queuePollers, isLive } = await import('../../infra/pollers.js');
  return (await queuePollers(client.connection, client.options.namespace, taskQueue, 'workflow')).some((p) => isLive(p));
}

/** Why a run still open after the grace period did not act on the cancellation request. */
async function whyStuck(client: Client, d: WorkflowExecutionDescription): Promise<string> {
  const attempt = d.raw.pendingWorkflowTask?.attempt ?? 0;
  if (attempt > 1) return `its workflow task failed ${attempt - 1} time${attempt > 2 ? 's' : ''} in a row: a worker cannot run its workflow code`;
  if (!(await pickedUp(client, d))) return `no worker picked it up: nothing polls task queue ${d.taskQueue}`;
  return 'it did not stop in time: a worker is busy or an activity does not heartbeat';
}

/** The start input of a run, for a row it never wrote: its model name, config and trigger. */
async function startInput(client: Client, workflowId: string, runId: string): Promise<{ config: unknown; trigger?: string } | null> {
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (!payload) return null;
  try {
    const input = defaultPayloadConverter.fromPayload(payload as Parameters<typeof defaultPayloadConverter.fromPayload>[0]);
    return input && typeof input === 'object' ? (input as { config: unknown; trigger?: string }) : null;
  } catch {
    return null;
  }
}

/**
 * Marks the run cancelled in ml.pipeline_runs: its own row is updated (finished_at kept when set), and a run that
 * never wrote one gets a minimal row from its start input. Runs of other workflow types without a row are left alone.
 */
export async function recordCancelled(
  db: Db,
  client: Client,
  run: { workflowId: string; runId: string; workflowType: string; startTime: Date },
  error: { type: 'Cancelled' | 'Terminated'; message: string },
): Promise<'inserted' | 'updated' | null> {
  const exists = await db.db.selectFrom('ml.pipeline_runs').select('run_id').where('run_id', '=', run.runId).executeTakeFirst();
  const update = {
    status: 'cancelled' as const,
    finished_at: sql<Date>`coalesce(ml.pipeline_runs.finished_at, now())`,
    error_type: error.type,
    error_message: error.message,
  };
  if (!exists && run.workflowType !== PIPELINE_TYPE) return null;
  if (exists) {
    await db.db.updateTable('ml.pipeline_runs').set(update).where('run_id', '=', run.runId).execute();
    // a terminated run never ran its own finishRun, which closes what its lost attempts left running
    const { closeOpenRecords } = await import('../../activities/steps.js');
    await closeOpenRecords(db, run.runId, error.type === 'Terminated' ? 'terminated' : 'cancelled');
    return 'updated';
  }
  const input = await startInput(client, run.workflowId, run.runId);
  let modelName = String((input?.config as { modelName?: unknown } | null)?.modelName ?? 'propensity');
  let hash = 'invalid';
  let cutoff: string | null = null;
  let horizonDays: number | null = null;
  try {
    const config = parsePipelineConfig(input?.config ?? {});
    modelName = config.modelName;
    hash = configHash(config);
    if (config.source.kind === 'events') {
      cutoff = config.source.cutoff ?? null;
      horizonDays = config.source.horizonDays;
    }
  } catch {
    // an invalid config is kept as it was given; the run never validated it
  }
  // startRun may write its row at the same moment: whichever comes second updates instead of failing.
  const row = await db.db
    .insertInto('ml.pipeline_runs')
    .values({
      run_id: run.runId,
      workflow_id: run.workflowId,
      model_name: modelName,
      status: 'cancelled',
      trigger: input?.trigger ?? 'manual',
      cutoff: cutoff ? new Date(cutoff) : null,
      horizon_days: horizonDays,
      config: JSON.stringify(input?.config ?? null),
      config_hash: hash,
      // no code of ours ever ran for this run
      code_version: 'none',
      started_at: run.startTime,
      finished_at: new Date(),
      error_type: error.type,
      error_message: error.message,
    })
    .onConflict((oc) => oc.column('run_id').doUpdateSet(update))
    .returning(sql<boolean>`(xmax = 0)`.as('inserted'))
    .executeTakeFirstOrThrow();
  return row.inserted ? 'inserted' : 'updated';
}

/**
 * Requests cancellation of a run, waits up to `graceSeconds` for it to close, terminates it if it has not, and
 * records it as cancelled in ml.pipeline_runs.
 */
export async function cancelRun(db: Db, client: Client, id: string, opts: { graceSeconds: number; pollMs?: number }): Promise<CancelRunResult> {
  const { workflowId, runId } = await resolveRun(db, client, id);
  const handle = client.workflow.getHandle(workflowId, runId);
  let d = await handle.describe();
  if (!OPEN.has(d.status.name)) {
    const row = await db.db.selectFrom('ml.pipeline_runs').select('status').where('run_id', '=', runId).executeTakeFirst();
    throw new CliError(
      `run ${workflowId} (run ${runId}) is not running (Temporal: ${d.status.name}, Postgres: ${row?.status ?? 'no row'}); nothing cancelled`,
      ExitCode.conflict,
      'NotRunning',
    );
  }
  const requestedAt = new Date();
  await handle.cancel();
  // A run no worker ever picked up, on a queue nobody polls, can never see the request: waiting out the grace period
  // would only delay the same termination, so it is terminated at once.
  const unattended = !(await pickedUp(client, d)) && !(await hasPollers(client, d.taskQueue));
  const deadline = unattended ? requestedAt.getTime() : requestedAt.getTime() + opts.graceSeconds * 1000;
  while (OPEN.has(d.status.name) && Date.now() < deadline) {
    await sleep(Math.min(opts.pollMs ?? 500, Math.max(0, deadline - Date.now())));
    d = await handle.describe();
  }
  const by = `propensity cancel (${osUser()}) at ${requestedAt.toISOString()}`;
  let reason: string | null = null;
  let terminatedByUs = false;
  if (OPEN.has(d.status.name)) {
    reason = await whyStuck(client, d);
    try {
      await handle.terminate(
        unattended ? `cancelled by ${by}: terminated at once (${reason})` : `cancelled by ${by}: not closed ${opts.graceSeconds} s after the cancellation request (${reason})`,
      );
      terminatedByUs = true;
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err; // it closed just now: its own status stands
    }
    d = await handle.describe();
  }
  const waitedSeconds = Math.round((Date.now() - requestedAt.getTime()) / 100) / 10;
  const status = d.status.name;
  const run = { workflowId, runId, workflowType: d.type, startTime: d.startTime };
  const base = { workflowId, runId, workflowType: d.type, temporalStatus: status, graceSeconds: opts.graceSeconds, waitedSeconds, immediate: unattended };
  if (status === 'CANCELLED') {
    const message = `cancelled by ${by}: the workflow stopped cleanly ${waitedSeconds} s after the request`;
    const recorded = await recordCancelled(db, client, run, { type: 'Cancelled', message });
    return { ...base, outcome: 'cancelled', reason: null, recorded, message };
  }
  if (status === 'TERMINATED') {
    const message = terminatedByUs
      ? unattended
        ? `cancelled by ${by}: ${reason}, so it could never see the cancellation request and was terminated at once`
        : `cancelled by ${by}: the workflow did not close within the ${opts.graceSeconds} s grace period after the cancellation request (${reason}), so it was terminated`
      : `cancelled by ${by}: the workflow was terminated by someone else while the cancellation was pending`;
    const recorded = await recordCancelled(db, client, run, { type: 'Terminated', message });
    return { ...base, outcome: 'terminated', reason, recorded, message };
  }
  // COMPLETED, FAILED, TIMED_OUT, CONTINUED_AS_NEW: it ended on its own first and recorded its own status
  return {
    ...base,
    outcome: 'finished',
    reason: null,
    recorded: null,
    message: `the run closed on its own (Temporal: ${status}) before the cancellation took effect; its own record stands`,
  };
}

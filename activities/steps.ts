import type { BuildEnsembleOutput } from './ensemble.js';
import type { Info } from '@temporalio/activity';
import { sql } from 'kysely';
import type { Db } from '../db/client.js';
import type { CleanOutput } from './clean.js';
import type { IngestOutput } from './ingest.js';
import type { SplitOutput } from './split.js';
import type { EvaluateOutput } from './evaluate.js';
import type { RegisterOutput } from './register.js';
import type { TrainTrialInput, TrainTrialOutput } from './train.js';
import { errorType } from './errors.js';

/** Which step an activity execution is, and what of its output the step's row keeps (counts and metrics, no rows). */
export interface StepSpec {
  key: (input: never) => { step: string; trialId?: string; rung?: number };
  detail: (output: never) => unknown;
}

const spec = <I, O>(key: (input: I) => { step: string; trialId?: string; rung?: number }, detail: (output: O) => unknown): StepSpec =>
  ({ key, detail }) as unknown as StepSpec;

/**
 * The steps of a pipeline run, by activity type. The worker's interceptor records one ml.run_steps row per
 * execution of these — (run, step, trial, rung, attempt) — so every retry and every successive-halving promotion is
 * kept with its own timing. startRun records its own 'validate' row (it creates the run those rows belong to) and
 * the approval wait spans two activities, so both keep their rows themselves.
 */
export const STEPS: Record<string, StepSpec> = {
  ingestSource: spec<unknown, IngestOutput>(
    () => ({ step: 'ingest' }),
    (r) => ({ mode: r.mode, rows: r.rows, positives: r.positives, cutoff: r.cutoff, events: r.events, shards: r.raw.shards.length }),
  ),
  cleanData: spec<unknown, CleanOutput>(
    () => ({ step: 'clean' }),
    (r) => ({ rowsIn: r.rowsIn, rowsOut: r.rowsOut, quarantined: r.quarantined, repaired: r.repaired, drift: r.drift, driftBaselineRunId: r.driftBaselineRunId }),
  ),
  splitData: spec<unknown, SplitOutput>(() => ({ step: 'split' }), (r) => ({ sizes: r.sizes, positiveRates: r.positiveRates, dataSha256: r.dataSha256 })),
  trainTrial: spec<TrainTrialInput, TrainTrialOutput>(
    (i) => (i.step === 'final' ? { step: 'final' } : { step: 'trial', trialId: i.trialId, rung: i.rung ?? 0 }),
    (r) => ({ status: r.status, valAuc: r.valAuc, epochs: r.epochs, resumedFromEpoch: r.resumedFromEpoch, backend: r.backend }),
  ),
  buildEnsemble: spec<unknown, BuildEnsembleOutput>(
    () => ({ step: 'ensemble' }),
    (r) => ({ members: r.members, val: r.val, single: r.single, gain: r.gain, encodings: r.encodings, seconds: r.seconds }),
  ),
  evaluateModel: spec<unknown, EvaluateOutput>(() => ({ step: 'evaluate' }), (r) => ({ metrics: r.metrics, blessed: r.blessed, reasons: r.reasons })),
  registerModel: spec<unknown, RegisterOutput>(() => ({ step: 'register' }), (r) => r),
};

export interface StepExecution {
  runId: string;
  step: string;
  trialId: string;
  rung: number;
  attempt: number;
  /** what of the output the row keeps */
  detail: (output: unknown) => unknown;
}

/** The execution an activity call is, or null when it is not a recorded step. */
export function stepExecution(info: Pick<Info, 'activityType' | 'attempt'>, input: unknown): StepExecution | null {
  const s = STEPS[info.activityType];
  const runId = (input as { runId?: unknown } | null)?.runId;
  if (!s || typeof runId !== 'string') return null;
  const k = s.key(input as never);
  return { runId, step: k.step, trialId: k.trialId ?? '', rung: k.rung ?? 0, attempt: info.attempt, detail: s.detail as (o: unknown) => unknown };
}

const where = (e: StepExecution) => ({ run_id: e.runId, step: e.step, trial_id: e.trialId, rung: e.rung, attempt: e.attempt });

/** Opens (or, for an in-process re-run after a transient fault, reopens) the execution's row. */
export async function recordStart(db: Db, e: StepExecution, worker: string | null, transientFaults: number): Promise<void> {
  const row = { ...where(e), status: 'running' as const, worker, started_at: new Date(), transient_faults: transientFaults, detail: null };
  await db.db
    .insertInto('ml.run_steps')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['run_id', 'step', 'trial_id', 'rung', 'attempt']).doUpdateSet({
        status: 'running', worker, transient_faults: transientFaults, finished_at: null, duration_ms: null, error_type: null, error_message: null,
      }),
    )
    .execute();
  // an earlier attempt still 'running' never finished: its worker died or was drained without reporting
  await db.db
    .updateTable('ml.run_steps')
    .set({
      status: 'failed', error_type: 'WorkerLost', finished_at: sql`now()`,
      error_message: `attempt ${e.attempt} started: this attempt's worker stopped (killed, drained or lost) before it reported`,
    })
    .where('run_id', '=', e.runId).where('step', '=', e.step).where('trial_id', '=', e.trialId).where('rung', '=', e.rung)
    .where('attempt', '<', e.attempt)
    .where('status', '=', 'running')
    .execute();
}

/** Closes the execution's row: succeeded with the step's detail, or failed with the typed failure. */
export async function recordEnd(db: Db, e: StepExecution, outcome: { output: unknown } | { failure: unknown }): Promise<void> {
  const values =
    'output' in outcome
      ? { status: 'succeeded' as const, detail: JSON.stringify(e.detail(outcome.output) ?? null) }
      : {
          status: 'failed' as const,
          error_type: errorType(outcome.failure),
          // the typed failure's message: for a Postgres error it is rebuilt without the cell values pg may quote
          error_message: ((outcome.failure as Error)?.message ?? String(outcome.failure)).slice(0, 4000),
        };
  let q = db.db
    .updateTable('ml.run_steps')
    .set({ ...values, finished_at: sql`now()`, duration_ms: sql`(extract(epoch from now() - started_at) * 1000)::int` });
  for (const [k, v] of Object.entries(where(e))) q = q.where(k as 'run_id', '=', v as string);
  await q.execute();
}

/**
 * Closes what a run left open when it ended (finishRun, or `propensity cancel` for a run that could not record its
 * own end): an execution in ml.run_steps and a trial in ml.trials still 'running' belong to an attempt whose worker
 * was lost (killed, drained, or out of attempts before it reported) or that the run stopped waiting for (an approval,
 * say). They become 'failed' with error type `RunEnded`, so no record of an ended run says running. An attempt that
 * still finishes afterwards writes its own outcome over this one; `run resume` may continue an interrupted trial from
 * its last checkpoint.
 */
export async function closeOpenRecords(db: Db, runId: string, ended: string): Promise<{ steps: number; trials: number }> {
  const message = `the run ended (${ended}) with this still running: no outcome was reported to it (its worker stopped, or the run stopped waiting)`;
  const [steps, trials] = await Promise.all([
    db.db
      .updateTable('ml.run_steps')
      .set({ status: 'failed', error_type: 'RunEnded', error_message: message, finished_at: sql`now()`, duration_ms: sql`(extract(epoch from now() - started_at) * 1000)::int` })
      .where('run_id', '=', runId)
      .where('status', '=', 'running')
      .executeTakeFirst(),
    db.db
      .updateTable('ml.trials')
      .set({ status: 'failed', error: `RunEnded: ${message}`, stop_reason: 'failed', finished_at: sql`now()`, duration_ms: sql`(extract(epoch from now() - started_at) * 1000)::int` })
      .where('run_id', '=', runId)
      .where('status', '=', 'running')
      .executeTakeFirst(),
  ]);
  return { steps: Number(steps.numUpdatedRows), trials: Number(trials.numUpdatedRows) };
}

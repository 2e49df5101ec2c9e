import { Context } from '@temporalio/activity';
import { sql } from 'kysely';
import type { ActivityDeps } from './deps.js';
import { errorType, toFailure } from './errors.js';

export interface StepKey {
  runId: string;
  step: string;
  trialId?: string;
}

function attemptInfo(): { attempt: number; worker: string | null } {
  try {
    const info = Context.current().info;
    return { attempt: info.attempt, worker: info.taskQueue };
  } catch {
    return { attempt: 1, worker: null }; // called outside an activity (unit tests of the plain functions)
  }
}

/**
 * Records a step in ml.run_steps around `fn`: running → succeeded | failed, with timing and attempt.
 * Upserts on (run_id, step, trial_id), so a retried attempt updates the same row instead of adding one.
 */
export async function recordStep<T>(
  { db }: Pick<ActivityDeps, 'db'>,
  key: StepKey,
  fn: () => Promise<T>,
  detail: (result: T) => unknown = () => null,
): Promise<T> {
  const { attempt, worker } = attemptInfo();
  const started = new Date();
  const row = { run_id: key.runId, step: key.step, trial_id: key.trialId ?? '' };
  await db.db
    .insertInto('ml.run_steps')
    .values({ ...row, status: 'running', attempt, worker, started_at: started, detail: null })
    .onConflict((oc) =>
      oc.columns(['run_id', 'step', 'trial_id']).doUpdateSet({
        status: 'running',
        attempt,
        worker,
        started_at: started,
        finished_at: null,
        duration_ms: null,
        error_type: null,
        error_message: null,
      }),
    )
    .execute();
  const finish = (values: Record<string, unknown>) =>
    db.db
      .updateTable('ml.run_steps')
      .set({ finished_at: sql`now()`, duration_ms: Date.now() - started.getTime(), ...values })
      .where('run_id', '=', row.run_id)
      .where('step', '=', row.step)
      .where('trial_id', '=', row.trial_id)
      .execute();
  try {
    const result = await fn();
    await finish({ status: 'succeeded', detail: JSON.stringify(detail(result) ?? null) });
    return result;
  } catch (err) {
    const failure = toFailure(err);
    await finish({
      status: 'failed',
      error_type: errorType(failure),
      // the typed failure's message: for a Postgres error it is rebuilt without the cell values pg may quote
      error_message: ((failure as Error)?.message ?? String(err)).slice(0, 4000),
    }).catch(() => {}); // the original error matters more than a failed bookkeeping write
    throw failure;
  }
}

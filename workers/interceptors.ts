import { Context } from '@temporalio/activity';
import type { ActivityInboundCallsInterceptor, ActivityInterceptorsFactory } from '@temporalio/worker';
import { isTransient, toFailure } from '../activities/errors.js';
import { keepAlive } from '../activities/heartbeat.js';
import { recordEnd, recordStart, stepExecution } from '../activities/steps.js';
import type { Db } from '../db/client.js';
import { keepAliveMs, TRANSIENT } from '../pipeline/retry.js';

export interface ResilienceOptions {
  /** where step executions are recorded (ml.run_steps); without it nothing is recorded (unit tests) */
  db?: Db;
  /** how long one attempt retries transient faults (default TRANSIENT.windowMs) */
  windowMs?: number;
  /** the keep-alive interval (default: keepAliveMs of the activity's own heartbeat timeout) */
  heartbeatMs?: number;
}

/**
 * The one place where every activity execution is made resilient and typed (see pipeline/retry.ts):
 * - it heartbeats every few seconds (re-sending the step's own last details), so a dead worker's step moves to
 *   another worker within the heartbeat timeout;
 * - a transient infrastructure fault (Postgres restarting, S3 unreachable, a reset connection) re-runs the step
 *   in-process with backoff for up to 15 minutes, without spending a Temporal attempt; steps are idempotent on
 *   (run, step, trial), so a re-run writes the same keys and rows;
 * - every other error leaves typed: domain errors as non-retryable ApplicationFailures, the rest as they are;
 * - every execution of a pipeline step gets its own ml.run_steps row (run, step, trial, rung, attempt), opened before
 *   and closed after, with the step's detail or its typed failure (activities/steps.ts).
 */
export function resilientActivities(opts: ResilienceOptions = {}): ActivityInterceptorsFactory {
  const windowMs = opts.windowMs ?? TRANSIENT.windowMs;
  return (ctx: Context): { inbound: ActivityInboundCallsInterceptor } => ({
    inbound: {
      async execute(input, next) {
        const stop = keepAlive(opts.heartbeatMs ?? keepAliveMs(ctx.info.heartbeatTimeoutMs));
        const deadline = Date.now() + windowMs;
        const execution = opts.db ? stepExecution(ctx.info, input.args[0]) : null;
        let delay: number = TRANSIENT.initialDelayMs;
        let faults = 0;
        const wait = async () => {
          // Context.sleep throws CancelledFailure when the run is cancelled or the worker shuts down
          await ctx.sleep(delay);
          delay = Math.min(delay * TRANSIENT.backoff, TRANSIENT.maxDelayMs);
        };
        // bookkeeping writes ride out a Postgres outage in place, without re-running the step they describe
        const book = async (write: () => Promise<void>) => {
          for (;;) {
            try {
              return await write();
            } catch (err) {
              if (!isTransient(err) || Date.now() + delay > deadline) throw err;
              await wait();
            }
          }
        };
        try {
          for (;;) {
            try {
              if (execution) await book(() => recordStart(opts.db!, execution, ctx.info.taskQueue, faults));
              const output = await next(input);
              if (execution) await book(() => recordEnd(opts.db!, execution, { output }));
              return output;
            } catch (err) {
              const transient = isTransient(err);
              const failure = toFailure(err);
              if (!transient || ctx.cancellationSignal.aborted || Date.now() + delay > deadline) {
                if (faults > 0 && transient) {
                  ctx.log.warn('transient fault outlasted the retry window; failing this attempt', { faults, error: describe(err) });
                }
                if (execution) await recordEnd(opts.db!, execution, { failure }).catch(() => undefined);
                throw failure;
              }
              faults++;
              ctx.log.warn('transient fault; retrying the step in-process', { fault: faults, delayMs: delay, error: describe(err) });
              await wait();
            }
          }
        } finally {
          stop();
        }
      },
    },
  });
}

function describe(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  return [e?.name, e?.code, e?.message?.slice(0, 300)].filter(Boolean).join(': ');
}

/** Worker options shared by every worker that runs our activities (production and tests alike). */
export const activityInterceptors = (opts?: ResilienceOptions) => ({ activity: [resilientActivities(opts)] });

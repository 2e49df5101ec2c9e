import { Context } from '@temporalio/activity';
import { sql } from 'kysely';
import { applyAsOf } from '../pipeline/as-of.js';
import { configHash, parsePipelineConfig, type PipelineConfig } from '../pipeline/config.js';
import type { ActivityDeps } from './deps.js';
import { PipelineError, toFailure } from './errors.js';

export interface StartRunInput {
  runId: string;
  workflowId: string;
  config: unknown;
  trigger?: string;
  /** the run's as-of time (a scheduled run's scheduled time): see applyAsOf */
  asOf?: string;
}
export interface StartRunOutput {
  config: PipelineConfig;
  configHash: string;
  codeVersion: string;
}

export interface FinishRunInput {
  runId: string;
  status: 'registered' | 'rejected' | 'failed' | 'cancelled';
  modelVersion?: number;
  metrics?: Record<string, number>;
  error?: { type: string; message: string };
}

/** The run's own row in ml.pipeline_runs: opened (with the validated config) at the start, closed at the end. */
export function createRunActivities(deps: ActivityDeps) {
  const { db } = deps;
  return {
    /** Validates the config and opens the run's row; an invalid config is recorded, then fails the run for good. */
    async startRun(input: StartRunInput): Promise<StartRunOutput> {
      const started = new Date();
      let config: PipelineConfig | undefined;
      let failure: PipelineError | undefined;
      try {
        // The as-of cutoff goes into the config itself, so ingest uses it and ml.pipeline_runs (cutoff, config hash) shows it.
        config = applyAsOf(parsePipelineConfig(input.config), input.asOf);
      } catch (err) {
        if (!(err instanceof PipelineError)) throw err;
        failure = err;
      }
      const modelName =
        config?.modelName ?? String((input.config as { modelName?: unknown } | null)?.modelName ?? 'unknown');
      await db.db
        .insertInto('ml.pipeline_runs')
        .values({
          run_id: input.runId,
          workflow_id: input.workflowId,
          model_name: modelName,
          status: failure ? 'failed' : 'running',
          trigger: input.trigger ?? 'manual',
          horizon_days: config?.source.kind === 'events' ? config.source.horizonDays : null,
          cutoff: config?.source.kind === 'events' ? config.source.cutoff ?? null : null,
          config: JSON.stringify(config ?? input.config ?? null),
          config_hash: config ? configHash(config) : 'invalid',
          code_version: deps.codeVersion,
          finished_at: failure ? new Date() : null,
          error_type: failure?.type ?? null,
          error_message: failure?.message ?? null,
        })
        .onConflict((oc) => oc.column('run_id').doNothing())
        .execute();
      // The validation is a step like the others: analysts see it (and its failure) in ml.run_steps.
      const step = {
        run_id: input.runId,
        step: 'validate',
        trial_id: '',
        status: failure ? ('failed' as const) : ('succeeded' as const),
        attempt: Context.current().info.attempt,
        worker: Context.current().info.taskQueue,
        started_at: started,
        finished_at: new Date(),
        duration_ms: Date.now() - started.getTime(),
        detail: JSON.stringify(config ? { configHash: configHash(config), modelName } : null),
        error_type: failure?.type ?? null,
        error_message: failure?.message ?? null,
      };
      await db.db
        .insertInto('ml.run_steps')
        .values(step)
        .onConflict((oc) => oc.columns(['run_id', 'step', 'trial_id', 'rung', 'attempt']).doUpdateSet(step))
        .execute();
      if (failure) throw toFailure(failure);
      return { config: config!, configHash: configHash(config!), codeVersion: deps.codeVersion };
    },

    async finishRun(input: FinishRunInput): Promise<void> {
      await db.db
        .updateTable('ml.pipeline_runs')
        .set({
          status: input.status,
          finished_at: sql`coalesce(finished_at, now())`,
          model_version: input.modelVersion ?? null,
          metrics: input.metrics ? JSON.stringify(input.metrics) : null,
          error_type: input.error?.type ?? null,
          error_message: input.error?.message.slice(0, 4000) ?? null,
        })
        .where('run_id', '=', input.runId)
        .execute();
    },
  };
}

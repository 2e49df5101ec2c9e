import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import { applyAsOf } from '../pipeline/as-of.js';
import { configHash, parsePipelineConfig, type PipelineConfig } from '../pipeline/config.js';
import { changedSections, describeUpstreamChanges, reusedTrialLabel, stepsRead, upstreamChanges, type ReusableStep, type ReusedTrial } from '../pipeline/resume.js';
import { s3Uri } from '../store/artifacts.js';
import { REPLICA_ID_SUFFIX } from '../workflows/inputs.js';
import type { ActivityDeps } from './deps.js';
import { PipelineError, toFailure } from './errors.js';
import { closeOpenRecords } from './steps.js';

export interface StartRunInput {
  runId: string;
  workflowId: string;
  config: unknown;
  trigger?: string;
  /** the run's as-of time (a scheduled run's scheduled time): see applyAsOf */
  asOf?: string;
  /** a resumed run: the failed run and the steps taken from it (their outputs are in the workflow's input) */
  resume?: {
    fromRunId: string;
    fromWorkflowId: string;
    steps: ReusableStep[];
    /** trials taken one by one from a step the failed run did not complete (its search or its ensemble step) */
    trials?: ReusedTrial[];
  };
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

/** The data-quality stages and trials each reused step recorded under the failed run. */
const REPLICA = sql`trial_id ~ ${REPLICA_ID_SUFFIX}`;
const REUSED_RECORDS: Record<ReusableStep, { stages: string[]; trials: ReturnType<typeof sql> | null }> = {
  ingest: { stages: ['events'], trials: null },
  clean: { stages: ['clean'], trials: null },
  split: { stages: ['split'], trials: null },
  // the search's trials and the baseline
  search: { stages: [], trials: sql`(trial_id <> 'final' and not ${REPLICA})` },
  final: { stages: [], trials: sql`trial_id = 'final'` },
  // the ensemble's seed replicas
  ensemble: { stages: [], trials: REPLICA },
};

/** The run's own row in ml.pipeline_runs: opened (with the validated config) at the start, closed at the end. */
export function createRunActivities(deps: ActivityDeps) {
  const { db } = deps;

  /**
   * A resumed run may change only the config sections its reused steps do not read (the CLI checks the same before
   * it starts the run; this holds for any other starter too): an InputsChanged failure names each one that did.
   */
  async function resumeProblem(resume: NonNullable<StartRunInput['resume']>, config: PipelineConfig): Promise<ApplicationFailure | undefined> {
    const inputsChanged = (message: string) => ApplicationFailure.create({ type: 'InputsChanged', message, nonRetryable: true });
    const from = await db.db.selectFrom('ml.pipeline_runs').select(['config']).where('run_id', '=', resume.fromRunId).executeTakeFirst();
    if (!from) return inputsChanged(`run ${resume.fromRunId}, which this run resumes, is not in ml.pipeline_runs`);
    const changes = upstreamChanges(stepsRead(resume.steps, resume.trials ?? []), changedSections(from.config as Record<string, unknown>, config as unknown as Record<string, unknown>));
    return changes.length ? inputsChanged(`cannot resume run ${resume.fromRunId}: ${describeUpstreamChanges(changes)}`) : undefined;
  }

  /**
   * The records the reused steps wrote under the failed run — data-quality profiles (the next run's drift baseline
   * and the model card read them) and the trials the model was chosen from — are copied to this run, so per-run
   * views, \`run show\` and the card see them. Executions (ml.run_steps) are not copied: this run did not execute them.
   */
  async function copyReusedRecords(trx: Transaction<Database>, resume: NonNullable<StartRunInput['resume']>, runId: string): Promise<void> {
    const stages = resume.steps.flatMap((s) => REUSED_RECORDS[s].stages);
    const taken = resume.trials ?? [];
    const trials = [
      ...resume.steps.map((s) => REUSED_RECORDS[s].trials).filter((t) => t !== null),
      // trials taken one by one from a search or an ensemble step that did not complete
      ...(taken.length ? [sql`trial_id in (${sql.join(taken.map((t) => t.trialId))})`] : []),
    ];
    const copy = async (table: 'data_quality' | 'trials', where: ReturnType<typeof sql>) => {
      const columns = (
        await sql<{ column_name: string }>`select column_name from information_schema.columns where table_schema = 'ml' and table_name = ${table} and column_name <> 'run_id' order by ordinal_position`.execute(trx)
      ).rows.map((r) => sql.ref(r.column_name));
      await sql`insert into ${sql.table(`ml.${table}`)} (run_id, ${sql.join(columns)})
        select ${runId}, ${sql.join(columns)} from ${sql.table(`ml.${table}`)} where run_id = ${resume.fromRunId} and ${where}
        on conflict do nothing`.execute(trx);
    };
    if (stages.length) await copy('data_quality', sql`stage in (${sql.join(stages)})`);
    if (trials.length) await copy('trials', sql`(${sql.join(trials, sql` or `)})`);
    // A search trial whose next rung was training when the failed run stopped: its row goes back to the rung taken
    // (that rung's budget, metrics, model, start epoch and seconds, its curve up to that rung's last epoch); the new
    // run's search trains the next rung again and updates the row as it goes. Its started_at, finished_at, host and
    // pool still name the interrupted execution until then.
    for (const t of taken) {
      // An interrupted trial continues in its rung from its checkpoint at epoch `through`: its row keeps that rung,
      // shows the curve up to there (the failed run may have recorded an epoch past its last checkpoint), and no
      // outcome: it says interrupted until this run's search starts it (and stays so if this run ends first).
      // A seed replica (no rung) continues the same way, from its checkpoint.
      if (t.through !== undefined) {
        const note = `interrupted in run ${resume.fromRunId} after epoch ${t.through}; run ${runId} continues it from that checkpoint`;
        await sql`update ml.trials set epochs_run = ${t.through}, status = 'failed', error = ${note}, stop_reason = null,
            val_auc = null, val_pr_auc = null, val_log_loss = null, best_epoch = null, model_uri = null,
            started_at = now(), finished_at = null, duration_ms = null,
            curve = coalesce((select jsonb_agg(p order by (p->>'epoch')::int) from jsonb_array_elements(curve) p where (p->>'epoch')::int <= ${t.through}), '[]'::jsonb)
          where run_id = ${runId} and trial_id = ${t.trialId} and rung = ${t.rung ?? 0}`.execute(trx);
        continue;
      }
      if (t.rung === undefined || !t.result) continue;
      const r = t.result;
      // results recorded before these fields existed leave the row's own values
      const model = r.model === undefined ? sql`model_uri` : r.model ? sql`${s3Uri(r.model.bucket, r.model.key)}` : sql`null`;
      const from = r.resumedFromEpoch === undefined ? sql`resumed_from_epoch` : sql`${r.resumedFromEpoch}`;
      const ms = r.seconds === undefined ? sql`duration_ms` : sql`${Math.round(r.seconds * 1000)}`;
      await sql`update ml.trials set rung = ${t.rung}, budget_epochs = ${r.budget}, epochs_run = ${r.epochs}, status = 'completed', error = null,
          val_auc = ${r.valAuc}, val_pr_auc = ${r.valPrAuc}, val_log_loss = ${r.valLogLoss}, best_epoch = ${r.bestEpoch}, stop_reason = ${r.stopReason},
          model_uri = ${model}, resumed_from_epoch = ${from}, duration_ms = ${ms},
          curve = coalesce((select jsonb_agg(p order by (p->>'epoch')::int) from jsonb_array_elements(curve) p where (p->>'epoch')::int <= ${r.epochs}), '[]'::jsonb)
        where run_id = ${runId} and trial_id = ${t.trialId} and rung > ${t.rung}`.execute(trx);
    }
  }

  return {
    /** Validates the config and opens the run's row; an invalid config is recorded, then fails the run for good. */
    async startRun(input: StartRunInput): Promise<StartRunOutput> {
      const started = new Date();
      let config: PipelineConfig | undefined;
      let failure: PipelineError | ApplicationFailure | undefined;
      try {
        // The as-of cutoff goes into the config itself, so ingest uses it and ml.pipeline_runs (cutoff, config hash) shows it.
        config = applyAsOf(parsePipelineConfig(input.config), input.asOf);
      } catch (err) {
        if (!(err instanceof PipelineError)) throw err;
        failure = err;
      }
      const modelName =
        config?.modelName ?? String((input.config as { modelName?: unknown } | null)?.modelName ?? 'unknown');
      if (config && input.resume) failure = await resumeProblem(input.resume, config);
      // one transaction: a resumed run's row and the records it takes over from the failed run appear together
      await db.db.transaction().execute(async (trx) => {
        await trx
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
            resumed_from_run_id: input.resume?.fromRunId ?? null,
            reused_steps: input.resume ? input.resume.steps : null,
            reused_trials: input.resume?.trials?.map(reusedTrialLabel) ?? null,
          })
          .onConflict((oc) => oc.column('run_id').doNothing())
          .execute();
        if (input.resume && !failure) await copyReusedRecords(trx, input.resume, input.runId);
      });
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
        detail: JSON.stringify(config ? { configHash: configHash(config), modelName, ...(input.resume && { resumedFrom: input.resume }) } : null),
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
      await closeOpenRecords(db, input.runId, input.status);
    },
  };
}

import type { Client, WorkflowHandle } from '@temporalio/client';
import { Option, type Command } from 'commander';
import type { Db } from '../../db/client.js';
import type { SelectionMetric } from '../../ml/search.js';
import type { PipelineConfig } from '../../pipeline/config.js';
import type { Services } from '../../workers/deps.js';
import type { TrainPipelineOutput, trainPipeline } from '../../workflows/pipeline.js';
import { CliError, ExitCode, idParser, output, taskQueuesFromEnv, withDb, withServices, withTemporal } from '../common.js';
import type { FinalProgress, FollowOptions } from '../follow.js';
import { table } from '../table.js';
import { registerResumeCommand } from './resume.js';

// Light at the top (README, "A fast CLI"): the Temporal SDK, the config schema, S3 and the follower load inside the
// actions that use them, so `runs` and `run show` never pay for what `run` needs.

const RUN_STATUSES = ['running', 'awaiting_approval', 'registered', 'rejected', 'failed', 'cancelled'] as const;

/** A run is named by its Temporal run id or its workflow id (then the latest run of that workflow). */
export async function findRun(db: Db, id: string) {
  const row = await db.db
    .selectFrom('ml.pipeline_runs')
    .selectAll()
    .where((eb) => eb.or([eb('run_id', '=', id), eb('workflow_id', '=', id)]))
    .orderBy('started_at', 'desc')
    .executeTakeFirst();
  if (!row) throw new CliError(`no pipeline run has run id or workflow id "${id}" (see \`propensity runs\`)`, ExitCode.notFound, 'UnknownRun');
  return row;
}

const seconds = (from: Date, to: Date | null) => Math.round(((to ?? new Date()).getTime() - from.getTime()) / 1000);
const num = (v: unknown, digits = 4) => (typeof v === 'number' ? v.toFixed(digits) : '-');

/** What a finished run prints, and its exit code: 0 registered, 3 finished without a registered model. */
function finish(out: TrainPipelineOutput, json: boolean | undefined): void {
  output(json, out, () =>
    out.status === 'registered'
      ? `registered: ${out.modelName} v${out.modelVersion} (test ROC-AUC ${out.metrics.testAuc.toFixed(4)}) at ${out.modelUri}`
      : `${out.status}: ${out.modelName} test ROC-AUC ${out.metrics.testAuc.toFixed(4)}: ${out.gate.reasons.join('; ') || '-'}`,
  );
  process.exitCode = out.status === 'registered' ? ExitCode.ok : ExitCode.notRegistered;
}

/**
 * The follower's view of a run from Postgres: the final training's epochs from ml.trials (written every epoch,
 * fresher than its heartbeats, which reach the server throttled) and a closed run's stages from ml.run_steps.
 */
function followOptions(db: Db, runId: string, finalEpochs: number | undefined): FollowOptions {
  return {
    finalEpochs,
    async finalProgress(): Promise<FinalProgress | null> {
      const t = await db.db
        .selectFrom('ml.trials')
        .select(['epochs_run', 'budget_epochs', 'curve'])
        .where('run_id', '=', runId)
        .where('trial_id', '=', 'final')
        .executeTakeFirst();
      if (!t) return null;
      const last = ((t.curve ?? []) as { epoch: number; valLoss?: number; valAuc?: number }[]).at(-1);
      const finite = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
      return { epoch: last?.epoch ?? t.epochs_run ?? 0, epochs: t.budget_epochs ?? finalEpochs ?? null, valLoss: finite(last?.valLoss), valAuc: finite(last?.valAuc) };
    },
    async closedStages() {
      const steps = await db.db
        .selectFrom('ml.run_steps')
        .select(['step', 'trial_id', 'duration_ms'])
        .where('run_id', '=', runId)
        .where('status', '=', 'succeeded')
        .orderBy('started_at')
        .execute();
      const stages = new Map<string, { executions: number; trials: Set<string>; ms: number }>();
      for (const st of steps) {
        const stage = st.step === 'trial' ? 'search' : st.step;
        const g = stages.get(stage) ?? { executions: 0, trials: new Set<string>(), ms: 0 };
        g.executions++;
        if (st.trial_id) g.trials.add(st.trial_id);
        g.ms += st.duration_ms ?? 0;
        stages.set(stage, g);
      }
      return [...stages].map(([stage, g]) => ({
        stage,
        detail: (g.trials.size ? `${g.trials.size} trials, ${g.executions} executions, ` : '') + `${(g.ms / 1000).toFixed(1)} s (ml.run_steps)`,
      }));
    },
  };
}

async function startRun(s: Services, client: Client, file: string | undefined, o: { detach?: boolean; json?: boolean; id?: string }) {
  const [{ loadConfigFile }, { parsePipelineConfig }, { TASK_QUEUES }] = await Promise.all([
    import('../config-file.js'),
    import('../../pipeline/config.js'),
    import('../../workflows/constants.js'),
  ]);
  const { raw, config } = file ? loadConfigFile(file) : { raw: {}, config: parsePipelineConfig({}) };
  const stamp = new Date().toISOString();
  const workflowId = o.id ?? `train-${config.modelName}-${stamp.slice(0, 10)}-${stamp.slice(11, 19).replaceAll(':', '')}`;
  const queues = taskQueuesFromEnv();
  const custom = queues.cpu !== TASK_QUEUES.cpu || queues.train !== TASK_QUEUES.train;
  // no run that no worker would pick up: fail now, naming the missing worker (cli/preflight.ts)
  const { pipelineNeeds, requireWorkers } = await import('../preflight.js');
  await requireWorkers(client, pipelineNeeds(queues, config.training.pool));
  const handle = await client.workflow.start<typeof trainPipeline>('trainPipeline', {
    taskQueue: queues.cpu,
    workflowId,
    // the default pair is left implicit, so the history of a default run stays as small as before
    args: [{ config: raw, trigger: 'cli', ...(custom ? { taskQueues: queues } : {}) }],
  });
  if (o.detach) {
    output(o.json, { workflowId, runId: handle.firstExecutionRunId }, () => `started ${workflowId} (run ${handle.firstExecutionRunId})`);
    return;
  }
  if (!o.json) console.log(`started ${workflowId} (run ${handle.firstExecutionRunId}); Ctrl-C stops following, not the run`);
  const { followPipeline } = await import('../follow.js');
  const out = await followPipeline(client, handle, o.json ? () => {} : console.log, followOptions(s.db, handle.firstExecutionRunId, config.training.finalEpochs));
  finish(out, o.json);
}

/**
 * The workflow of a run named by run id or workflow id: its ml.pipeline_runs row when it has one, else Temporal
 * (a run no worker has picked up has no row yet). Unknown to both: UnknownRun, exit code 4.
 */
async function locateRun(db: Db, client: Client, id: string): Promise<{ workflowId: string; runId: string; config: PipelineConfig | null }> {
  const row = await findRun(db, id).catch((err: unknown) => {
    if (err instanceof CliError && err.type === 'UnknownRun') return null;
    throw err;
  });
  if (row) return { workflowId: row.workflow_id, runId: row.run_id, config: row.config as PipelineConfig | null };
  const { WorkflowNotFoundError } = await import('@temporalio/client');
  try {
    const d = await client.workflow.getHandle(id).describe();
    return { workflowId: d.workflowId, runId: d.runId, config: null };
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  for await (const w of client.workflow.list({ query: `RunId = '${id}'` })) return { workflowId: w.workflowId, runId: w.runId, config: null };
  throw new CliError(`no pipeline run has run id or workflow id "${id}" (see \`propensity runs\`)`, ExitCode.notFound, 'UnknownRun');
}

/** Follows a run, running or finished, to its result: its stages, search rungs and final epochs, then its outcome. */
async function watchRun(s: Services, client: Client, id: string, o: { json?: boolean }) {
  const run = await locateRun(s.db, client, id);
  const handle: WorkflowHandle = client.workflow.getHandle(run.workflowId, run.runId);
  if (!o.json) console.log(`following ${run.workflowId} (run ${run.runId}); Ctrl-C stops following, not the run`);
  const { followPipeline } = await import('../follow.js');
  const out = await followPipeline(client, handle, o.json ? () => {} : console.log, followOptions(s.db, run.runId, run.config?.training?.finalEpochs));
  finish(out, o.json);
}

/** The model card of an evaluated run: its registered version's card when it has one, else the run's own (rejected runs too). */
async function saveRunCard(s: Services, r: { run_id: string; model_name: string; model_version: number | null }, file: string): Promise<{ file: string; key: string } | null> {
  const [{ modelCardKeys }, { writeFileSync }, path] = await Promise.all([import('../../report/model-card.js'), import('node:fs'), import('node:path')]);
  const candidates = [...(r.model_version ? [modelCardKeys.model(r.model_name, r.model_version).html] : []), modelCardKeys.run(r.run_id).html];
  for (const key of candidates) {
    if (await s.store.exists(key)) {
      const out = path.resolve(file);
      writeFileSync(out, await s.store.getKey(key));
      return { file: out, key };
    }
  }
  return null;
}

type StepRow = { step: string; trial_id: string; rung: number; attempt: number; status: string; duration_ms: number | null; error_type: string | null; error_message: string | null; transient_faults: number };
type TrialRow = { trial_id: string; family: string | null; status: string; val_auc: number | null; val_pr_auc: number | null; val_log_loss: number | null; rung: number | null; epochs_run: number | null; pool: string | null; host: string | null };

/** Every execution of every step: retries, promotions to later rungs, in-process re-runs after faults. */
function stepsTable(steps: StepRow[]): string[] {
  return table(
    ['step', 'trial', { header: 'rung', align: 'right' }, { header: 'attempt', align: 'right' }, 'status', { header: 'seconds', align: 'right' }, { header: 'note', maxWidth: 90 }],
    steps.map((st) => [
      st.step,
      st.trial_id || '',
      st.rung,
      st.attempt,
      st.status,
      st.duration_ms === null ? '-' : (st.duration_ms / 1000).toFixed(1),
      st.error_type ? `${st.error_type}: ${st.error_message ?? ''}` : st.transient_faults ? `${st.transient_faults} transient fault(s) ridden out` : '',
    ]),
    { indent: '  ' },
  );
}

/** Trials ranked by the run's own selection rule, the best ten. */
function trialsTable(trials: TrialRow[], metric: SelectionMetric): string[] {
  const value = (t: TrialRow) => (metric === 'valAuc' ? t.val_auc : metric === 'valPrAuc' ? t.val_pr_auc : t.val_log_loss);
  const ranked = [...trials].sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    if (va === null || vb === null) return va === null ? (vb === null ? 0 : 1) : -1;
    return metric === 'valLogLoss' ? va - vb : vb - va;
  });
  return [
    ...table(
      ['trial', 'family', 'status', { header: 'val AUC', align: 'right' }, { header: 'val log loss', align: 'right' }, { header: 'rung', align: 'right' }, { header: 'epochs', align: 'right' }, 'pool', 'host'],
      ranked.slice(0, 10).map((t) => [t.trial_id, t.family, t.status, num(t.val_auc), num(t.val_log_loss), t.rung, t.epochs_run, t.pool, t.host]),
      { indent: '  ' },
    ),
    ...(trials.length > 10 ? [`  … ${trials.length - 10} more (ml.trials)`] : []),
  ];
}

/** Every gate check, passed ones too, with its numbers or the rows each comparison used. */
function gateTable(checks: unknown, comparisons: unknown): string[] {
  const rows: string[][] = [];
  for (const c of (checks ?? []) as { metric: string; op: string; threshold: number; value: number; passed: boolean }[]) {
    rows.push([c.passed ? '✓' : '✗', `threshold ${c.metric} ${c.op} ${c.threshold}`, num(c.value)]);
  }
  for (const c of (comparisons ?? []) as { check: string; status?: string; passed: boolean; informational?: boolean; detail: string }[]) {
    rows.push([c.status === 'skipped' ? '–' : c.passed ? '✓' : '✗', `${c.check}${c.informational ? ' (not gating)' : ''}`, c.detail]);
  }
  return rows.length ? table(['', 'gate check', { header: 'result', maxWidth: 100 }], rows, { indent: '    ' }) : [];
}

/** "no running runs", "no runs of model m awaiting approval": what was asked for, not "no runs yet". */
function noRuns(o: { model?: string; status?: string }): string {
  if (!o.model && !o.status) return 'no runs yet';
  const status = o.status === 'awaiting_approval' ? null : o.status;
  return (
    `no ${status ? `${status} ` : ''}runs` +
    (o.model ? ` of model ${o.model}` : '') +
    (o.status === 'awaiting_approval' ? ' awaiting approval' : '') +
    ' (`propensity runs` lists every run)'
  );
}

export function registerRunsCommands(program: Command): void {
  const run = program
    .command('run')
    .description('start a pipeline run from a config file (JSON or YAML) and follow it stage by stage; refused at once (NoWorkers, exit 6) when no worker polls the queues it needs (`propensity dev up` starts them)')
    .option('--config <file>', 'pipeline config (.json, .yaml or .yml); omitted keys take their defaults')
    .option('--id <workflowId>', 'workflow id (default train-<model>-<date>-<time>)', idParser('workflowId'))
    .option('--detach', 'start and print the workflow id without following')
    .option('--json', 'print the result as one JSON line')
    .action((o) => withTemporal((s, client) => startRun(s, client, o.config, o)));
  registerResumeCommand(run);

  run
    .command('watch')
    .description('follow a run, running or finished, by run id or workflow id: its stages, search rungs and final training, then its result; exit code as `run`')
    .argument('<id>', 'run id or workflow id (the latest run of that workflow)', idParser('runRef'))
    .option('--json', 'print only the result, as one JSON line')
    .action((id: string, o: { json?: boolean }) => withTemporal((s, client) => watchRun(s, client, id, o)));

  run
    .command('show')
    .description('one run: status, timings per step, trials, data quality, every gate check (passed ones too), model version')
    .argument('<id>', 'run id or workflow id', idParser('runRef'))
    .option('--json', 'print as one JSON object')
    .option('--card <file>', "save the run's HTML model card to this file (any evaluated run, rejected ones too)")
    .action((id: string, o: { json?: boolean; card?: string }) =>
      // Postgres alone for a finished run; Temporal only for a live one's progress, S3 only for --card
      withDb(async (db) => {
        const r = await findRun(db, id);
        const [steps, trials, evaluation, quality, { selectionRule }] = await Promise.all([
          db.db.selectFrom('ml.run_steps').selectAll().where('run_id', '=', r.run_id).orderBy('started_at').execute(),
          db.db
            .selectFrom('ml.trials')
            .select(['trial_id', 'status', 'val_auc', 'val_pr_auc', 'val_log_loss', 'epochs_run', 'rung', 'attempt', 'backend', 'family', 'pool', 'host'])
            .where('run_id', '=', r.run_id)
            .execute(),
          db.db.selectFrom('ml.evaluations').selectAll().where('run_id', '=', r.run_id).executeTakeFirst(),
          db.db.selectFrom('ml.data_quality').select(['stage', 'rows_in', 'rows_out', 'quarantined']).where('run_id', '=', r.run_id).execute(),
          import('../../ml/search.js'),
        ]);
        let live: unknown = null;
        if (r.status === 'running' || (r.status as string) === 'awaiting_approval') {
          // a run no worker polls for would hold the query: a few seconds, then show what Postgres has
          live = await withTemporal((_s, client) =>
            client.connection.withDeadline(Date.now() + 5000, () => client.workflow.getHandle(r.workflow_id, r.run_id).query('progress')),
          ).catch(() => null);
        }
        const card = o.card ? await withServices((services) => saveRunCard(services, r, o.card!)) : null;
        const value = { run: r, steps, trials, evaluation: evaluation ?? null, quality, progress: live, ...(o.card ? { cardFile: card?.file ?? null } : {}) };
        output(o.json, value, () => {
          const lines = [
            `${r.workflow_id} (run ${r.run_id})`,
            `  model ${r.model_name}  status ${r.status}${r.model_version ? `  version v${r.model_version}` : ''}  trigger ${r.trigger}`,
            `  started ${r.started_at.toISOString()}  ${r.finished_at ? `finished after ${seconds(r.started_at, r.finished_at)} s` : `running for ${seconds(r.started_at, null)} s`}`,
            `  cutoff ${r.cutoff?.toISOString() ?? '-'}  horizon ${r.horizon_days ?? '-'} days  config ${r.config_hash}  code ${r.code_version}`,
          ];
          if (r.error_type) lines.push(`  ${r.error_type}: ${r.error_message}`);
          if (r.resumed_from_run_id) {
            // a trial labelled t003@2:7 or t010-s2:5 was interrupted: this run continued it from that epoch's checkpoint
            const continued = (r.reused_trials ?? []).filter((t) => /:\d+$/.test(t));
            lines.push(
              `  resumed from run ${r.resumed_from_run_id}: reused ${r.reused_steps?.join(', ') || 'nothing'}${r.reused_trials?.length ? ` and trials ${r.reused_trials.join(', ')}` : ''} (not executed again` +
                (continued.length ? `; the interrupted ${continued.join(', ')} trained on from the checkpoint of the epoch after ':'` : '') +
                ')',
            );
          }
          lines.push('', ...stepsTable(steps));
          if (quality.length) {
            lines.push('', '  data quality: ' + quality.map((q) => `${q.stage} ${q.rows_out}/${q.rows_in}`).join(', '));
          }
          if (trials.length) {
            const metric = ((r.config as { search?: { metric?: SelectionMetric } } | null)?.search?.metric ?? 'valLogLoss') as SelectionMetric;
            lines.push('', `  ${selectionRule(metric)}`, ...trialsTable(trials, metric));
          }
          if (evaluation) {
            const m = evaluation.metrics as Record<string, unknown>;
            lines.push('', `  test ROC-AUC ${num(m.rocAuc)}  PR-AUC ${num(m.prAuc)}  log loss ${num(m.logLoss)}  ${evaluation.blessed ? 'blessed' : 'NOT blessed'}`);
            lines.push(...gateTable(evaluation.checks, evaluation.comparisons));
          }
          if (o.card) {
            lines.push(
              '',
              card
                ? `  model card written to ${card.file} (from ${card.key})`
                : `  no model card exists for run ${r.run_id}: ${evaluation ? 'it was evaluated before model cards were written' : 'it was never evaluated'}`,
            );
          }
          return lines;
        });
        if (o.card && !card) process.exitCode = ExitCode.notFound;
      }),
    );

  program
    .command('runs')
    .description('recent pipeline runs, newest first')
    .option('--model <name>', 'only this model', idParser('modelName'))
    .addOption(new Option('--status <status>', 'only runs with this status').choices([...RUN_STATUSES]))
    .option('--limit <n>', 'how many', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new CliError(`--limit must be a positive integer, got "${v}"`, ExitCode.usage, 'Usage');
      return n;
    }, 20)
    .option('--json', 'print as one JSON array')
    .action((o: { model?: string; status?: (typeof RUN_STATUSES)[number]; limit: number; json?: boolean }) =>
      withDb(async (db) => {
        let q = db.db.selectFrom('ml.pipeline_runs').selectAll().orderBy('started_at', 'desc').limit(o.limit);
        if (o.model) q = q.where('model_name', '=', o.model);
        if (o.status) q = q.where('status', '=', o.status);
        const rows = await q.execute();
        output(o.json, rows, () =>
          rows.length === 0
            ? noRuns(o)
            : table(
                ['workflow id', 'model', 'status', 'version', { header: 'test AUC', align: 'right' }, { header: 'seconds', align: 'right' }, 'started'],
                rows.map((r) => [
                  r.workflow_id,
                  r.model_name,
                  r.status + (r.error_type ? ` (${r.error_type})` : ''),
                  r.model_version ? `v${r.model_version}` : '-',
                  num((r.metrics as Record<string, unknown> | null)?.testAuc),
                  seconds(r.started_at, r.finished_at),
                  r.started_at.toISOString(),
                ]),
              ),
        );
      }),
    );

  program
    .command('cancel')
    .description(
      'end a pipeline run: request cancellation (in-flight training stops at its next heartbeat), wait up to --grace seconds for it to close, ' +
        'terminate it if it has not (a run no worker picked up, or whose workflow task keeps failing); ml.pipeline_runs records it as cancelled either way',
    )
    .argument('<id>', 'run id or workflow id (the latest run of that workflow)', idParser('runRef'))
    .option('--grace <seconds>', 'how long to wait for a clean stop before terminating', (v: string) => {
      const n = Number(v);
      if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 86_400) {
        throw new CliError(`--grace must be a number of seconds from 0 to 86400, got "${v}"`, ExitCode.usage, 'InvalidArgument');
      }
      return n;
    }, 30)
    .option('--json', 'print the result as one JSON line')
    .action((id: string, o: { grace: number; json?: boolean }) =>
      withTemporal(async (s, client) => {
        if (!o.json) console.log(`cancelling ${id}: waiting up to ${o.grace} s for it to stop before terminating it`);
        const { cancelRun } = await import('./cancel.js');
        const r = await cancelRun(s.db, client, id, { graceSeconds: o.grace });
        output(o.json, r, () => {
          const head = `${r.workflowId} (run ${r.runId})`;
          const rec = r.recorded === 'inserted' ? 'a row recording it as cancelled was added to ml.pipeline_runs (the run had never written one)'
            : r.recorded === 'updated' ? 'ml.pipeline_runs records it as cancelled' : 'ml.pipeline_runs is unchanged';
          if (r.outcome === 'cancelled') return [`cancelled ${head} cleanly in ${r.waitedSeconds} s`, `  ${rec} (Cancelled)`];
          if (r.outcome === 'terminated') {
            if (r.immediate) return [`terminated ${head} at once, without waiting ${r.graceSeconds} s: ${r.reason}`, `  ${rec} (Terminated)`];
            return [`terminated ${head} after the ${r.graceSeconds} s grace period: ${r.reason ?? 'terminated by someone else meanwhile'}`, `  ${rec} (Terminated)`];
          }
          return `${head}: ${r.message}`;
        });
        if (r.outcome === 'finished') process.exitCode = ExitCode.conflict;
      }),
    );
}

import type { Client } from '@temporalio/client';
import { Option, type Command } from 'commander';
import { parsePipelineConfig } from '../../pipeline/config.js';
import type { Db } from '../../db/client.js';
import { TASK_QUEUES } from '../../workflows/constants.js';
import { trainPipeline } from '../../workflows/pipeline.js';
import { selectionRule, type SelectionMetric } from '../../ml/search.js';
import { CliError, ExitCode, idParser, output, taskQueuesFromEnv, withTemporal } from '../common.js';
import { cancelRun } from './cancel.js';
import { registerResumeCommand } from './resume.js';
import { loadConfigFile } from '../config-file.js';
import { followPipeline } from '../follow.js';

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
const pad = (s: unknown, n: number) => String(s ?? '-').padEnd(n);

async function startRun(client: Client, file: string | undefined, o: { detach?: boolean; json?: boolean; id?: string }) {
  const { raw, config } = file ? loadConfigFile(file) : { raw: {}, config: parsePipelineConfig({}) };
  const stamp = new Date().toISOString();
  const workflowId = o.id ?? `train-${config.modelName}-${stamp.slice(0, 10)}-${stamp.slice(11, 19).replaceAll(':', '')}`;
  const queues = taskQueuesFromEnv();
  const custom = queues.cpu !== TASK_QUEUES.cpu || queues.train !== TASK_QUEUES.train;
  const handle = await client.workflow.start(trainPipeline, {
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
  const out = await followPipeline(client, handle, o.json ? () => {} : console.log);
  output(o.json, out, () =>
    out.status === 'registered'
      ? `registered: ${out.modelName} v${out.modelVersion} (test ROC-AUC ${out.metrics.testAuc.toFixed(4)}) at ${out.modelUri}`
      : `rejected: ${out.modelName} test ROC-AUC ${out.metrics.testAuc.toFixed(4)}: ${out.gate.reasons.join('; ')}`,
  );
  process.exitCode = out.status === 'registered' ? ExitCode.ok : ExitCode.notRegistered;
}

export function registerRunsCommands(program: Command): void {
  const run = program
    .command('run')
    .description('start a pipeline run from a config file (JSON or YAML) and follow it stage by stage; workers must be running')
    .option('--config <file>', 'pipeline config (.json, .yaml or .yml); omitted keys take their defaults')
    .option('--id <workflowId>', 'workflow id (default train-<model>-<date>-<time>)', idParser('workflowId'))
    .option('--detach', 'start and print the workflow id without following')
    .option('--json', 'print the result as one JSON line')
    .action((o) => withTemporal((_s, client) => startRun(client, o.config, o)));
  registerResumeCommand(run);

  run
    .command('show')
    .description('one run: status, timings per step, trials, data quality, gate verdicts, model version')
    .argument('<id>', 'run id or workflow id', idParser('runRef'))
    .option('--json', 'print as one JSON object')
    .action((id: string, o) =>
      withTemporal(async (s, client) => {
        const r = await findRun(s.db, id);
        const [steps, trials, evaluation, quality] = await Promise.all([
          s.db.db.selectFrom('ml.run_steps').selectAll().where('run_id', '=', r.run_id).orderBy('started_at').execute(),
          s.db.db
            .selectFrom('ml.trials')
            .select(['trial_id', 'status', 'val_auc', 'val_pr_auc', 'val_log_loss', 'epochs_run', 'rung', 'attempt', 'backend', 'family'])
            .where('run_id', '=', r.run_id)
            .execute(),
          s.db.db.selectFrom('ml.evaluations').selectAll().where('run_id', '=', r.run_id).executeTakeFirst(),
          s.db.db.selectFrom('ml.data_quality').select(['stage', 'rows_in', 'rows_out', 'quarantined']).where('run_id', '=', r.run_id).execute(),
        ]);
        let live: unknown = null;
        if (r.status === 'running' || (r.status as string) === 'awaiting_approval') {
          live = await client.workflow.getHandle(r.workflow_id, r.run_id).query('progress').catch(() => null);
        }
        const value = { run: r, steps, trials, evaluation: evaluation ?? null, quality, progress: live };
        output(o.json, value, () => {
          const lines = [
            `${r.workflow_id} (run ${r.run_id})`,
            `  model ${r.model_name}  status ${r.status}${r.model_version ? `  version v${r.model_version}` : ''}  trigger ${r.trigger}`,
            `  started ${r.started_at.toISOString()}  ${r.finished_at ? `finished after ${seconds(r.started_at, r.finished_at)} s` : `running for ${seconds(r.started_at, null)} s`}`,
            `  cutoff ${r.cutoff?.toISOString() ?? '-'}  horizon ${r.horizon_days ?? '-'} days  config ${r.config_hash}  code ${r.code_version}`,
          ];
          if (r.error_type) lines.push(`  ${r.error_type}: ${r.error_message}`);
          if (r.resumed_from_run_id) lines.push(`  resumed from run ${r.resumed_from_run_id}: reused ${r.reused_steps?.join(', ') || 'nothing'} (not executed again)`);
          // every execution of every step: retries, promotions to later rungs, in-process re-runs after faults
          lines.push('', '  step          trial      rung  attempt  status     seconds  note');
          for (const st of steps) {
            const note = st.error_type ? `${st.error_type}: ${(st.error_message ?? '').slice(0, 80)}` : st.transient_faults ? `${st.transient_faults} transient fault(s) ridden out` : '';
            lines.push(
              `  ${pad(st.step, 13)} ${pad(st.trial_id || '', 10)} ${pad(st.rung, 5)} ${pad(st.attempt, 8)} ${pad(st.status, 10)} ` +
                `${pad(st.duration_ms === null ? '-' : (st.duration_ms / 1000).toFixed(1), 8)} ${note}`,
            );
          }
          if (quality.length) {
            lines.push('', '  data quality: ' + quality.map((q) => `${q.stage} ${q.rows_out}/${q.rows_in}`).join(', '));
          }
          if (trials.length) {
            // ranked by the run's own selection rule
            const metric = ((r.config as { search?: { metric?: SelectionMetric } } | null)?.search?.metric ?? 'valLogLoss') as SelectionMetric;
            const value = (t: (typeof trials)[number]) => (metric === 'valAuc' ? t.val_auc : metric === 'valPrAuc' ? t.val_pr_auc : t.val_log_loss);
            const ranked = [...trials].sort((a, b) => {
              const va = value(a);
              const vb = value(b);
              if (va === null || vb === null) return va === null ? (vb === null ? 0 : 1) : -1;
              return metric === 'valLogLoss' ? va - vb : vb - va;
            });
            lines.push('', `  ${selectionRule(metric)}`, '  trial      family    status     val AUC  val log loss  rung  epochs');
            for (const t of ranked.slice(0, 10)) {
              lines.push(`  ${pad(t.trial_id, 10)} ${pad(t.family ?? '-', 9)} ${pad(t.status, 10)} ${pad(num(t.val_auc), 8)} ${pad(num(t.val_log_loss), 13)} ${pad(t.rung, 5)} ${t.epochs_run ?? '-'}`);
            }
            if (trials.length > 10) lines.push(`  … ${trials.length - 10} more (ml.trials)`);
          }
          if (evaluation) {
            const m = evaluation.metrics as Record<string, unknown>;
            lines.push('', `  test ROC-AUC ${num(m.rocAuc)}  PR-AUC ${num(m.prAuc)}  log loss ${num(m.logLoss)}  ${evaluation.blessed ? 'blessed' : 'NOT blessed'}`);
            // every gate check, passed ones too, with the rows each comparison used
            for (const c of evaluation.checks as { metric: string; op: string; threshold: number; value: number; passed: boolean }[]) {
              lines.push(`    ${c.passed ? '✓' : '✗'} threshold ${c.metric} ${c.op} ${c.threshold}: ${num(c.value)}`);
            }
            for (const c of evaluation.comparisons as { check: string; status?: string; passed: boolean; informational?: boolean; detail: string }[]) {
              const mark = c.status === 'skipped' ? '–' : c.passed ? '✓' : '✗';
              lines.push(`    ${mark} ${c.check}${c.informational ? ' (not gating)' : ''}: ${c.detail}`);
            }
          }
          return lines;
        });
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
    .action((o) =>
      withTemporal(async (s) => {
        let q = s.db.db.selectFrom('ml.pipeline_runs').selectAll().orderBy('started_at', 'desc').limit(o.limit);
        if (o.model) q = q.where('model_name', '=', o.model);
        if (o.status) q = q.where('status', '=', o.status);
        const rows = await q.execute();
        output(o.json, rows, () =>
          rows.length === 0
            ? 'no runs yet'
            : [
                `${pad('workflow id', 44)} ${pad('model', 12)} ${pad('status', 18)} ${pad('version', 7)} ${pad('test AUC', 8)} ${pad('seconds', 7)} started`,
                ...rows.map((r) =>
                  `${pad(r.workflow_id, 44)} ${pad(r.model_name, 12)} ${pad(r.status + (r.error_type ? ` (${r.error_type})` : ''), 18)} ` +
                  `${pad(r.model_version ? `v${r.model_version}` : '-', 7)} ${pad(num((r.metrics as Record<string, unknown> | null)?.testAuc), 8)} ` +
                  `${pad(seconds(r.started_at, r.finished_at), 7)} ${r.started_at.toISOString()}`,
                ),
              ],
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
        const r = await cancelRun(s.db, client, id, { graceSeconds: o.grace });
        output(o.json, r, () => {
          const head = `${r.workflowId} (run ${r.runId})`;
          const rec = r.recorded === 'inserted' ? 'a row recording it as cancelled was added to ml.pipeline_runs (the run had never written one)'
            : r.recorded === 'updated' ? 'ml.pipeline_runs records it as cancelled' : 'ml.pipeline_runs is unchanged';
          if (r.outcome === 'cancelled') return [`cancelled ${head} cleanly in ${r.waitedSeconds} s`, `  ${rec} (Cancelled)`];
          if (r.outcome === 'terminated') {
            return [`terminated ${head} after the ${r.graceSeconds} s grace period: ${r.reason ?? 'terminated by someone else meanwhile'}`, `  ${rec} (Terminated)`];
          }
          return `${head}: ${r.message}`;
        });
        if (r.outcome === 'finished') process.exitCode = ExitCode.conflict;
      }),
    );
}

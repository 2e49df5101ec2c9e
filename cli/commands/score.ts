import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type Client, type WorkflowHandle, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { Services } from '../../workers/deps.js';
import { InvalidArgumentError, type Command } from 'commander';
import { parseModelRef, resolveModelRef } from '../../registry/refs.js';
import { TASK_QUEUES } from '../../workflows/constants.js';
import { scoreUsers, type ScoreProgress, type ScoreUsersOutput } from '../../workflows/score.js';
import { CliError, ExitCode, idParser, output, withTemporal } from '../common.js';
import { table } from '../table.js';

const int = (name: string, min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got "${v}"`);
  return n;
};

const NOT_FOUND_TYPES = new Set(['UnknownModel', 'UnknownVersion', 'UnknownAlias']);

/** Waits for the result, printing the stage and chunk progress as it changes. */
async function follow(handle: WorkflowHandle<typeof scoreUsers>, log: (line: string) => void): Promise<ScoreUsersOutput> {
  const result = handle.result();
  let done = false;
  result.then(
    () => (done = true),
    () => (done = true),
  );
  let last = '';
  while (!done) {
    await new Promise((r) => setTimeout(r, 1000));
    if (done) break;
    const p = await handle.query<ScoreProgress>('scoreProgress').catch(() => null);
    const line = p
      ? `${p.stage}` + (p.rows !== null ? `: ${p.rows} rows` : '') + (p.chunks ? `, ${p.chunksDone}/${p.chunks} chunks scored` : '')
      : '';
    if (line && line !== last) log(`  … ${(last = line)}`);
  }
  return result;
}

export function registerScoreCommands(program: Command): void {
  program
    .command('score')
    .description(
      'score every active user with a registered model and write ml.scores (workflow scoreUsers on the cpu workers, ' +
        'refused at once, NoWorkers, when none polls); rerunning a score run id replaces its rows',
    )
    .requiredOption('--model <ref>', 'the model: <name> (its champion), <name>@<alias> or <name>:<version>', (v: string) => (parseModelRef(v), v))
    .option('--as-of <iso>', 'the point in time scored: features from events before it (default: now)')
    .option('--active-days <n>', 'active users have a valid event in the N days before --as-of', int('--active-days', 1, 365), 30)
    .option('--chunk-rows <n>', 'rows per scoring activity', int('--chunk-rows', 100, 1_000_000), 50_000)
    .option('--id <scoreRunId>', 'score run id = workflow id (default score-<model>-<yyyy-mm-dd of --as-of or today>)', idParser('workflowId'))
    .option('--detach', 'start and print the score run id without waiting')
    .option('--json', 'print the result as one JSON line')
    .action((o) =>
      withTemporal(async (s, client) => {
        const out = await startScoring(s, client, { model: o.model, asOf: o.asOf, activeDays: o.activeDays, chunkRows: o.chunkRows, id: o.id, detach: o.detach, json: o.json });
        if (!out) return;
        output(o.json, out, () => [
          `scored ${out.rows} ${out.mode === 'events' ? 'active users' : 'rows'} with ${out.modelName} v${out.modelVersion}` +
            (out.asOf ? ` as of ${out.asOf} (active in the last ${out.activeDays} days)` : ' (table mode)') +
            ` in ${out.chunks} chunks: ml.scores where score_run_id = '${out.scoreRunId}'`,
          ...table(
            ['decile', 'rows', 'min p', 'max p', 'mean p'].map((header) => ({ header, align: 'right' as const })),
            out.deciles.map((d) => [d.decile, d.rows, d.minProbability.toFixed(4), d.maxProbability.toFixed(4), d.meanProbability.toFixed(4)]),
          ),
        ]);
      }),
    );
}

export interface StartScoringOptions {
  model: string;
  asOf?: string;
  activeDays?: number;
  chunkRows?: number;
  id?: string;
  detach?: boolean;
  json?: boolean;
}

/**
 * Starts scoreUsers for a model reference and waits for it (unless detached): the one way the CLI scores, used by
 * `score` and by `promote|rollback --score`. Returns null when detached. A failure throws a CliError with the cause.
 */
export async function startScoring(s: Services, client: Client, o: StartScoringOptions): Promise<ScoreUsersOutput | null> {
  const activeDays = o.activeDays ?? 30;
  const chunkRows = o.chunkRows ?? 50_000;
  let asOf: string | undefined;
  if (o.asOf !== undefined) {
    const t = new Date(o.asOf);
    if (!/^\d{4}-\d{2}-\d{2}/.test(o.asOf) || Number.isNaN(t.getTime())) {
      throw new CliError(`--as-of "${o.asOf}" is not an ISO date or date-time (e.g. 2026-11-23 or 2026-11-23T06:00:00Z)`, ExitCode.usage, 'InvalidArgument');
    }
    if (t.getTime() > Date.now()) throw new CliError(`--as-of ${t.toISOString()} is in the future: scoring uses events before it`, ExitCode.usage, 'InvalidArgument');
    asOf = t.toISOString();
  }
  // Resolved here first, so a bad reference fails with its message before any workflow starts (nothing changes).
  const ref = parseModelRef(o.model);
  const resolved = await resolveModelRef(s.db.db, ref);
  const scoreRunId: string = o.id ?? `score-${ref.modelName}-${(asOf ?? new Date().toISOString()).slice(0, 10)}`;
  // The queue the cpu workers poll (PROPENSITY_CPU_QUEUE, as for `propensity worker`).
  const cpu = process.env.PROPENSITY_CPU_QUEUE || TASK_QUEUES.cpu;
  const { requireWorkers, scoringNeeds } = await import('../preflight.js');
  await requireWorkers(client, scoringNeeds(cpu));
  let handle: WorkflowHandleWithFirstExecutionRunId<typeof scoreUsers>;
  try {
    handle = await client.workflow.start(scoreUsers, {
      taskQueue: cpu,
      workflowId: scoreRunId,
      // a finished score run may be run again: it replaces its rows
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      args: [{ model: o.model, asOf, activeDays, chunkRows, trigger: 'cli', taskQueues: { cpu } }],
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new CliError(`score run ${scoreRunId} is already running; wait for it or pass another --id`, ExitCode.conflict, 'AlreadyRunning');
    }
    throw err;
  }
  if (o.detach) {
    output(o.json, { scoreRunId, runId: handle.firstExecutionRunId, modelName: resolved.modelName, modelVersion: resolved.version }, () =>
      `started score run ${scoreRunId} (run ${handle.firstExecutionRunId}) with ${resolved.modelName} v${resolved.version}`,
    );
    return null;
  }
  if (!o.json) console.log(`started score run ${scoreRunId} with ${resolved.modelName} v${resolved.version}; Ctrl-C stops waiting, not the run`);
  try {
    return await follow(handle, o.json ? () => {} : console.log);
  } catch (err) {
    if (err instanceof WorkflowFailedError) {
      const cause = err.cause as { type?: string; message?: string } | undefined;
      const type = cause?.type ?? 'ScoreRunFailed';
      throw new CliError(`score run ${scoreRunId} failed: ${cause?.message ?? err.message}`, NOT_FOUND_TYPES.has(type) ? ExitCode.notFound : ExitCode.error, type);
    }
    throw err;
  }
}

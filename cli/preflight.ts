import type { Client } from '@temporalio/client';
import { DEFAULT_POOL, TASK_QUEUES, trainQueueFor } from '../workflows/constants.js';
import { CliError, ExitCode } from './common.js';

// "No silent waits": before `run`, `score`, `schedule trigger` or `schedule backfill` starts anything, each task
// queue it needs must have a live poller, else the command fails at once naming the missing worker and how to start
// one. Without this, a run started with no worker waits on its queue forever while the CLI says nothing.

export interface QueueNeed {
  queue: string;
  kind: 'workflow' | 'activity';
  /** the worker that serves it: `propensity worker --kind <worker>` */
  worker: 'cpu' | 'train';
  /** what it runs, for the message */
  role: string;
  /** how a worker for it is started: the variables that point `propensity worker` at this queue */
  env: Record<string, string>;
}

/**
 * The pipeline: its workflow and data activities on the cpu queue, trials and final training on its training pool's
 * queue (`training.pool`: the train queue itself for the default pool, `<train queue>-<pool>` for another).
 */
export function pipelineNeeds(queues: { cpu: string; train: string }, pool: string = DEFAULT_POOL): QueueNeed[] {
  const cpuEnv: Record<string, string> = queues.cpu !== TASK_QUEUES.cpu ? { PROPENSITY_CPU_QUEUE: queues.cpu } : {};
  const trainEnv: Record<string, string> = {
    ...(queues.train !== TASK_QUEUES.train ? { PROPENSITY_TRAIN_QUEUE: queues.train } : {}),
    ...(pool !== DEFAULT_POOL ? { PROPENSITY_TRAIN_POOL: pool } : {}),
  };
  const training = pool === DEFAULT_POOL ? 'the trials and the final training' : `the trials and the final training of pool ${pool}`;
  return [
    { queue: queues.cpu, kind: 'workflow', worker: 'cpu', role: 'the pipeline workflow', env: cpuEnv },
    { queue: queues.cpu, kind: 'activity', worker: 'cpu', role: 'ingest, clean, split, evaluate, register', env: cpuEnv },
    { queue: trainQueueFor(pool, queues.train), kind: 'activity', worker: 'train', role: training, env: trainEnv },
  ];
}

/** Scoring: its workflow and its chunk activities, all on the cpu queue. */
export function scoringNeeds(cpu: string): QueueNeed[] {
  const env: Record<string, string> = cpu !== TASK_QUEUES.cpu ? { PROPENSITY_CPU_QUEUE: cpu } : {};
  return [
    { queue: cpu, kind: 'workflow', worker: 'cpu', role: 'the scoring workflow', env },
    { queue: cpu, kind: 'activity', worker: 'cpu', role: 'the scoring activities', env },
  ];
}

/**
 * Fails with NoWorkers (ExitCode.noWorkers) unless every need has a live poller. PROPENSITY_REQUIRE_WORKERS=false
 * skips the check, for worker pools that scale up from zero on their backlog.
 */
export async function requireWorkers(client: Client, needs: QueueNeed[]): Promise<void> {
  const skip = process.env.PROPENSITY_REQUIRE_WORKERS?.trim().toLowerCase();
  if (skip === 'false' || skip === '0' || skip === 'no') return;
  const { queuePollers, isLive } = await import('../infra/pollers.js');
  const missing: QueueNeed[] = [];
  for (const need of needs) {
    const pollers = await queuePollers(client.connection, client.options.namespace, need.queue, need.kind);
    if (!pollers.some((p) => isLive(p))) missing.push(need);
  }
  if (!missing.length) return;
  const lines = missing.map((m) => `no ${m.worker} worker polls task queue ${m.queue} for ${m.kind} tasks (${m.role})`);
  const byQueue = [...new Map(missing.map((m) => [m.queue, m])).values()];
  const how = byQueue
    .map((m) => `\`${Object.entries(m.env).map(([k, v]) => `${k}=${v} `).join('')}npx propensity worker --kind ${m.worker}\``)
    .join(' and ');
  // the dev stack's workers poll the standard queues (the default pool), and only with its own Temporal
  const custom = missing.some((m) => Object.keys(m.env).length) || !!process.env.TEMPORAL_ADDRESS?.trim();
  const devUp = custom ? '' : 'start the dev stack\'s workers with `npx propensity dev up` (`dev status` shows them), or run ';
  throw new CliError(
    `${lines.join('; ')}: nothing was started. To fix it, ${devUp || 'run '}${how}`,
    ExitCode.noWorkers,
    'NoWorkers',
  );
}

/** A schedule's runs need the workers of the queues its action names (set at `schedule create`). */
export async function requireScheduleWorkers(client: Client, scheduleId: string): Promise<void> {
  const { describeSchedule } = await import('../schedules/schedules.js');
  // an unknown schedule fails here with its own error (UnknownSchedule, exit code 4), before any worker is asked about
  const view = await describeSchedule(client, scheduleId);
  const cpu = view.taskQueues?.cpu ?? view.taskQueue ?? TASK_QUEUES.cpu;
  // its runs train on the pool its config names
  const input = (await client.schedule.getHandle(scheduleId).describe()).action.args?.[0] as { config?: { training?: { pool?: string } } } | undefined;
  await requireWorkers(client, pipelineNeeds({ cpu, train: view.taskQueues?.train ?? TASK_QUEUES.train }, input?.config?.training?.pool ?? DEFAULT_POOL));
}

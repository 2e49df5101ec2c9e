import type { Client } from '@temporalio/client';
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
}

/** The pipeline: its workflow and data activities on the cpu queue, trials and final training on the train queue. */
export const pipelineNeeds = (queues: { cpu: string; train: string }): QueueNeed[] => [
  { queue: queues.cpu, kind: 'workflow', worker: 'cpu', role: 'the pipeline workflow' },
  { queue: queues.cpu, kind: 'activity', worker: 'cpu', role: 'ingest, clean, split, evaluate, register' },
  { queue: queues.train, kind: 'activity', worker: 'train', role: 'the trials and the final training' },
];

/** Scoring: its workflow and its chunk activities, all on the cpu queue. */
export const scoringNeeds = (cpu: string): QueueNeed[] => [
  { queue: cpu, kind: 'workflow', worker: 'cpu', role: 'the scoring workflow' },
  { queue: cpu, kind: 'activity', worker: 'cpu', role: 'the scoring activities' },
];

/**
 * Fails with NoWorkers (ExitCode.noWorkers) unless every need has a live poller. PROPENSITY_REQUIRE_WORKERS=false
 * skips the check, for worker pools that scale up from zero on their backlog.
 */
export async function requireWorkers(client: Client, needs: QueueNeed[]): Promise<void> {
  const skip = process.env.PROPENSITY_REQUIRE_WORKERS?.trim().toLowerCase();
  if (skip === 'false' || skip === '0' || skip === 'no') return;
  const [{ queuePollers, isLive }, { TASK_QUEUES }] = await Promise.all([import('../infra/pollers.js'), import('../workflows/constants.js')]);
  const missing: QueueNeed[] = [];
  for (const need of needs) {
    const pollers = await queuePollers(client.connection, client.options.namespace, need.queue, need.kind);
    if (!pollers.some((p) => isLive(p))) missing.push(need);
  }
  if (!missing.length) return;
  const lines = missing.map((m) => `no ${m.worker} worker polls task queue ${m.queue} for ${m.kind} tasks (${m.role})`);
  const workers = [...new Set(missing.map((m) => m.worker))];
  const custom = missing.some((m) => m.queue !== TASK_QUEUES[m.worker]);
  const how = workers
    .map((w) => {
      const queue = missing.find((m) => m.worker === w)!.queue;
      const variable = w === 'cpu' ? 'PROPENSITY_CPU_QUEUE' : 'PROPENSITY_TRAIN_QUEUE';
      return `\`${queue !== TASK_QUEUES[w] ? `${variable}=${queue} ` : ''}npx propensity worker --kind ${w}\``;
    })
    .join(' and ');
  const devUp = custom ? '' : 'start the dev stack\'s workers with `npx propensity dev up` (`dev status` shows them), or run ';
  throw new CliError(
    `${lines.join('; ')}: nothing was started. To fix it, ${devUp || 'run '}${how}`,
    ExitCode.noWorkers,
    'NoWorkers',
  );
}

/** A schedule's runs need the workers of the queues its action names (set at `schedule create`). */
export async function requireScheduleWorkers(client: Client, scheduleId: string): Promise<void> {
  const [{ describeSchedule }, { TASK_QUEUES }] = await Promise.all([import('../schedules/schedules.js'), import('../workflows/constants.js')]);
  // an unknown schedule fails here with its own error (UnknownSchedule, exit code 4), before any worker is asked about
  const view = await describeSchedule(client, scheduleId);
  const cpu = view.taskQueues?.cpu ?? view.taskQueue ?? TASK_QUEUES.cpu;
  await requireWorkers(client, pipelineNeeds({ cpu, train: view.taskQueues?.train ?? TASK_QUEUES.train }));
}

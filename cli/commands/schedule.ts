import type { CalendarSpec, Client } from '@temporalio/client';
import { Option, type Command } from 'commander';
import {
  backfillSchedule,
  createSchedule,
  deleteSchedule,
  describeSchedule,
  listSchedules,
  OVERLAP_POLICIES,
  parseOverlap,
  parseWindow,
  pauseSchedule,
  ScheduleError,
  ScheduleErrorType,
  triggerSchedule,
  unpauseSchedule,
  type ScheduleView,
} from '../../schedules/schedules.js';
import { TASK_QUEUES } from '../../workflows/constants.js';
import type { Services } from '../../workers/deps.js';
import { CliError, ExitCode, idParser, output, withTemporal } from '../common.js';
import { loadConfigFile } from '../config-file.js';
import { table } from '../table.js';

const EXIT: Record<string, number> = {
  [ScheduleErrorType.InvalidSchedule]: ExitCode.usage,
  [ScheduleErrorType.InvalidConfig]: ExitCode.usage,
  [ScheduleErrorType.ScheduleExists]: ExitCode.conflict,
  [ScheduleErrorType.UnknownSchedule]: ExitCode.notFound,
};

/** Runs a schedule command with a Temporal client; schedule errors become one line and their exit code. */
function withSchedules<T>(fn: (s: Services, client: Client) => Promise<T>): Promise<T> {
  return withTemporal(async (s, client) => {
    try {
      return await fn(s, client);
    } catch (err) {
      if (err instanceof ScheduleError) throw new CliError(err.message, EXIT[err.type] ?? ExitCode.error, err.type);
      throw err;
    }
  });
}

const overlapOption = (description: string) =>
  new Option('--overlap <policy>', description).choices(OVERLAP_POLICIES.map((p) => p.toLowerCase()));
const collect = (v: string, prev: string[]) => [...prev, v];
const usage = (message: string) => new CliError(message, ExitCode.usage, ScheduleErrorType.InvalidSchedule);

function parseCalendar(text: string): CalendarSpec {
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as CalendarSpec;
  } catch {
    // fall through to the message below
  }
  throw usage(`--calendar '${text}' must be a JSON object such as '{"hour": 2, "minute": 0, "dayOfWeek": "MONDAY"}'`);
}

function parseTime(flag: string, text: string): Date {
  const t = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(t.getTime())) throw usage(`${flag} "${text}" is not an ISO date-time (e.g. 2026-11-01T00:00:00Z)`);
  return t;
}

function describeLines(v: ScheduleView): string[] {
  const spec = [
    ...v.spec.cron.map((c) => `cron "${c}"`),
    ...(v.spec.calendars.length ? [`calendars ${JSON.stringify(v.spec.calendars)}`] : []),
  ].join(', ');
  const lines = [
    `schedule ${v.scheduleId}  model ${v.modelName ?? '-'}  ${v.state.paused ? 'PAUSED' : 'active'}${v.state.note ? ` (note: ${v.state.note})` : ''}`,
    `  spec       ${spec} in ${v.spec.timezone}`,
    `  policies   overlap ${v.policies.overlap}, catch-up window ${v.policies.catchupWindow}, pause on failure ${v.policies.pauseOnFailure ? 'yes' : 'no'}`,
    `  action     ${v.workflowType} on ${v.taskQueue}${v.taskQueues && v.taskQueues.train !== TASK_QUEUES.train ? ` (train queue ${v.taskQueues.train})` : ''}, workflow ids ${v.scheduleId}-<scheduled time>`,
    `  next       ${v.info.nextActionTimes.slice(0, 3).join(', ') || '-'}`,
    `  actions    ${v.info.numActionsTaken} taken, ${v.info.numActionsSkippedOverlap} skipped (overlap), ${v.info.numActionsMissedCatchupWindow} missed (catch-up window)`,
  ];
  for (const r of v.info.runningActions) lines.push(`  running    ${r.workflowId} (run ${r.runId})`);
  if (v.info.recentActions.length) {
    lines.push(
      '  recent runs (newest first):',
      ...table(
        ['scheduled for', 'workflow status', 'pipeline run', 'workflow id'],
        [...v.info.recentActions].reverse().map((a) => [
          a.scheduledAt,
          a.status,
          a.run ? `${a.run.status}${a.run.modelVersion ? ` v${a.run.modelVersion}` : ''}, cutoff ${a.run.cutoff ?? '-'}${a.run.errorType ? `, ${a.run.errorType}` : ''}` : '-',
          a.workflowId,
        ]),
        { indent: '    ' },
      ),
    );
  }
  return lines;
}

/** How long `schedule trigger` waits for the schedule to start (or skip) the run it asked for. */
const TRIGGER_WAIT_MS = 15_000;

interface ActionCounts {
  taken: number;
  skipped: number;
  seen: Set<string>;
  running: string[];
}

async function actionCounts(client: Client, id: string): Promise<ActionCounts> {
  const d = await client.schedule.getHandle(id).describe();
  return {
    taken: d.info.numActionsTaken,
    skipped: d.info.numActionsSkippedOverlap,
    seen: new Set(d.info.recentActions.map((a) => a.action.workflow.workflowId)),
    running: d.info.runningActions.map((a) => a.workflow.workflowId),
  };
}

/**
 * The run a trigger started: the schedule starts it asynchronously, so this watches its actions until one more has
 * been taken (its workflow id is the new recent action) or skipped under the overlap policy, for up to 15 s.
 */
async function startedAction(client: Client, id: string, before: ActionCounts): Promise<{ workflowId: string | null; runId: string | null; skipped: boolean }> {
  const deadline = Date.now() + TRIGGER_WAIT_MS;
  for (;;) {
    const d = await client.schedule.getHandle(id).describe();
    if (d.info.numActionsTaken > before.taken) {
      const action = [...d.info.recentActions].reverse().find((a) => !before.seen.has(a.action.workflow.workflowId)) ?? d.info.recentActions.at(-1);
      if (action) return { workflowId: action.action.workflow.workflowId, runId: action.action.workflow.firstExecutionRunId, skipped: false };
    }
    if (d.info.numActionsSkippedOverlap > before.skipped) return { workflowId: null, runId: null, skipped: true };
    if (Date.now() > deadline) return { workflowId: null, runId: null, skipped: false };
    await new Promise((r) => setTimeout(r, 250));
  }
}

export function registerScheduleCommands(program: Command): void {
  const schedule = program
    .command('schedule')
    .description(
      'nightly retrains as Temporal Schedules: each run is trainPipeline with the scheduled time as its as-of time ' +
        '(cutoff = scheduled time − horizonDays when source.cutoff is not set), so backfills reproduce past cutoffs',
    );

  schedule
    .command('create')
    .description('create a schedule that runs trainPipeline with a config file; everything is validated before anything is created')
    .argument('<id>', 'schedule id (also the prefix of its runs\' workflow ids)', idParser('scheduleId'))
    .requiredOption('--config <file>', 'pipeline config (.json, .yaml or .yml) without source.cutoff')
    .option('--cron <expr>', 'cron expression, five fields "minute hour day-of-month month day-of-week" (repeatable)', collect, [])
    .option('--calendar <json>', 'calendar spec as JSON, e.g. \'{"hour":2,"minute":0}\' (repeatable)', collect, [])
    .option('--timezone <tz>', 'IANA time zone the spec is read in', 'UTC')
    .addOption(overlapOption('what to do when a run is due while another is still running').default('skip'))
    .option('--catchup-window <duration>', 'how late a missed run may still start (e.g. 1d, 12h)', '1d')
    .option('--no-pause-on-failure', 'keep the schedule running after a failed run (default: pause it)')
    .option('--note <text>', 'a note shown by describe')
    .option('--paused', 'create it paused')
    .option('--cpu-queue <name>', 'task queue of the workflow and its data activities', process.env.PROPENSITY_CPU_QUEUE || TASK_QUEUES.cpu)
    .option('--train-queue <name>', 'task queue of the training activities', process.env.PROPENSITY_TRAIN_QUEUE || TASK_QUEUES.train)
    .option('--json', 'print the created schedule as one JSON line')
    .action((id: string, o) => {
      const { raw } = loadConfigFile(o.config);
      const calendars = (o.calendar as string[]).map(parseCalendar);
      return withSchedules(async (_s, client) => {
        const view = await createSchedule(client, {
          scheduleId: id,
          config: raw,
          cron: o.cron,
          calendars: calendars.length ? calendars : undefined,
          timezone: o.timezone,
          overlap: parseOverlap(o.overlap),
          catchupWindowMs: parseWindow(o.catchupWindow),
          pauseOnFailure: o.pauseOnFailure,
          note: o.note,
          paused: !!o.paused,
          taskQueues: { cpu: o.cpuQueue, train: o.trainQueue },
        });
        output(o.json, view, () => [`created schedule ${id}`, ...describeLines(view)]);
      });
    });

  schedule
    .command('list')
    .description('the trainPipeline schedules of the namespace')
    .option('--json', 'print as one JSON array')
    .action((o) =>
      withSchedules(async (_s, client) => {
        const items = await listSchedules(client);
        output(o.json, items, () =>
          items.length
            ? table(
                ['schedule', 'model', 'state', 'cron', 'time zone', 'next run', 'last run'],
                items.map((i) => [
                  i.scheduleId,
                  i.modelName,
                  i.paused ? 'PAUSED' : 'active',
                  i.cron.map((c) => `"${c}"`).join(', ') || '-',
                  i.timezone,
                  i.nextActionTime,
                  i.lastAction?.workflowId,
                ]),
              )
            : 'no schedules (npx propensity schedule create …)',
        );
      }),
    );

  schedule
    .command('describe')
    .description('spec, policies, paused state and note, next times, recent runs with their status and cutoff')
    .argument('<id>', 'schedule id', idParser('scheduleId'))
    .option('--json', 'print as one JSON object')
    .action((id: string, o) =>
      withSchedules(async (s, client) => {
        const view = await describeSchedule(client, id, { db: s.db });
        output(o.json, view, () => describeLines(view));
      }),
    );

  for (const [name, verb] of [['pause', 'pause'], ['unpause', 'unpause']] as const) {
    schedule
      .command(name)
      .description(name === 'pause' ? 'stop starting runs (running ones go on)' : 'start runs again at the next scheduled time')
      .argument('<id>', 'schedule id', idParser('scheduleId'))
      .option('--note <text>', 'why (shown by describe)')
      .option('--json', 'print the schedule state as one JSON line')
      .action((id: string, o) =>
        withSchedules(async (_s, client) => {
          await (verb === 'pause' ? pauseSchedule : unpauseSchedule)(client, id, o.note);
          const view = await describeSchedule(client, id);
          output(o.json, { scheduleId: id, ...view.state }, () => `${id}: ${view.state.paused ? 'paused' : 'active'}${view.state.note ? ` (note: ${view.state.note})` : ''}`);
        }),
      );
  }

  schedule
    .command('trigger')
    .description('start a run now (as-of time: now), under the schedule\'s overlap policy unless --overlap says otherwise')
    .argument('<id>', 'schedule id', idParser('scheduleId'))
    .addOption(overlapOption('overlap policy for this run (default: the schedule\'s)'))
    .option('--json', 'print the result as one JSON line')
    .action((id: string, o) =>
      withSchedules(async (_s, client) => {
        await (await import('../preflight.js')).requireScheduleWorkers(client, id);
        // an unknown schedule is left to triggerSchedule, which says so with its own type and exit code
        const before = await actionCounts(client, id).catch(() => null);
        const r = await triggerSchedule(client, id, o.overlap ? parseOverlap(o.overlap) : undefined);
        const started = before ? await startedAction(client, id, before) : { workflowId: null, runId: null, skipped: false };
        output(o.json, { scheduleId: id, ...r, ...started }, () =>
          started.workflowId
            ? [`triggered ${id}: started ${started.workflowId} (run ${started.runId})`, `  \`propensity run watch ${started.workflowId}\` follows it`]
            : started.skipped
              ? `triggered ${id}, but nothing started: a run of it is going and its overlap policy is ${r.overlap}` +
                (before?.running.length ? ` (running: ${before.running.join(', ')})` : '') + '; pass --overlap allow_all to start one anyway'
              : `triggered ${id} (overlap ${r.overlap}); no run had started after ${TRIGGER_WAIT_MS / 1000} s: \`propensity schedule describe ${id}\` shows it when it does`,
        );
      }),
    );

  schedule
    .command('backfill')
    .description('run the scheduled times between --from and --to, each with its own scheduled time as its as-of time')
    .argument('<id>', 'schedule id', idParser('scheduleId'))
    .requiredOption('--from <iso>', 'start of the range (inclusive), e.g. 2026-11-01T00:00:00Z')
    .requiredOption('--to <iso>', 'end of the range (inclusive), in the past')
    .addOption(overlapOption('overlap policy among the backfilled runs').default('buffer_all'))
    .option('--json', 'print the result as one JSON line')
    .action((id: string, o) => {
      const start = parseTime('--from', o.from);
      const end = parseTime('--to', o.to);
      return withSchedules(async (_s, client) => {
        await (await import('../preflight.js')).requireScheduleWorkers(client, id);
        const r = await backfillSchedule(client, id, { start, end, overlap: parseOverlap(o.overlap) });
        output(o.json, { scheduleId: id, from: start.toISOString(), to: end.toISOString(), ...r }, () => [
          `backfill of ${id} from ${start.toISOString()} to ${end.toISOString()} requested (overlap ${r.overlap})`,
          ...(r.expected ? [`  ${r.expected.length} scheduled times in range: ${r.expected.join(', ') || '-'}`] : []),
        ]);
      });
    });

  schedule
    .command('delete')
    .description('delete the schedule (its runs, finished or running, are left alone)')
    .argument('<id>', 'schedule id', idParser('scheduleId'))
    .option('--json', 'print the result as one JSON line')
    .action((id: string, o) =>
      withSchedules(async (_s, client) => {
        await deleteSchedule(client, id);
        output(o.json, { scheduleId: id, deleted: true }, () => `deleted schedule ${id}`);
      }),
    );
}

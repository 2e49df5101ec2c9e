import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  type CalendarSpec,
  type Client,
  type ScheduleDescription,
  type ScheduleExecutionResult,
  type ScheduleHandle,
  type ScheduleOverlapPolicy,
} from '@temporalio/client';
import { CronExpressionParser } from 'cron-parser';
import { parsePipelineConfig } from '../pipeline/config.js';
import { PipelineError } from '../activities/errors.js';
import type { Db } from '../db/client.js';
import { TASK_QUEUES } from '../workflows/constants.js';
import { trainPipeline, type TaskQueues, type TrainPipelineInput } from '../workflows/pipeline.js';
import { SCHEDULE_ID_PATTERN } from '../pipeline/ids.js';

// Nightly retrains as Temporal Schedules. The action is the same trainPipeline workflow; each run's as-of time is
// the time it was scheduled for (TemporalScheduledStartTime, read by the workflow): nothing at or after it is
// read, and an events source without source.cutoff gets cutoff = asOf − horizonDays (schedules/as-of.ts), so a
// backfill of past nights reproduces their cutoffs. No run uses the wall clock.

/** Stable error types; the CLI maps them to exit codes. */
export const ScheduleErrorType = {
  /** a bad id, cron expression, calendar, time zone, window, overlap policy or time range */
  InvalidSchedule: 'InvalidSchedule',
  InvalidConfig: 'InvalidConfig',
  ScheduleExists: 'ScheduleExists',
  UnknownSchedule: 'UnknownSchedule',
} as const;
export type ScheduleErrorTypeName = (typeof ScheduleErrorType)[keyof typeof ScheduleErrorType];

export class ScheduleError extends Error {
  constructor(
    readonly type: ScheduleErrorTypeName,
    message: string,
  ) {
    super(message);
    this.name = 'ScheduleError';
  }
}

export const OVERLAP_POLICIES = ['SKIP', 'BUFFER_ONE', 'BUFFER_ALL', 'CANCEL_OTHER', 'TERMINATE_OTHER', 'ALLOW_ALL'] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

export const DEFAULTS = {
  timezone: 'UTC',
  overlap: 'SKIP' as OverlapPolicy,
  /** a night missed by less than this (server or workers down) still runs when the schedule catches up */
  catchupWindowMs: 86_400_000,
  pauseOnFailure: true,
};

/** What the schedule's memo holds (the server compiles cron strings into calendars, so the text is kept here). */
export interface ScheduleMemo {
  app: 'propensity';
  modelName: string;
  cron: string[];
  calendars: CalendarSpec[];
  timezone: string;
}

export interface CreateScheduleInput {
  scheduleId: string;
  /** the pipeline config as written; validated before anything is created, stored as the action's input */
  config: unknown;
  cron?: string[];
  calendars?: CalendarSpec[];
  timezone?: string;
  overlap?: OverlapPolicy;
  catchupWindowMs?: number;
  pauseOnFailure?: boolean;
  note?: string;
  paused?: boolean;
  /** default TASK_QUEUES: where the workflow and its activities run (tests use their own pair) */
  taskQueues?: TaskQueues;
}

const CRON_FIELDS = ['minute', 'hour', 'day-of-month', 'month', 'day-of-week'] as const;
const CRON_ALIASES = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly'];
const WINDOW_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const MIN_CATCHUP_MS = 10_000; // the server's floor

export function validateScheduleId(id: string): void {
  if (!SCHEDULE_ID_PATTERN.test(id)) {
    throw new ScheduleError(
      ScheduleErrorType.InvalidSchedule,
      `schedule id "${id}" must be 1-200 letters, digits, ".", "_" or "-", starting with a letter or digit (it prefixes the runs' workflow ids)`,
    );
  }
}

/**
 * Checks a cron expression as Temporal reads it (five fields: minute hour day-of-month month day-of-week, or an
 * alias such as @daily); the message names the expression and, where one field is at fault, the field.
 */
export function validateCron(expr: string, timezone = DEFAULTS.timezone): void {
  const text = expr.trim();
  const bad = (why: string) => new ScheduleError(ScheduleErrorType.InvalidSchedule, `cron expression "${expr}": ${why}`);
  if (text.startsWith('@')) {
    if (!CRON_ALIASES.includes(text.toLowerCase())) throw bad(`unknown alias; use one of ${CRON_ALIASES.join(', ')} or five fields`);
    return;
  }
  if (/^CRON_TZ=|^TZ=/i.test(text)) throw bad('set the time zone with --timezone, not inside the expression');
  const fields = text.split(/\s+/).filter(Boolean);
  if (fields.length !== 5) {
    throw bad(`expected 5 fields (${CRON_FIELDS.join(' ')}), got ${fields.length}`);
  }
  for (let i = 0; i < fields.length; i++) {
    const probe = CRON_FIELDS.map((_, j) => (j === i ? fields[i] : '*')).join(' ');
    try {
      CronExpressionParser.parse(probe, { tz: timezone, strict: false });
    } catch (err) {
      throw bad(`${CRON_FIELDS[i]} field "${fields[i]}" is invalid (${(err as Error).message})`);
    }
  }
  try {
    CronExpressionParser.parse(text, { tz: timezone, strict: false });
  } catch (err) {
    throw bad((err as Error).message);
  }
}

export function validateTimezone(timezone: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  } catch {
    throw new ScheduleError(ScheduleErrorType.InvalidSchedule, `time zone "${timezone}" is not an IANA time zone name (e.g. UTC, Europe/Berlin)`);
  }
}

/** "1d", "12h", "30m", "90s" → milliseconds; at least the server's 10 s. */
export function parseWindow(text: string, what = 'catch-up window'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([smhd])$/i.exec(text.trim());
  if (!m) throw new ScheduleError(ScheduleErrorType.InvalidSchedule, `${what} "${text}" must be a number with a unit s, m, h or d (e.g. 1d, 12h)`);
  const ms = Math.round(Number(m[1]) * WINDOW_UNITS[m[2].toLowerCase()]);
  if (ms < MIN_CATCHUP_MS) throw new ScheduleError(ScheduleErrorType.InvalidSchedule, `${what} "${text}" must be at least 10s`);
  return ms;
}

export function formatWindow(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms / 1000}s`;
}

export function parseOverlap(text: string): OverlapPolicy {
  const v = text.trim().toUpperCase().replaceAll('-', '_') as OverlapPolicy;
  if (!OVERLAP_POLICIES.includes(v)) {
    throw new ScheduleError(
      ScheduleErrorType.InvalidSchedule,
      `overlap policy "${text}" is not one of ${OVERLAP_POLICIES.map((p) => p.toLowerCase()).join(', ')}`,
    );
  }
  return v;
}

/** Validates everything, then creates the schedule; a bad input or a taken id creates nothing. */
export async function createSchedule(client: Client, input: CreateScheduleInput): Promise<ScheduleView> {
  validateScheduleId(input.scheduleId);
  let modelName: string;
  try {
    const config = parsePipelineConfig(input.config);
    modelName = config.modelName;
    if (config.source.kind === 'events' && config.source.cutoff) {
      throw new ScheduleError(
        ScheduleErrorType.InvalidConfig,
        `source.cutoff is fixed at ${config.source.cutoff}, so every scheduled run would train on the same data: remove it; ` +
          'a scheduled run takes its cutoff from its scheduled time (scheduled time − source.horizonDays)',
      );
    }
  } catch (err) {
    if (err instanceof PipelineError) throw new ScheduleError(ScheduleErrorType.InvalidConfig, err.message);
    throw err;
  }
  const timezone = input.timezone ?? DEFAULTS.timezone;
  validateTimezone(timezone);
  const cron = input.cron ?? [];
  for (const expr of cron) validateCron(expr, timezone);
  if (!cron.length && !input.calendars?.length) {
    throw new ScheduleError(ScheduleErrorType.InvalidSchedule, 'a schedule needs at least one cron expression (--cron "0 2 * * *") or calendar');
  }
  const catchupWindowMs = input.catchupWindowMs ?? DEFAULTS.catchupWindowMs;
  if (!(catchupWindowMs >= MIN_CATCHUP_MS)) throw new ScheduleError(ScheduleErrorType.InvalidSchedule, 'the catch-up window must be at least 10s');
  const taskQueues = input.taskQueues ?? { ...TASK_QUEUES };
  const args: [TrainPipelineInput] = [{ config: input.config, trigger: `schedule:${input.scheduleId}`, taskQueues }];
  const memo: ScheduleMemo = { app: 'propensity', modelName, cron, calendars: input.calendars ?? [], timezone };
  try {
    await client.schedule.create({
      scheduleId: input.scheduleId,
      spec: { cronExpressions: cron, calendars: input.calendars, timezone },
      // Temporal appends the scheduled time to the id: <schedule id>-2026-11-24T02:00:00Z.
      action: { type: 'startWorkflow', workflowType: trainPipeline, workflowId: input.scheduleId, taskQueue: taskQueues.cpu, args },
      policies: {
        overlap: input.overlap ?? DEFAULTS.overlap,
        catchupWindow: catchupWindowMs,
        pauseOnFailure: input.pauseOnFailure ?? DEFAULTS.pauseOnFailure,
      },
      memo: memo as unknown as Record<string, unknown>,
      state: { paused: input.paused ?? false, note: input.note },
    });
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) {
      throw new ScheduleError(ScheduleErrorType.ScheduleExists, `schedule "${input.scheduleId}" exists: delete it first or choose another id`);
    }
    // What the client cannot check (e.g. a calendar field out of range) the server rejects; nothing is created.
    const e = err as { code?: number; details?: string; message?: string };
    if (e.code === 3 /* INVALID_ARGUMENT */) {
      throw new ScheduleError(ScheduleErrorType.InvalidSchedule, `the Temporal server rejected schedule "${input.scheduleId}": ${e.details ?? e.message}`);
    }
    throw err;
  }
  return describeSchedule(client, input.scheduleId);
}

export interface RecentAction {
  scheduledAt: string;
  takenAt: string;
  workflowId: string;
  runId: string;
  /** the workflow's Temporal status: RUNNING, COMPLETED, FAILED, … (UNKNOWN once it is past retention) */
  status: string;
  /** the pipeline run's row in ml.pipeline_runs, when a database is given and the run got that far */
  run: { status: string; cutoff: string | null; modelVersion: number | null; trigger: string; errorType: string | null } | null;
}

export interface ScheduleView {
  scheduleId: string;
  modelName: string | null;
  workflowType: string;
  taskQueue: string | null;
  taskQueues: TaskQueues | null;
  spec: { cron: string[]; calendars: unknown[]; timezone: string };
  policies: { overlap: string; catchupWindow: string; catchupWindowMs: number; pauseOnFailure: boolean };
  state: { paused: boolean; note: string | null; remainingActions: number | null };
  info: {
    createdAt: string;
    lastUpdatedAt: string | null;
    numActionsTaken: number;
    numActionsMissedCatchupWindow: number;
    numActionsSkippedOverlap: number;
    nextActionTimes: string[];
    recentActions: RecentAction[];
    runningActions: { workflowId: string; runId: string }[];
  };
}

/** Spec, policies, state, next times, and the recent actions with their workflows' and pipeline runs' status. */
export async function describeSchedule(client: Client, scheduleId: string, opts: { db?: Db } = {}): Promise<ScheduleView> {
  const d = await describeOrThrow(handleOf(client, scheduleId));
  const memo = (d.memo ?? {}) as Partial<ScheduleMemo>;
  const input = (d.action.args?.[0] ?? {}) as Partial<TrainPipelineInput>;
  const recent = await Promise.all(d.info.recentActions.map((a) => recentAction(client, a)));
  if (opts.db && recent.length) {
    const rows = await opts.db.db
      .selectFrom('ml.pipeline_runs')
      .select(['run_id', 'status', 'cutoff', 'model_version', 'trigger', 'error_type'])
      .where('run_id', 'in', recent.map((r) => r.runId))
      .execute();
    const byRun = new Map(rows.map((r) => [r.run_id, r]));
    for (const r of recent) {
      const row = byRun.get(r.runId);
      if (row) {
        r.run = {
          status: row.status,
          cutoff: row.cutoff ? new Date(row.cutoff).toISOString() : null,
          modelVersion: row.model_version,
          trigger: row.trigger,
          errorType: row.error_type,
        };
      }
    }
  }
  return {
    scheduleId,
    modelName: memo.modelName ?? null,
    workflowType: d.action.workflowType,
    taskQueue: d.action.taskQueue ?? null,
    taskQueues: input.taskQueues ?? null,
    // Cron strings come back compiled into calendars, so both are shown as written, from the memo (where the SDK
    // drops empty lists); a schedule made elsewhere shows the server's calendars.
    spec: {
      cron: memo.cron ?? [],
      calendars: memo.app === 'propensity' ? (memo.calendars ?? []) : (d.spec.calendars ?? []),
      timezone: d.spec.timezone ?? DEFAULTS.timezone,
    },
    policies: {
      overlap: d.policies.overlap ?? 'SKIP', // the server's default, left unset in some descriptions
      catchupWindow: formatWindow(d.policies.catchupWindow),
      catchupWindowMs: d.policies.catchupWindow,
      pauseOnFailure: d.policies.pauseOnFailure,
    },
    state: { paused: d.state.paused, note: d.state.note || null, remainingActions: d.state.remainingActions ?? null },
    info: {
      createdAt: d.info.createdAt.toISOString(),
      lastUpdatedAt: d.info.lastUpdatedAt?.toISOString() ?? null,
      numActionsTaken: d.info.numActionsTaken,
      numActionsMissedCatchupWindow: d.info.numActionsMissedCatchupWindow,
      numActionsSkippedOverlap: d.info.numActionsSkippedOverlap,
      nextActionTimes: d.info.nextActionTimes.map((t) => t.toISOString()),
      recentActions: recent,
      runningActions: d.info.runningActions.map((a) => ({ workflowId: a.workflow.workflowId, runId: a.workflow.firstExecutionRunId })),
    },
  };
}

async function recentAction(client: Client, a: ScheduleExecutionResult): Promise<RecentAction> {
  const { workflowId, firstExecutionRunId: runId } = a.action.workflow;
  let status = 'UNKNOWN';
  try {
    status = (await client.workflow.getHandle(workflowId, runId).describe()).status.name;
  } catch {
    // past the namespace's retention: the schedule still lists it
  }
  return { scheduledAt: a.scheduledAt.toISOString(), takenAt: a.takenAt.toISOString(), workflowId, runId, status, run: null };
}

export interface ScheduleListItem {
  scheduleId: string;
  modelName: string | null;
  cron: string[];
  timezone: string | null;
  paused: boolean;
  note: string | null;
  nextActionTime: string | null;
  lastAction: { scheduledAt: string; workflowId: string } | null;
}

/** The namespace's trainPipeline schedules (from the visibility store, so a schedule just created may lag). */
export async function listSchedules(client: Client): Promise<ScheduleListItem[]> {
  const out: ScheduleListItem[] = [];
  for await (const s of client.schedule.list()) {
    if (s.action && s.action.workflowType !== 'trainPipeline') continue;
    const memo = (s.memo ?? {}) as Partial<ScheduleMemo>;
    const last = s.info.recentActions.at(-1);
    out.push({
      scheduleId: s.scheduleId,
      modelName: memo.modelName ?? null,
      cron: memo.cron ?? [],
      timezone: memo.timezone ?? s.spec?.timezone ?? null,
      paused: s.state.paused,
      note: s.state.note || null,
      nextActionTime: s.info.nextActionTimes[0]?.toISOString() ?? null,
      lastAction: last ? { scheduledAt: last.scheduledAt.toISOString(), workflowId: last.action.workflow.workflowId } : null,
    });
  }
  return out.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}

export async function pauseSchedule(client: Client, scheduleId: string, note?: string): Promise<void> {
  const h = handleOf(client, scheduleId);
  await describeOrThrow(h);
  await h.pause(note || 'paused with the propensity CLI');
}

export async function unpauseSchedule(client: Client, scheduleId: string, note?: string): Promise<void> {
  const h = handleOf(client, scheduleId);
  await describeOrThrow(h);
  await h.unpause(note || 'unpaused with the propensity CLI');
}

/**
 * Runs the action now (as-of time: now). The SDK's trigger() defaults to ALLOW_ALL, so the schedule's own overlap
 * policy is read and passed unless another is asked for: with SKIP, a trigger while a run is going starts nothing.
 */
export async function triggerSchedule(client: Client, scheduleId: string, overlap?: OverlapPolicy): Promise<{ overlap: OverlapPolicy }> {
  const h = handleOf(client, scheduleId);
  const d = await describeOrThrow(h);
  const policy = overlap ?? ((d.policies.overlap ?? 'SKIP') as OverlapPolicy);
  await h.trigger(policy as ScheduleOverlapPolicy);
  return { overlap: policy };
}

export interface BackfillInput {
  start: Date;
  end: Date;
  /**
   * Default BUFFER_ALL: the nights of a backfill all fall due at once, so under the schedule's SKIP all but the
   * first would be skipped; buffered, they run one after another.
   */
  overlap?: OverlapPolicy;
}

/** Starts the runs the spec would have started in [start, end]; each run's as-of time is its scheduled time. */
export async function backfillSchedule(
  client: Client,
  scheduleId: string,
  input: BackfillInput,
  now = new Date(),
): Promise<{ overlap: OverlapPolicy; expected: string[] | null }> {
  for (const [name, t] of [['start', input.start], ['end', input.end]] as const) {
    if (Number.isNaN(t.getTime())) throw new ScheduleError(ScheduleErrorType.InvalidSchedule, `backfill ${name} is not an ISO date-time (e.g. 2026-11-01T00:00:00Z)`);
  }
  if (!(input.start < input.end)) {
    throw new ScheduleError(ScheduleErrorType.InvalidSchedule, `backfill start ${input.start.toISOString()} must be before its end ${input.end.toISOString()}`);
  }
  if (input.end > now) {
    throw new ScheduleError(ScheduleErrorType.InvalidSchedule, `backfill end ${input.end.toISOString()} is in the future: a backfill replays past scheduled times; use trigger for now`);
  }
  const h = handleOf(client, scheduleId);
  const d = await describeOrThrow(h);
  const overlap = input.overlap ?? 'BUFFER_ALL';
  await h.backfill({ start: input.start, end: input.end, overlap });
  const memo = (d.memo ?? {}) as Partial<ScheduleMemo>;
  return { overlap, expected: memo.cron?.length ? cronTimesBetween(memo.cron, memo.timezone ?? DEFAULTS.timezone, input.start, input.end) : null };
}

/** The times the cron expressions match in [start, end] (what a backfill should start), capped at 1000. */
export function cronTimesBetween(cron: string[], timezone: string, start: Date, end: Date): string[] {
  const times = new Set<number>();
  for (const expr of cron) {
    const it = CronExpressionParser.parse(expr, { tz: timezone, currentDate: new Date(start.getTime() - 1), endDate: end });
    while (it.hasNext() && times.size < 1000) {
      const t = it.next().getTime();
      if (t > end.getTime()) break;
      times.add(t);
    }
  }
  return [...times].sort((a, b) => a - b).map((t) => new Date(t).toISOString());
}

export async function deleteSchedule(client: Client, scheduleId: string): Promise<void> {
  const h = handleOf(client, scheduleId);
  await describeOrThrow(h);
  await h.delete();
}

function handleOf(client: Client, scheduleId: string): ScheduleHandle {
  validateScheduleId(scheduleId);
  return client.schedule.getHandle(scheduleId);
}

async function describeOrThrow(h: ScheduleHandle): Promise<ScheduleDescription> {
  try {
    return await h.describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) {
      throw new ScheduleError(ScheduleErrorType.UnknownSchedule, `no schedule "${h.scheduleId}" (npx propensity schedule list shows them)`);
    }
    throw err;
  }
}

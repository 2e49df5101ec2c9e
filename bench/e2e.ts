/**
 * `bench e2e`: one full nightly retrain — `trainPipeline` with the default config — on a synthetic shop of about
 * 10 M events and 500k users, with one cpu and two train worker processes started as `propensity demo` starts them.
 * It reports the wall time of every stage, the sum of activity time against the workflow's wall time (orchestration
 * overhead), and the peak RSS of every process involved. Timings come from the workflows' own histories (the
 * pipeline's and its search child's), in-activity durations from ml.run_steps.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import type { PipelineConfigInput } from '../pipeline/config.js';
import { oracleAucOnTest } from '../cli/demo.js';
import { followPipeline } from '../cli/follow.js';
import { spawnWorkers, stopWorkers, waitForPollers, type WorkerProcess } from '../cli/workers.js';
import { stackStatus } from '../infra/index.js';
import { connectTemporal } from '../workers/deps.js';
import { trainPipeline, type TrainPipelineOutput } from '../workflows/pipeline.js';
import { isReplicaId } from '../workflows/inputs.js';
import {
  appendResult,
  deletePrefix,
  ensureShop,
  fmt,
  machine,
  openBench,
  benchWorkerDatabaseEnv,
  provenance,
  peakRssMb,
  round,
  seconds,
  table,
  type BenchServices,
  type Log,
  ROOT,
  type ShopShape,
  waitForQuiet,
} from './common.js';
import { summariseProfiles, type ProfileSummary } from './profile.js';

/** Its own database: the 500k-user shop never replaces the ingest suite's (propensity_bench) or the search suite's. */
export const E2E_DATABASE = 'propensity_bench_e2e';
export const E2E_MODEL = 'bench-e2e';
/** The acceptance budget: the nightly retrain within 30 minutes, no process above 4 GB RSS. */
export const WALL_BUDGET_SECONDS = 1800;
export const RSS_BUDGET_MB = 4096;
/** 500k users over 19 days with a 14-day horizon (the default) give just over 10 M events (18 days: 9.76 M). */
export const E2E_SHOP = { users: 500_000, days: 19, seed: 1, horizonDays: 14 } as const;

export interface E2eOptions extends ShopShape {
  trainWorkers: number;
  /** overrides of the default config, for development runs only (recorded in the result) */
  trials?: number;
  epochs?: number;
  finalEpochs?: number;
  reseed: boolean;
  /** wait (up to waitMinutes) for the 1-minute load average to drop below this before the run */
  quietLoad: number;
  waitMinutes: number;
  /** V8 CPU profiles of the worker processes (NODE_OPTIONS=--cpu-prof), summarised in the result */
  profile: boolean;
  keepArtifacts: boolean;
  json: boolean;
}

export interface StageTiming {
  stage: string;
  /** from the previous stage's end (the workflow's start for the first) to this stage's last activity's end */
  wallSeconds: number;
  /** Temporal's view: activity executions started → closed, summed (parallel activities add up) */
  activitySeconds: number;
  /** the activities' own view: ml.run_steps duration_ms, summed */
  stepSeconds: number | null;
  /** scheduled → started, summed: time tasks waited in the queue for a free worker slot */
  queueSeconds: number;
  activities: number;
}

export interface ProcessPeak {
  role: string;
  pid: number;
  /** peak resident set size: VmHWM of /proc/<pid>/status (the kernel's high-water mark) or the process's own maxRSS */
  peakRssMb: number;
  /** largest anonymous (private) resident memory seen by sampling; shared memory such as Postgres's buffers excluded */
  peakAnonMb: number | null;
}

export interface E2eResult {
  suite: 'e2e';
  status: TrainPipelineOutput['status'];
  workflowId: string;
  runId: string;
  users: number;
  days: number;
  seed: number;
  horizonDays: number;
  /** rows in shop.events (dirty ones included) */
  events: number;
  /** users who signed up before the cutoff: the rows the pipeline trains and evaluates on */
  entityRows: number;
  seededNow: boolean;
  seedSeconds: number | null;
  /** true when the pipeline config is the default one (only source.cutoff, search.parallelism and modelName set) */
  defaultConfig: boolean;
  configOverrides: Record<string, unknown>;
  trainWorkers: number;
  /** the pipeline workflow's wall time, start to completion (workers already polling) */
  totalWallSeconds: number;
  withinBudget: boolean;
  /** the bench end to end: worker start, the run, the report (seeding excluded) */
  benchWallSeconds: number;
  stages: StageTiming[];
  overhead: {
    workflowWallSeconds: number;
    /** every activity execution (pipeline + search child), started → closed; parallel trials count each */
    activitySumSeconds: number;
    /** wall time with at least one activity executing somewhere (the union of the execution intervals) */
    busySeconds: number;
    /** workflowWall − busy: time in which no activity ran at all (workflow tasks, dispatch, child start, completion) */
    orchestrationSeconds: number;
    orchestrationPct: number;
    workflowTasks: number;
    /** workflow tasks, scheduled → completed, summed over both workflows */
    workflowTaskSeconds: number;
    /** train worker slots (one per train process) */
    searchSlots: number;
    /** search stage: slot-seconds busy with a trial or the baseline / (slots × search wall) */
    searchSlotUtilisation: number;
    /** search stage: slot-seconds idle (halving barriers, stragglers, dispatch) */
    searchIdleSlotSeconds: number;
  };
  training: {
    trials: number;
    trialsFailed: number;
    rungs: string;
    searchEpochs: number;
    /** median seconds per epoch over the search trials (train + validation pass) */
    searchSecondsPerEpoch: number | null;
    finalEpochs: number | null;
    finalSecondsPerEpoch: number | null;
    /** the ensemble's seed replicas of the best trial: their epochs summed, and the median s/epoch */
    replicaEpochs: number | null;
    replicaSecondsPerEpoch: number | null;
    baselineEpochs: number | null;
    baselineSecondsPerEpoch: number | null;
    backend: string;
  };
  metrics: TrainPipelineOutput['metrics'];
  oracleAuc: number | null;
  gate: TrainPipelineOutput['gate'];
  split: TrainPipelineOutput['split'];
  maxRssMb: number;
  rssWithinBudget: boolean;
  processes: ProcessPeak[];
  profiles: ProfileSummary[] | null;
  /** 1-minute load average before the workers started, and the highest seen during the run (others share the cores) */
  loadBefore: number;
  loadMaxDuring: number;
  quietBefore: boolean;
  gitCommit: string;
  date: string;
  machine: ReturnType<typeof machine>;
}

export async function runE2eBench(opts: E2eOptions, log: Log): Promise<E2eResult> {
  log('▸ services');
  const bench = await openBench({ log, database: E2E_DATABASE });
  const processes: WorkerProcess[] = [];
  let client: Client | undefined;
  let monitor: ProcessMonitor | undefined;
  let runId: string | undefined;
  try {
    log(`▸ synthetic shop in database ${E2E_DATABASE}: ${opts.users} users, ${opts.days} days, seed ${opts.seed}`);
    let seedPeakMb: number | null = null;
    const tSeed = performance.now();
    const shop = await ensureShop(bench, opts, {
      reseed: opts.reseed,
      log: (line) => {
        const m = /seed-shop peak RSS ([\d.]+) MB/.exec(line);
        if (m) seedPeakMb = Number(m[1]);
        log(line);
      },
    });
    const seedSeconds = shop.seededNow ? round(seconds(tSeed), 1) : null;
    if (shop.seededNow) {
      // A nightly retrain reads settled data: autovacuum would otherwise set hint bits and the visibility map during
      // the timed run (a one-off cost of a fresh bulk load, not of the pipeline).
      log('  vacuum analyze (once after seeding, untimed)');
      await bench.db.pool.query('VACUUM (ANALYZE) shop.events, shop.users, shop.products');
    }
    const entityRows = Number(
      (await bench.db.pool.query('select count(*)::float8 as n from shop.users where signup_at < $1', [shop.cutoff])).rows[0].n,
    );
    log(`  ${shop.events.toLocaleString('en')} events, ${opts.users.toLocaleString('en')} users (${entityRows.toLocaleString('en')} signed up before the cutoff)`);

    const quiet = await waitForQuiet(opts.quietLoad, opts.waitMinutes, log);

    const t0 = performance.now();
    const queues = { cpu: `bench-e2e-cpu-${randomUUID()}`, train: `bench-e2e-train-${randomUUID()}` };
    const dataDir = path.join(bench.env.PROPENSITY_DATA_DIR, 'bench-e2e');
    const profileDir = path.join(dataDir, 'profiles', new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15));
    log(`▸ workers: 1 cpu, ${opts.trainWorkers} train (logs in ${dataDir}/logs)`);
    processes.push(
      ...spawnWorkers({ ...bench.env, PROPENSITY_DATA_DIR: dataDir }, { cpu: 1, train: opts.trainWorkers }, {
        ...benchWorkerDatabaseEnv(bench),
        PROPENSITY_CPU_QUEUE: queues.cpu,
        PROPENSITY_TRAIN_QUEUE: queues.train,
        PROPENSITY_CODE_VERSION: bench.codeVersion,
        ...(opts.profile && {
          NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${path.join(ROOT, 'bench', 'cpu-profile.mjs')}`.trim(),
          PROPENSITY_CPU_PROFILE_DIR: profileDir,
        }),
      }),
    );
    client = await connectTemporal(bench.connections);
    await waitForPollers(
      client,
      [
        { name: queues.cpu, min: 1, kind: 'workflow' },
        { name: queues.cpu, min: 1, kind: 'activity' },
        { name: queues.train, min: opts.trainWorkers, kind: 'activity' },
      ],
      processes,
    );
    const roles = workerRoles(processes);
    const stack = await stackStatus({ env: bench.env, log: () => {} });
    const pid = (name: string) => stack.find((s) => s.name === name && s.state === 'running')?.pid;
    monitor = new ProcessMonitor(() => [
      ...roles,
      ...postgresProcesses(pid('postgres')),
      ...(pid('s3') ? [{ pid: pid('s3')!, role: 'stack: s3rver' }] : []),
      ...(pid('temporal') ? [{ pid: pid('temporal')!, role: 'stack: temporal dev server' }] : []),
    ]);
    monitor.start();
    // bench/cpu-profile.mjs starts sampling on SIGWINCH (Temporal's runtime stops workers on SIGUSR2): the profiles
    // cover the run, not the workers' start-up
    if (opts.profile) for (const p of processes) p.child.kill('SIGWINCH');

    const overrides: Record<string, unknown> = {};
    if (opts.trials !== undefined) overrides['search.trials'] = opts.trials;
    if (opts.epochs !== undefined) overrides['search.epochs'] = opts.epochs;
    if (opts.finalEpochs !== undefined) overrides['training.finalEpochs'] = opts.finalEpochs;
    const config: PipelineConfigInput = {
      modelName: E2E_MODEL,
      source: { kind: 'events', cutoff: shop.cutoff.toISOString(), horizonDays: opts.horizonDays },
      search: {
        parallelism: opts.trainWorkers,
        ...(opts.trials !== undefined && { trials: opts.trials }),
        ...(opts.epochs !== undefined && { epochs: opts.epochs }),
      },
      ...(opts.finalEpochs !== undefined && { training: { finalEpochs: opts.finalEpochs } }),
    };
    const stamp = new Date().toISOString();
    const workflowId = `train-${E2E_MODEL}-${stamp.slice(0, 10)}-${stamp.slice(11, 19).replaceAll(':', '')}`;
    log(`▸ pipeline ${workflowId} (load ${fmt(os.loadavg()[0])} with the workers just started)`);
    const handle = await client.workflow.start(trainPipeline, {
      taskQueue: queues.cpu,
      workflowId,
      args: [{ config, trigger: 'bench', taskQueues: queues }],
    });
    const out = await Promise.race([followPipeline(client, handle, (l) => log(`  ${l}`)), workerExit(processes)]);
    runId = out.runId;
    monitor.sample();

    const timing = await pipelineTiming(client, workflowId, `${workflowId}/search`, opts.trainWorkers);
    const steps = await stepSeconds(bench, out.runId);
    for (const s of timing.stages) s.stepSeconds = steps[s.stage] ?? null;
    const training = await trainingFigures(bench, out);
    const oracleAuc = await oracleAucOnTest(bench, out).catch(() => null);

    // The workers' high-water marks cover their whole life, so read them just before they stop.
    monitor.stop();
    const processPeaks: ProcessPeak[] = [
      ...monitor.peaks(),
      { role: 'bench (this process)', pid: process.pid, peakRssMb: peakRssMb(), peakAnonMb: null },
      ...(seedPeakMb !== null ? [{ role: 'seed child (bench seed-shop)', pid: 0, peakRssMb: seedPeakMb, peakAnonMb: null }] : []),
    ];
    await stopWorkers(processes);
    processes.length = 0;
    const profiles = opts.profile ? summariseProfiles(profileDir, roles) : null;
    const maxRssMb = Math.max(...processPeaks.map((p) => p.peakRssMb));

    return {
      suite: 'e2e',
      status: out.status,
      workflowId,
      runId: out.runId,
      users: opts.users,
      days: opts.days,
      seed: opts.seed,
      horizonDays: opts.horizonDays,
      events: shop.events,
      entityRows,
      seededNow: shop.seededNow,
      seedSeconds,
      defaultConfig: Object.keys(overrides).length === 0,
      configOverrides: overrides,
      trainWorkers: opts.trainWorkers,
      totalWallSeconds: timing.overhead.workflowWallSeconds,
      withinBudget: timing.overhead.workflowWallSeconds <= WALL_BUDGET_SECONDS,
      benchWallSeconds: round(seconds(t0), 1),
      stages: timing.stages,
      overhead: timing.overhead,
      training,
      metrics: out.metrics,
      oracleAuc: oracleAuc === null ? null : round(oracleAuc, 4),
      gate: out.gate,
      split: out.split,
      maxRssMb,
      rssWithinBudget: maxRssMb <= RSS_BUDGET_MB,
      processes: processPeaks,
      profiles,
      loadBefore: quiet.load,
      loadMaxDuring: monitor.loadMax,
      quietBefore: quiet.quiet,
      ...provenance(bench.codeVersion),
    };
  } finally {
    monitor?.stop();
    await stopWorkers(processes);
    await client?.connection.close().catch(() => {});
    // The run's own artifacts (shards, splits, checkpoints) would only fill the bucket; the registered model stays
    // under models/, where the score suite and the next run's champion comparison read it.
    if (runId && !opts.keepArtifacts) await deletePrefix(bench.s3, bench.store.bucket, `runs/${runId}/`).catch(() => {});
    await bench.close();
  }
}

/** Rejects when a worker process exits before the bench stops it (the run would otherwise wait forever). */
export function workerExit(processes: WorkerProcess[]): Promise<never> {
  return new Promise((_, reject) => {
    for (const w of processes) {
      w.child.once('exit', (code, signal) => reject(new Error(`${w.kind} worker (pid ${w.child.pid}) exited with ${signal ?? code} during the run; see ${w.logFile}`)));
    }
  });
}

// ───────────────────────────── timing from the workflow histories ─────────────────────────────

interface Span {
  type: string;
  /** a trainTrial's trial id, from its input ('baseline', 'final', a search trial or an ensemble replica) */
  trialId?: string;
  scheduled: number;
  started: number;
  closed: number;
}

interface HistoryTiming {
  start: number;
  end: number;
  spans: Span[];
  workflowTasks: number;
  workflowTaskMs: number;
  /** the search child: initiated and closed in the parent's history */
  child: { initiated: number; closed: number } | null;
}

type Timestamp = { seconds?: unknown; nanos?: number | null } | null | undefined;
const ms = (t: Timestamp) => (t ? Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6 : NaN);

/** Activity executions, workflow tasks and the child's span, from one workflow's history. */
export async function historyTiming(client: Client, workflowId: string): Promise<HistoryTiming> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  const scheduled = new Map<string, { type: string; trialId?: string; at: number }>();
  const started = new Map<string, number>();
  const spans: Span[] = [];
  const wfTasks = new Map<string, number>();
  let workflowTasks = 0;
  let workflowTaskMs = 0;
  let child: HistoryTiming['child'] = null;
  let childInitiated = NaN;
  for (const e of events) {
    const at = ms(e.eventTime as Timestamp);
    const id = String(e.eventId);
    const sched = e.activityTaskScheduledEventAttributes;
    if (sched) scheduled.set(id, { type: sched.activityType?.name ?? '?', trialId: trialIdOf(sched.input?.payloads?.[0]), at });
    else if (e.activityTaskStartedEventAttributes) started.set(String(e.activityTaskStartedEventAttributes.scheduledEventId), at);
    else {
      const closed =
        e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes ?? e.activityTaskCanceledEventAttributes;
      if (closed) {
        const key = String(closed.scheduledEventId);
        const s = scheduled.get(key);
        if (s) spans.push({ type: s.type, ...(s.trialId && { trialId: s.trialId }), scheduled: s.at, started: started.get(key) ?? s.at, closed: at });
      }
    }
    if (e.workflowTaskScheduledEventAttributes) wfTasks.set(id, at);
    const done = e.workflowTaskCompletedEventAttributes ?? e.workflowTaskFailedEventAttributes ?? e.workflowTaskTimedOutEventAttributes;
    if (done) {
      const s = wfTasks.get(String(done.scheduledEventId));
      if (s !== undefined) {
        workflowTasks++;
        workflowTaskMs += at - s;
      }
    }
    if (e.startChildWorkflowExecutionInitiatedEventAttributes) childInitiated = at;
    if (e.childWorkflowExecutionCompletedEventAttributes || e.childWorkflowExecutionFailedEventAttributes) child = { initiated: childInitiated, closed: at };
  }
  return { start: ms(events[0]?.eventTime as Timestamp), end: ms(events.at(-1)?.eventTime as Timestamp), spans, workflowTasks, workflowTaskMs, child };
}

/** The trialId of an activity input (a trainTrial's), or undefined. */
function trialIdOf(payload: unknown): string | undefined {
  if (!payload) return undefined;
  try {
    const input = defaultPayloadConverter.fromPayload<{ trialId?: unknown }>(payload as Payload);
    return typeof input?.trialId === 'string' ? input.trialId : undefined;
  } catch {
    return undefined;
  }
}

/** Length of the union of intervals. */
function unionMs(intervals: [number, number][]): number {
  const sorted = intervals.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  let total = 0;
  let [lo, hi] = [-Infinity, -Infinity];
  for (const [a, b] of sorted) {
    if (a > hi) {
      if (hi > lo) total += hi - lo;
      [lo, hi] = [a, b];
    } else hi = Math.max(hi, b);
  }
  if (hi > lo) total += hi - lo;
  return total;
}

const STAGE_OF: Record<string, string> = {
  startRun: 'validate',
  ingestSource: 'ingest',
  cleanData: 'clean',
  splitData: 'split',
  buildEnsemble: 'ensemble',
  evaluateModel: 'evaluate',
  registerModel: 'register',
  markAwaitingApproval: 'register',
  recordApprovalDecision: 'register',
  finishRun: 'finish',
};

/** Stage wall times (boundary to boundary, so they add up to the workflow's wall time) and the overhead figures. */
async function pipelineTiming(client: Client, workflowId: string, searchWorkflowId: string, slots: number) {
  const parent = await historyTiming(client, workflowId);
  const search = await historyTiming(client, searchWorkflowId);
  // The parent's trainTrials: the baseline (it trains alongside the search), the final model ('final'), and the
  // ensemble's seed replicas of the best trial.
  const stageOf = (s: Span) =>
    s.type === 'trainTrial' ? (s.trialId === 'baseline' ? 'search' : s.trialId === 'final' ? 'final' : 'ensemble') : (STAGE_OF[s.type] ?? s.type);
  const parentSpans = [...parent.spans].sort((a, b) => a.scheduled - b.scheduled).map((s) => ({ ...s, stage: stageOf(s) }));
  const spansByStage = new Map<string, (Span & { stage: string })[]>();
  for (const s of parentSpans) spansByStage.set(s.stage, [...(spansByStage.get(s.stage) ?? []), s]);
  const searchSpans = search.spans.map((s) => ({ ...s, stage: 'search' }));
  spansByStage.set('search', [...(spansByStage.get('search') ?? []), ...searchSpans]);
  const endOf = (stage: string) =>
    Math.max(...(spansByStage.get(stage) ?? []).map((s) => s.closed), ...(stage === 'search' && parent.child ? [parent.child.closed] : []));
  const order = ['validate', 'ingest', 'clean', 'split', 'search', 'final', 'ensemble', 'evaluate', 'register', 'finish'].filter((s) => spansByStage.has(s));
  const stages: StageTiming[] = [];
  let searchSlot = { utilisation: NaN, idleMs: NaN };
  let prev = parent.start;
  for (const stage of order) {
    const spans = spansByStage.get(stage)!;
    const end = stage === 'finish' ? parent.end : endOf(stage);
    stages.push({
      stage,
      wallSeconds: round((end - prev) / 1000, 2),
      activitySeconds: round(spans.reduce((a, s) => a + (s.closed - s.started), 0) / 1000, 2),
      stepSeconds: null,
      queueSeconds: round(spans.reduce((a, s) => a + (s.started - s.scheduled), 0) / 1000, 2),
      activities: spans.length,
    });
    if (stage === 'search') {
      const searchStart = prev;
      const searchWall = end - searchStart;
      const busy = spans.reduce((a, s) => a + (Math.min(s.closed, end) - Math.max(s.started, searchStart)), 0);
      searchSlot = { utilisation: busy / (slots * searchWall), idleMs: slots * searchWall - busy };
    }
    prev = end;
  }
  const all = [...parent.spans, ...search.spans];
  const wall = parent.end - parent.start;
  const busy = unionMs(all.map((s) => [s.started, s.closed]));
  return {
    stages,
    overhead: {
      workflowWallSeconds: round(wall / 1000, 2),
      activitySumSeconds: round(all.reduce((a, s) => a + (s.closed - s.started), 0) / 1000, 2),
      busySeconds: round(busy / 1000, 2),
      orchestrationSeconds: round((wall - busy) / 1000, 2),
      orchestrationPct: round((100 * (wall - busy)) / wall, 2),
      workflowTasks: parent.workflowTasks + search.workflowTasks,
      workflowTaskSeconds: round((parent.workflowTaskMs + search.workflowTaskMs) / 1000, 2),
      searchSlots: slots,
      searchSlotUtilisation: round(searchSlot.utilisation, 3),
      searchIdleSlotSeconds: round(searchSlot.idleMs / 1000, 1),
    },
  };
}

/** ml.run_steps: the activities' own timing, summed per pipeline stage (search = every trial and the baseline). */
async function stepSeconds(bench: BenchServices, runId: string): Promise<Record<string, number>> {
  const rows = await bench.db.db.selectFrom('ml.run_steps').select(['step', 'trial_id', 'duration_ms']).where('run_id', '=', runId).execute();
  const out: Record<string, number> = {};
  for (const r of rows) {
    const stage = r.step === 'trial' ? 'search' : r.step;
    out[stage] = round((out[stage] ?? 0) + (r.duration_ms ?? 0) / 1000, 2);
  }
  return out;
}

async function trainingFigures(bench: BenchServices, out: TrainPipelineOutput): Promise<E2eResult['training']> {
  const rows = await bench.db.db
    .selectFrom('ml.trials')
    .select(['trial_id', 'epochs_run', 'curve', 'rung'])
    .where('run_id', '=', out.runId)
    .execute();
  const perEpoch = (curve: unknown) => ((curve ?? []) as { seconds?: number }[]).map((p) => p.seconds ?? NaN).filter(Number.isFinite);
  const median = (xs: number[]) => (xs.length ? round([...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)], 3) : null);
  const replicas = rows.filter((r) => isReplicaId(r.trial_id));
  const trials = rows.filter((r) => r.trial_id !== 'final' && r.trial_id !== 'baseline' && !isReplicaId(r.trial_id));
  const one = (id: string) => rows.find((r) => r.trial_id === id);
  const rungCounts = new Map<number, number>();
  for (const r of trials) for (let k = 0; k <= (r.rung ?? 0); k++) rungCounts.set(k, (rungCounts.get(k) ?? 0) + 1);
  return {
    trials: out.trials,
    trialsFailed: out.trialsFailed,
    rungs: [...rungCounts.entries()].sort((a, b) => a[0] - b[0]).map(([, n]) => n).join(' → '),
    searchEpochs: trials.reduce((a, r) => a + (r.epochs_run ?? 0), 0),
    searchSecondsPerEpoch: median(trials.flatMap((r) => perEpoch(r.curve))),
    finalEpochs: one('final')?.epochs_run ?? null,
    finalSecondsPerEpoch: median(perEpoch(one('final')?.curve)),
    replicaEpochs: replicas.length ? replicas.reduce((a, r) => a + (r.epochs_run ?? 0), 0) : null,
    replicaSecondsPerEpoch: median(replicas.flatMap((r) => perEpoch(r.curve))),
    baselineEpochs: one('baseline')?.epochs_run ?? null,
    baselineSecondsPerEpoch: median(perEpoch(one('baseline')?.curve)),
    backend: out.backend,
  };
}

// ───────────────────────────── peak RSS of every process ─────────────────────────────

export interface Watched {
  pid: number;
  role: string;
}

/** cpu worker, train worker 1, … in spawn order. */
export function workerRoles(processes: WorkerProcess[]): Watched[] {
  const n = { cpu: 0, train: 0 };
  return processes.flatMap((p) => (p.child.pid ? [{ pid: p.child.pid, role: `${p.kind} worker ${++n[p.kind]}` }] : []));
}

function procStatus(pid: number): { hwmKb: number; rssKb: number; anonKb: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    return { hwmKb: kb('VmHWM'), rssKb: kb('VmRSS'), anonKb: kb('RssAnon') };
  } catch {
    return null; // gone: a backend that disconnected
  }
}

/** The postmaster and its children (backends, workers), labelled by what their command line says they are. */
export function postgresProcesses(postmaster: number | undefined): Watched[] {
  if (!postmaster) return [];
  const out: Watched[] = [{ pid: postmaster, role: 'postgres postmaster' }];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== postmaster) continue;
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      // "postgres: postgres propensity_bench_e2e 127.0.0.1(41234) COPY" → "postgres backend propensity_bench_e2e"
      const m = /^postgres: \S+ (\S+) \S+\(\d+\)/.exec(cmd);
      // a just-forked backend still shows the postmaster's command line
      const role = m ? `postgres backend ${m[1]}` : cmd.startsWith('postgres: ') ? `postgres ${cmd.slice(10)}` : 'postgres backend (starting)';
      out.push({ pid: Number(name), role });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** Samples /proc/<pid>/status once a second: VmHWM (the kernel's exact peak) and the largest RssAnon seen. */
export class ProcessMonitor {
  private readonly seen = new Map<number, { role: string; hwmKb: number; anonKb: number }>();
  private timer: NodeJS.Timeout | undefined;
  /** the highest 1-minute load average seen while sampling */
  loadMax = 0;
  constructor(
    private readonly targets: () => Watched[],
    private readonly intervalMs = 1000,
  ) {}
  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }
  sample(): void {
    for (const { pid, role } of this.targets()) {
      const s = procStatus(pid);
      if (!s) continue;
      const p = this.seen.get(pid) ?? { role, hwmKb: 0, anonKb: 0 };
      p.hwmKb = Math.max(p.hwmKb, s.hwmKb || s.rssKb);
      p.anonKb = Math.max(p.anonKb, s.anonKb || 0);
      this.seen.set(pid, p);
    }
    this.loadMax = Math.max(this.loadMax, round(os.loadavg()[0], 2));
  }
  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
  }
  /** Workers and services one row each; Postgres backends only the largest few (there are dozens of short ones). */
  peaks(): ProcessPeak[] {
    const rows = [...this.seen.entries()].map(([pid, p]) => ({
      role: p.role,
      pid,
      peakRssMb: round(p.hwmKb / 1024, 1),
      peakAnonMb: round(p.anonKb / 1024, 1),
    }));
    const pg = rows.filter((r) => r.role.startsWith('postgres')).sort((a, b) => b.peakRssMb - a.peakRssMb);
    return [...rows.filter((r) => !r.role.startsWith('postgres')), ...pg.slice(0, 4)];
  }
  /** every watched process, for the maximum */
  all(): ProcessPeak[] {
    return [...this.seen.entries()].map(([pid, p]) => ({ role: p.role, pid, peakRssMb: round(p.hwmKb / 1024, 1), peakAnonMb: round(p.anonKb / 1024, 1) }));
  }
}

// ───────────────────────────── output ─────────────────────────────

export function printE2e(r: E2eResult, log: Log): void {
  log('');
  log(
    table(`e2e benchmark: one nightly retrain (trainPipeline${r.defaultConfig ? ', default config' : `, overrides ${JSON.stringify(r.configOverrides)}`})`, [
      ['shop', `${r.users.toLocaleString('en')} users, ${r.days} days, seed ${r.seed}: ${r.events.toLocaleString('en')} events`],
      ['entity rows (train / val / test)', `${r.entityRows.toLocaleString('en')} (${r.split.train.toLocaleString('en')} / ${r.split.val.toLocaleString('en')} / ${r.split.test.toLocaleString('en')})`],
      ['workers', `1 cpu, ${r.trainWorkers} train (${r.training.backend})`],
      ['status', `${r.status}${r.gate.reasons.length ? ' (gate reasons below)' : ''}`],
      ['test AUC (oracle)', `${r.metrics.testAuc.toFixed(4)} (${r.oracleAuc?.toFixed(4) ?? '–'})`],
      ['workflow wall s', `${fmt(r.totalWallSeconds)}  (budget ${WALL_BUDGET_SECONDS}: ${r.withinBudget ? 'within' : 'OVER'})`],
      ['load before / max during', `${fmt(r.loadBefore)}${r.quietBefore ? '' : ' (not quiet)'} / ${fmt(r.loadMaxDuring)}`],
    ]),
  );
  for (const reason of r.gate.reasons) log(`  gate: ${reason}`);
  log('');
  const stageRows: [string, string][] = r.stages.map((s) => [
    s.stage,
    `${fmt(s.wallSeconds).padStart(8)}  ${fmt((100 * s.wallSeconds) / r.totalWallSeconds, 1).padStart(5)} %  ` +
      `activity ${fmt(s.activitySeconds).padStart(8)}  step ${s.stepSeconds === null ? '       –' : fmt(s.stepSeconds).padStart(8)}  queue ${fmt(s.queueSeconds).padStart(6)}  ×${s.activities}`,
  ]);
  log(
    table(
      'stages (wall s from the previous stage end, share; activity = started→closed summed; step = ml.run_steps, where a promoted ' +
        "trial's row holds only its last rung; queue = scheduled→started)",
      stageRows,
    ),
  );
  log('');
  const o = r.overhead;
  log(
    table('orchestration overhead', [
      ['workflow wall s', fmt(o.workflowWallSeconds)],
      ['activity time summed s (parallel counted each)', fmt(o.activitySumSeconds)],
      ['busy s (≥ 1 activity running)', fmt(o.busySeconds)],
      ['orchestration s (wall − busy)', `${fmt(o.orchestrationSeconds)} (${fmt(o.orchestrationPct)} %)`],
      ['workflow tasks (scheduled → completed)', `${o.workflowTasks}, ${fmt(o.workflowTaskSeconds)} s`],
      [`search: ${o.searchSlots} train slots busy`, `${fmt(100 * o.searchSlotUtilisation, 1)} % (${fmt(o.searchIdleSlotSeconds, 1)} slot-s idle)`],
      ['search epochs (median s/epoch)', `${r.training.searchEpochs} (${r.training.searchSecondsPerEpoch ?? '–'}) over rungs ${r.training.rungs}`],
      ['final epochs (s/epoch)', `${r.training.finalEpochs ?? '–'} (${r.training.finalSecondsPerEpoch ?? '–'})`],
      ['ensemble replica epochs (s/epoch)', `${r.training.replicaEpochs ?? '–'} (${r.training.replicaSecondsPerEpoch ?? '–'})`],
      ['baseline epochs (s/epoch)', `${r.training.baselineEpochs ?? '–'} (${r.training.baselineSecondsPerEpoch ?? '–'})`],
    ]),
  );
  log('');
  log(
    table(`peak RSS per process, MB (budget ${RSS_BUDGET_MB}: ${r.rssWithinBudget ? 'within' : 'OVER'})`, [
      ...r.processes.map((p): [string, string] => [`${p.role}${p.pid ? ` (pid ${p.pid})` : ''}`, `${fmt(p.peakRssMb, 1)}${p.peakAnonMb !== null ? `  (anon ${fmt(p.peakAnonMb, 1)})` : ''}`]),
      ['max', fmt(r.maxRssMb, 1)],
    ]),
  );
  for (const p of r.profiles ?? []) {
    log('');
    log(
      table(`cpu profile: ${p.role}, ${p.sampledSeconds} s sampled (${Object.entries(p.categories).map(([k, v]) => `${k} ${v} s`).join(', ')})`, [
        ...Object.entries(p.modules).map(([k, v]): [string, string] => [`[${k}]`, `${fmt(v, 1)} s`]),
        ...p.top.map((t): [string, string] => [`${t.fn} ${t.url}`.slice(0, 90), `${fmt(t.seconds)} s  ${fmt(t.pct, 1)} %`]),
      ]),
    );
  }
  log('');
}

export function recordE2e(r: E2eResult): string {
  return appendResult('e2e', r);
}

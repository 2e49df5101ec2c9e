/**
 * `bench score`: the scoreUsers workflow on the e2e bench shop's active users, with one real cpu worker process
 * (it hosts the workflow and the scoring activities, as in production), writing to ml.scores in Postgres. Reports
 * users per second end to end and per phase from the workflow's history, rows written and peak RSS, then runs the
 * same score run id again: the row count must not change (a rerun replaces its rows).
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Client } from '@temporalio/client';
import { from as copyFrom } from 'pg-copy-streams';
import type { PipelineConfigInput } from '../pipeline/config.js';
import { scoringKeys } from '../activities/score-features.js';
import { spawnWorkers, stopWorkers, waitForPollers, type WorkerProcess } from '../cli/workers.js';
import { stackStatus } from '../infra/index.js';
import { initBackend } from '../ml/backend.js';
import { predict } from '../ml/model.js';
import { transform, type Preprocessor } from '../ml/preprocess.js';
import type { Frame } from '../ml/types.js';
import { ipcToFrame } from '../store/arrow.js';
import { keys, sha256 } from '../store/artifacts.js';
import { connectTemporal } from '../workers/deps.js';
import { trainPipeline } from '../workflows/pipeline.js';
import { SCORING_DEFAULTS, scoreUsers, type ScoreUsersOutput } from '../workflows/score.js';
import { appendResult, benchWorkerDatabaseEnv, deletePrefix, ensureShop, fmt, machine, openBench, provenance, peakRssMb, round, seconds, table, waitForQuiet, type BenchServices, type Log, type ShopShape } from './common.js';
import {
  E2E_DATABASE,
  E2E_MODEL,
  historyTiming,
  postgresProcesses,
  ProcessMonitor,
  RSS_BUDGET_MB,
  workerExit,
  workerRoles,
  type ProcessPeak,
} from './e2e.js';

/** The model trained here when the e2e suite has not registered one yet (a small budget: this suite times scoring). */
export const SCORE_FALLBACK_MODEL = 'bench-score';

export interface ScoreBenchOptions extends ShopShape {
  model?: string;
  chunkRows?: number;
  parallelism?: number;
  quietLoad: number;
  waitMinutes: number;
  reseed: boolean;
  json: boolean;
}

export interface ScorePhase {
  phase: 'start' | 'features' | 'chunks' | 'deciles';
  /** wall time of the phase (first activity scheduled → last closed) */
  wallSeconds: number;
  /** activity executions started → closed, summed (chunks run `parallelism` at a time) */
  activitySeconds: number;
  activities: number;
  usersPerSecond: number;
}

export interface ScoreRun {
  workflowId: string;
  temporalRunId: string;
  wallSeconds: number;
  usersPerSecond: number;
  rows: number;
  chunks: number;
  phases: ScorePhase[];
  /** rows, sum of probabilities and distinct users in ml.scores for the run id after this run */
  table: { rows: number; users: number; probabilitySum: number };
  loadBefore: number;
}

export interface ChunkProfile {
  rows: number;
  /** S3 read + sha256 + Arrow decode of the feature shard (once per shard in the worker: it keeps the last one) */
  readSeconds: number;
  transformSeconds: number;
  /** model load + forward pass */
  predictSeconds: number;
  /** the delete of earlier rows of the same users (index probes on ml.scores) */
  deleteSeconds: number;
  /** COPY text built and streamed into a table shaped like ml.scores (same indexes), rolled back */
  copySeconds: number;
  backend: string;
}

export interface ScoreResult {
  suite: 'score';
  model: string;
  modelVersion: number;
  modelTrainedHere: boolean;
  users: number;
  days: number;
  seed: number;
  events: number;
  asOf: string;
  activeDays: number;
  chunkRows: number;
  parallelism: number;
  /** the first run */
  usersPerSecond: number;
  rowsWritten: number;
  wallSeconds: number;
  runs: ScoreRun[];
  /** the rerun of the same id left the same rows */
  idempotent: boolean;
  chunkProfile: ChunkProfile;
  maxRssMb: number;
  rssWithinBudget: boolean;
  processes: ProcessPeak[];
  quietBefore: boolean;
  /** the highest 1-minute load average seen during the two runs */
  loadMaxDuring: number;
  gitCommit: string;
  date: string;
  machine: ReturnType<typeof machine>;
}

export async function runScoreBench(opts: ScoreBenchOptions, log: Log): Promise<ScoreResult> {
  log('▸ services');
  const bench = await openBench({ log, database: E2E_DATABASE });
  const processes: WorkerProcess[] = [];
  let client: Client | undefined;
  let monitor: ProcessMonitor | undefined;
  const cleanup: string[] = [];
  try {
    log(`▸ synthetic shop in database ${E2E_DATABASE}: ${opts.users} users, ${opts.days} days, seed ${opts.seed}`);
    const shop = await ensureShop(bench, opts, { reseed: opts.reseed, log });
    client = await connectTemporal(bench.connections);
    const dataDir = path.join(bench.env.PROPENSITY_DATA_DIR, 'bench-score');
    const workerEnv = { ...bench.env, PROPENSITY_DATA_DIR: dataDir };
    const queues = { cpu: `bench-score-cpu-${randomUUID()}`, train: `bench-score-train-${randomUUID()}` };
    const extraEnv = { ...benchWorkerDatabaseEnv(bench), PROPENSITY_CPU_QUEUE: queues.cpu, PROPENSITY_TRAIN_QUEUE: queues.train, PROPENSITY_CODE_VERSION: bench.codeVersion };

    // The model: the one named, else the e2e suite's champion, else a small one trained here.
    let model = opts.model ?? (await champion(bench, E2E_MODEL)) ?? (await champion(bench, SCORE_FALLBACK_MODEL));
    let trainedHere = false;
    if (!model) {
      log(`▸ no registered ${E2E_MODEL} or ${SCORE_FALLBACK_MODEL} model: training a small ${SCORE_FALLBACK_MODEL} (2 trials, 3 epochs; untimed)`);
      const trainers = spawnWorkers(workerEnv, { cpu: 1, train: 1 }, extraEnv);
      processes.push(...trainers);
      await waitForPollers(client, [{ name: queues.cpu, min: 1, kind: 'workflow' }, { name: queues.train, min: 1, kind: 'activity' }], processes);
      const config: PipelineConfigInput = {
        modelName: SCORE_FALLBACK_MODEL,
        source: { kind: 'events', cutoff: shop.cutoff.toISOString(), horizonDays: opts.horizonDays },
        search: { trials: 2, parallelism: 1, epochs: 3, halving: { eta: 3, minEpochs: 3 } },
        training: { finalEpochs: 3 },
        // any trained model will do for timing the scoring: no gate
        gate: { thresholds: [], versusBaseline: { enabled: false }, versusChampion: { enabled: false } },
        evaluation: { bootstrapSamples: 20, importanceRepeats: 1 },
      };
      const trained = await Promise.race([
        client.workflow.execute(trainPipeline, {
          taskQueue: queues.cpu,
          workflowId: `train-${SCORE_FALLBACK_MODEL}-${randomUUID()}`,
          args: [{ config, trigger: 'bench', taskQueues: queues }],
        }),
        workerExit(processes),
      ]);
      log(`  ${trained.status} v${trained.modelVersion} (test AUC ${trained.metrics.testAuc.toFixed(4)})`);
      cleanup.push(`runs/${trained.runId}/`);
      // the scoring worker starts fresh, so that its peak RSS is the scoring's alone
      await stopWorkers(processes);
      processes.length = 0;
      model = `${SCORE_FALLBACK_MODEL}:${trained.modelVersion}`;
      trainedHere = true;
    }

    const quiet = await waitForQuiet(opts.quietLoad, opts.waitMinutes, log);
    log('▸ worker: 1 cpu (workflow + scoring activities)');
    processes.push(...spawnWorkers(workerEnv, { cpu: 1, train: 0 }, extraEnv));
    await waitForPollers(client, [{ name: queues.cpu, min: 1, kind: 'workflow' }, { name: queues.cpu, min: 1, kind: 'activity' }], processes);
    const roles = workerRoles(processes);
    const stack = await stackStatus({ env: bench.env, log: () => {} });
    const postmaster = stack.find((s) => s.name === 'postgres' && s.state === 'running')?.pid;
    monitor = new ProcessMonitor(() => [...roles, ...postgresProcesses(postmaster)]);
    monitor.start();

    // One asOf for both runs, so that the rerun scores exactly the same users: the shop's last day.
    const asOf = new Date(Math.min(Date.now(), new Date(shop.cutoff).getTime() + opts.horizonDays * 86_400_000)).toISOString();
    const activeDays = SCORING_DEFAULTS.activeDays;
    const chunkRows = opts.chunkRows ?? SCORING_DEFAULTS.chunkRows;
    const parallelism = opts.parallelism ?? SCORING_DEFAULTS.parallelism;
    const workflowId = `bench-score-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}`;
    const runs: ScoreRun[] = [];
    let output: ScoreUsersOutput | undefined;
    for (const attempt of ['first run', 'rerun of the same id']) {
      const loadBefore = round(os.loadavg()[0], 2);
      log(`▸ scoreUsers ${workflowId} (${attempt}): model ${model}, asOf ${asOf}, chunks of ${chunkRows}, parallelism ${parallelism}, load ${fmt(loadBefore)} before`);
      const handle = await client.workflow.start(scoreUsers, {
        taskQueue: queues.cpu,
        workflowId,
        args: [{ model, asOf, activeDays, chunkRows, parallelism, trigger: 'bench', taskQueues: { cpu: queues.cpu } }],
      });
      const t0 = performance.now();
      output = await Promise.race([handle.result(), workerExit(processes)]);
      log(`  ${output.rows.toLocaleString('en')} users in ${output.chunks} chunks, ${fmt(seconds(t0))} s`);
      cleanup.push(`scoring/${handle.firstExecutionRunId}/`);
      runs.push(await describeRun(client, bench, workflowId, handle.firstExecutionRunId, output, loadBefore));
    }
    monitor.stop();
    const processPeaks: ProcessPeak[] = [...monitor.peaks(), { role: 'bench (this process)', pid: process.pid, peakRssMb: peakRssMb(), peakAnonMb: null }];
    const maxRssMb = Math.max(...processPeaks.map((p) => p.peakRssMb));
    await stopWorkers(processes);
    processes.length = 0;

    log('▸ chunk profile: one chunk of the first run, step by step in this process');
    const chunkProfile = await profileChunk(bench, runs[0].temporalRunId, output!, Math.min(chunkRows, runs[0].rows));

    const [first, second] = runs;
    return {
      suite: 'score',
      model: model!,
      modelVersion: output!.modelVersion,
      modelTrainedHere: trainedHere,
      users: opts.users,
      days: opts.days,
      seed: opts.seed,
      events: shop.events,
      asOf,
      activeDays,
      chunkRows,
      parallelism,
      usersPerSecond: first.usersPerSecond,
      rowsWritten: first.table.rows,
      wallSeconds: first.wallSeconds,
      runs,
      idempotent: first.table.rows === second.table.rows && first.table.users === second.table.users && Math.abs(first.table.probabilitySum - second.table.probabilitySum) < 1e-6 * first.table.rows,
      chunkProfile,
      maxRssMb,
      rssWithinBudget: maxRssMb <= RSS_BUDGET_MB,
      processes: processPeaks,
      quietBefore: quiet.quiet,
      loadMaxDuring: monitor.loadMax,
      ...provenance(bench.codeVersion),
    };
  } finally {
    monitor?.stop();
    await stopWorkers(processes);
    await client?.connection.close().catch(() => {});
    for (const prefix of cleanup) await deletePrefix(bench.s3, bench.store.bucket, prefix).catch(() => {});
    await bench.close();
  }
}

async function champion(bench: BenchServices, modelName: string): Promise<string | null> {
  const row = await bench.db.db
    .selectFrom('ml.model_aliases')
    .select('version')
    .where('model_name', '=', modelName)
    .where('alias', '=', 'champion')
    .executeTakeFirst();
  return row ? `${modelName}:${row.version}` : null;
}

const PHASE_OF: Record<string, ScorePhase['phase']> = {
  startScoreRun: 'start',
  buildScoringFeatures: 'features',
  scoreChunk: 'chunks',
  finalizeScoreRun: 'deciles',
};

async function describeRun(
  client: Client,
  bench: BenchServices,
  workflowId: string,
  temporalRunId: string,
  out: ScoreUsersOutput,
  loadBefore: number,
): Promise<ScoreRun> {
  const h = await historyTiming(client, workflowId);
  const phases: ScorePhase[] = [];
  for (const phase of ['start', 'features', 'chunks', 'deciles'] as const) {
    const spans = h.spans.filter((s) => PHASE_OF[s.type] === phase);
    if (!spans.length) continue;
    const wall = (Math.max(...spans.map((s) => s.closed)) - Math.min(...spans.map((s) => s.scheduled))) / 1000;
    phases.push({
      phase,
      wallSeconds: round(wall, 2),
      activitySeconds: round(spans.reduce((a, s) => a + s.closed - s.started, 0) / 1000, 2),
      activities: spans.length,
      usersPerSecond: round(out.rows / wall, 0),
    });
  }
  const wallSeconds = (h.end - h.start) / 1000;
  const { rows } = await bench.db.pool.query(
    'select count(*)::float8 as rows, count(distinct user_id)::float8 as users, coalesce(sum(probability), 0) as psum from ml.scores where score_run_id = $1',
    [workflowId],
  );
  return {
    workflowId,
    temporalRunId,
    wallSeconds: round(wallSeconds, 2),
    usersPerSecond: round(out.rows / wallSeconds, 0),
    rows: out.rows,
    chunks: out.chunks,
    phases,
    table: { rows: Number(rows[0].rows), users: Number(rows[0].users), probabilitySum: Number(rows[0].psum) },
    loadBefore,
  };
}

/**
 * The scoreChunk activity's steps, timed one by one on the first feature shard: what the chunk phase's time is
 * made of (the activity itself reports only its total). The COPY goes into a table shaped like ml.scores with the
 * same indexes, inside a transaction that is rolled back, so ml.scores is untouched.
 */
async function profileChunk(bench: BenchServices, temporalRunId: string, out: ScoreUsersOutput, rows: number): Promise<ChunkProfile> {
  const backend = await initBackend('auto');
  let t = performance.now();
  const bytes = await bench.store.getKey(scoringKeys.features(temporalRunId, 0));
  sha256(bytes);
  const shard = ipcToFrame(bytes);
  const readSeconds = seconds(t);
  const n = Math.min(rows, shard.ids.length);
  const frame: Frame = {
    ids: shard.ids.slice(0, n),
    label: shard.label.subarray(0, n),
    numeric: Object.fromEntries(Object.entries(shard.numeric).map(([k, v]) => [k, v.subarray(0, n)])),
    categorical: Object.fromEntries(Object.entries(shard.categorical).map(([k, v]) => [k, v.slice(0, n)])),
  };
  const file = (f: string) => bench.store.getKey(keys.modelFile(out.modelName, out.modelVersion, f));
  const [modelJson, weights, preBytes] = await Promise.all([file('model.json'), file('weights.bin'), file('preprocessing.json')]);
  const pre = JSON.parse(new TextDecoder().decode(preBytes)) as Preprocessor;
  t = performance.now();
  const m = transform(pre, frame);
  const transformSeconds = seconds(t);
  t = performance.now();
  const p = await predict({ modelJson: JSON.parse(new TextDecoder().decode(modelJson)), weights }, m.x, m.rows, m.cols);
  const predictSeconds = seconds(t);

  const client = await bench.db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('CREATE TABLE bench.score_copy_probe (LIKE ml.scores INCLUDING ALL)');
    t = performance.now();
    await client.query('delete from ml.scores where score_run_id = $1 and user_id = any($2::text[])', [`probe-${randomUUID()}`, frame.ids]);
    const deleteSeconds = seconds(t);
    const scoredAt = new Date().toISOString();
    async function* lines() {
      for (let i = 0; i < n; i += 2000) {
        let text = '';
        for (let j = i; j < Math.min(i + 2000, n); j++) text += `probe\t${frame.ids[j]}\t${out.modelName}\t${out.modelVersion}\t${scoredAt}\t${p[j]}\n`;
        yield text;
      }
    }
    t = performance.now();
    await pipeline(
      Readable.from(lines()),
      client.query(copyFrom('COPY bench.score_copy_probe (score_run_id, user_id, model_name, model_version, scored_at, probability) FROM STDIN')),
    );
    const copySeconds = seconds(t);
    return {
      rows: n,
      readSeconds: round(readSeconds, 3),
      transformSeconds: round(transformSeconds, 3),
      predictSeconds: round(predictSeconds, 3),
      deleteSeconds: round(deleteSeconds, 3),
      copySeconds: round(copySeconds, 3),
      backend: backend.name,
    };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}

export function printScore(r: ScoreResult, log: Log): void {
  const [first, second] = r.runs;
  const phaseRows = (run: ScoreRun): [string, string][] =>
    run.phases.map((p) => [
      `  ${p.phase}`,
      `${fmt(p.wallSeconds).padStart(7)} s  ${String(p.usersPerSecond.toLocaleString('en')).padStart(9)} users/s  (${p.activities} activit${p.activities === 1 ? 'y' : 'ies'}, ${fmt(p.activitySeconds)} s summed)`,
    ]);
  const c = r.chunkProfile;
  const chunkTotal = c.transformSeconds + c.predictSeconds + c.deleteSeconds + c.copySeconds;
  const share = (x: number) => `${fmt(x, 3)} s  (${fmt((100 * x) / chunkTotal, 0)} %)`;
  log('');
  log(
    table(`score benchmark: scoreUsers with ${r.model} (v${r.modelVersion}) on one cpu worker, into ml.scores`, [
      ['shop', `${r.users.toLocaleString('en')} users, ${r.days} days, ${r.events.toLocaleString('en')} events; asOf ${r.asOf}, active ${r.activeDays} days`],
      ['chunks', `${first.chunks} of ≤ ${r.chunkRows.toLocaleString('en')} rows, ${r.parallelism} at a time`],
      ['users scored (rows written)', `${first.rows.toLocaleString('en')} (${r.rowsWritten.toLocaleString('en')})`],
      ['first run: wall s, users/s', `${fmt(first.wallSeconds)} s, ${first.usersPerSecond.toLocaleString('en')} users/s (load ${fmt(first.loadBefore)} before)`],
      ...phaseRows(first),
      ['rerun (same id): wall s, users/s', `${fmt(second.wallSeconds)} s, ${second.usersPerSecond.toLocaleString('en')} users/s (load ${fmt(second.loadBefore)} before)`],
      ...phaseRows(second),
      ['rows after run 1 / run 2', `${first.table.rows.toLocaleString('en')} / ${second.table.rows.toLocaleString('en')}: ${r.idempotent ? 'idempotent' : 'CHANGED'}`],
      [`one chunk step by step (${c.rows.toLocaleString('en')} rows, ${c.backend})`, ''],
      ['  shard read + decode (once per shard)', `${fmt(c.readSeconds, 3)} s`],
      ['  transform', share(c.transformSeconds)],
      ['  predict', share(c.predictSeconds)],
      ['  delete probe', share(c.deleteSeconds)],
      ['  COPY', share(c.copySeconds)],
      ...r.processes.map((p): [string, string] => [`peak RSS ${p.role}`, `${fmt(p.peakRssMb, 1)} MB`]),
      ['max 1-minute load during the runs', fmt(r.loadMaxDuring)],
      ['max RSS', `${fmt(r.maxRssMb, 1)} MB (budget ${RSS_BUDGET_MB}: ${r.rssWithinBudget ? 'within' : 'OVER'})`],
    ]),
  );
  log('');
}

export function recordScore(r: ScoreResult): string {
  return appendResult('score', r);
}

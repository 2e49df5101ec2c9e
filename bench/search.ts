/**
 * `bench search`: wall time of the hyperparameterSearch child workflow (the pipeline's search stage, successive
 * halving included) with one real train worker process, then with two, on the demo-sized synthetic shop. The
 * workflow runs in this process; the trials run in `workers/train.ts` processes started as `propensity demo` starts
 * them, on a task queue of this bench's own, so no other worker can take a trial.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import type { PipelineConfig } from '../pipeline/config.js';
import { spawnWorkers, stopWorkers, waitForPollers, type WorkerProcess } from '../cli/workers.js';
import type { ArtifactRef } from '../store/artifacts.js';
import { connectTemporal, WORKFLOWS_PATH } from '../workers/deps.js';
import { searchInput } from '../workflows/inputs.js';
import { hyperparameterSearch, searchProgressQuery, type HyperparameterSearchOutput } from '../workflows/search.js';
import { appendResult, benchWorkerDatabaseEnv, deletePrefix, ensureShop, fmt, machine, openBench, provenance, round, seconds, table, type BenchServices, type Log } from './common.js';

/** Its own database: the demo-sized shop here never fights with the ingest suite's larger one in propensity_bench. */
export const SEARCH_DATABASE = 'propensity_bench_search';

export interface SearchBenchOptions {
  users: number;
  days: number;
  seed: number;
  horizonDays: number;
  trials: number;
  /** the search's largest epoch budget (search.epochs); the rest of the search config is the pipeline's default */
  epochs?: number;
  /** search.space keys to replace (bench train pins the standard encoding, the one matrix Keras reads) */
  space?: Record<string, unknown>;
  reseed: boolean;
  json: boolean;
}

export interface SearchRun {
  trainWorkers: number;
  parallelism: number;
  wallSeconds: number;
  rungs: { budget: number; trials: number }[];
  failed: number;
  bestValAuc: number | null;
  /** epochs trained over all trials and rungs (a promoted trial counts only the epochs after its resume) */
  epochsTrained: number;
  backend: string;
  /** 1-minute load average just before the run (other work on the machine shows here) */
  loadBefore: number;
}

export interface SearchResult {
  suite: 'search';
  trials: number;
  /** wall seconds of the hyperparameterSearch workflow with 1 train worker (parallelism 1) */
  searchWallOurs1: number;
  /** the same with 2 train workers (parallelism 2) */
  searchWallOurs2: number;
  /** searchWallOurs1 / searchWallOurs2 */
  speedup: number;
  users: number;
  days: number;
  seed: number;
  trainRows: number;
  valRows: number;
  search: { epochs: number; patience: number; halving: { eta: number; minEpochs: number }; seed: number };
  runs: SearchRun[];
  gitCommit: string;
  date: string;
  machine: ReturnType<typeof machine>;
}

/** MockActivityEnvironment.run with the activity's own argument and result types. */
const call = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run(fn as never, ...(args as unknown as never[])) as Promise<R>;

export async function runSearchBench(opts: SearchBenchOptions, log: Log): Promise<SearchResult> {
  log('▸ services');
  const bench = await openBench({ log, database: SEARCH_DATABASE });
  const runIds: string[] = [];
  const acts = createActivities({ db: bench.db, store: bench.store, codeVersion: bench.codeVersion });
  let native: NativeConnection | undefined;
  let client: Awaited<ReturnType<typeof connectTemporal>> | undefined;
  try {
    log(`▸ synthetic shop in database ${SEARCH_DATABASE}: ${opts.users} users, ${opts.days} days, seed ${opts.seed}`);
    const { cutoff } = await ensureShop(bench, opts, { reseed: opts.reseed, log });

    // The search's inputs, once: ingest → clean → split as the pipeline's cpu worker runs them (untimed).
    const stamp = new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15);
    const configInput = (parallelism: number) => ({
      modelName: 'bench-search',
      source: { kind: 'events', cutoff: cutoff.toISOString(), horizonDays: opts.horizonDays },
      search: { trials: opts.trials, parallelism, ...(opts.epochs && { epochs: opts.epochs }), ...(opts.space && { space: opts.space }) },
    });
    const dataRun = `bench-search-${stamp}-data`;
    runIds.push(dataRun);
    log('▸ ingest + clean + split (the search input, untimed)');
    const { config } = await call(acts.startRun, { runId: dataRun, workflowId: dataRun, config: configInput(1), trigger: 'bench' });
    const ingest = await call(acts.ingestSource, { runId: dataRun, source: config.source });
    const clean = await call(acts.cleanData, {
      runId: dataRun,
      modelName: config.modelName,
      mode: ingest.mode,
      raw: ingest.raw,
      quality: config.quality,
      eventQuarantineRate: ingest.events && ingest.events.total ? (ingest.events.total - ingest.events.valid) / ingest.events.total : 0,
    });
    const split = await call(acts.splitData, { runId: dataRun, clean: clean.clean, features: ingest.features, split: config.split });
    log(`  train ${split.sizes.train}, val ${split.sizes.val}, test ${split.sizes.test} rows`);
    const data = { train: split.train, val: split.val, preprocessing: split.preprocessing };

    // ERROR: the in-process workflow worker would warn that it hosts no activities, which is the point
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };
    const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quiet });
    const { address, tls, apiKey } = bench.connections.temporal;
    native = await NativeConnection.connect({ address, tls, apiKey });
    client = await connectTemporal(bench.connections);

    const runs: SearchRun[] = [];
    for (const workers of [1, 2]) {
      const runId = `bench-search-${stamp}-w${workers}`;
      runIds.push(runId);
      // a pipeline_runs row of its own (ml.trials references it), with the parallelism this run uses
      const started = await call(acts.startRun, { runId, workflowId: runId, config: configInput(workers), trigger: 'bench' });
      log(`▸ search: ${opts.trials} trials, ${workers} train worker${workers > 1 ? 's' : ''}, parallelism ${workers}`);
      const run = await timeSearch(bench, { native, client, bundle }, { runId, config: started.config, data, workers }, log);
      runs.push(run);
      log(
        `  ${fmt(run.wallSeconds)} s, rungs ${run.rungs.map((r) => `${r.trials}×${r.budget}ep`).join(' → ')}, ` +
          `${run.epochsTrained} epochs trained, best val AUC ${run.bestValAuc?.toFixed(4)}, ${run.failed} failed, backend ${run.backend}`,
      );
    }

    const [one, two] = runs;
    return {
      suite: 'search',
      trials: opts.trials,
      searchWallOurs1: round(one.wallSeconds),
      searchWallOurs2: round(two.wallSeconds),
      speedup: round(one.wallSeconds / two.wallSeconds),
      users: opts.users,
      days: opts.days,
      seed: opts.seed,
      trainRows: split.sizes.train,
      valRows: split.sizes.val,
      search: { epochs: config.search.epochs, patience: config.search.patience, halving: config.search.halving, seed: config.search.seed },
      runs,
      ...provenance(bench.codeVersion),
    };
  } finally {
    await client?.connection.close().catch(() => {});
    await native?.close().catch(() => {});
    // The runs stop at the search by design; their artifacts are the bench's own and would only fill the bucket.
    for (const runId of runIds) {
      await call(acts.finishRun, { runId, status: 'cancelled', error: { type: 'Benchmark', message: 'bench search stops every run after the search' } }).catch(() => {});
      await deletePrefix(bench.s3, bench.store.bucket, `runs/${runId}/`).catch(() => {});
    }
    await bench.close();
  }
}

/** One hyperparameterSearch with `workers` fresh train processes; the clock runs from the workflow's start to its result. */
async function timeSearch(
  bench: BenchServices,
  temporal: { native: NativeConnection; client: Awaited<ReturnType<typeof connectTemporal>>; bundle: WorkflowBundleWithSourceMap },
  { runId, config, data, workers }: { runId: string; config: PipelineConfig; data: Record<'train' | 'val' | 'preprocessing', ArtifactRef>; workers: number },
  log: Log,
): Promise<SearchRun> {
  const { client, native, bundle } = temporal;
  const queues = { cpu: `bench-search-cpu-${randomUUID()}`, train: `bench-search-train-${randomUUID()}` };
  const processes: WorkerProcess[] = [];
  try {
    // Worker logs in <dataDir>/bench-search/logs/, away from the demo's.
    const logEnv = { ...bench.env, PROPENSITY_DATA_DIR: path.join(bench.env.PROPENSITY_DATA_DIR, 'bench-search') };
    processes.push(
      ...spawnWorkers(logEnv, { cpu: 0, train: workers }, { ...benchWorkerDatabaseEnv(bench), PROPENSITY_TRAIN_QUEUE: queues.train, PROPENSITY_CODE_VERSION: bench.codeVersion }),
    );
    // Started and polling before the clock starts: process start and backend initialisation are not the search.
    await waitForPollers(client, [{ name: queues.train, min: workers, kind: 'activity' }], processes);
    const cpu = await Worker.create({ connection: native, namespace: client.options.namespace, taskQueue: queues.cpu, workflowBundle: bundle });
    const loadBefore = round(os.loadavg()[0], 2);
    const t0 = performance.now();
    const out: HyperparameterSearchOutput = await cpu.runUntil(async () => {
      const handle = await client.workflow.start(hyperparameterSearch, {
        taskQueue: queues.cpu,
        workflowId: `${runId}/search`,
        args: [searchInput(runId, config, data, queues.train)],
      });
      const ticker = setInterval(() => {
        handle
          .query(searchProgressQuery)
          .then((p) => log(`  ${fmt(seconds(t0), 0)} s: rung ${p.rung + 1}/${p.rungs.length} (${p.rungs[p.rung]} epochs), ${p.done}/${p.total} first-rung trials done, running ${p.running.join(' ') || '–'}`))
          .catch(() => {});
      }, 20_000);
      try {
        return await handle.result();
      } finally {
        clearInterval(ticker);
      }
    });
    const wallSeconds = seconds(t0);
    const rows = await bench.db.db
      .selectFrom('ml.trials')
      .select(['trial_id', 'epochs_run', 'resumed_from_epoch'])
      .where('run_id', '=', runId)
      .execute();
    // ml.trials keeps each trial's last rung; its curve covers every rung, so epochs_run is the trial's total
    const epochsTrained = rows.reduce((sum, r) => sum + (r.epochs_run ?? 0), 0);
    return {
      trainWorkers: workers,
      parallelism: config.search.parallelism,
      wallSeconds: round(wallSeconds),
      rungs: out.rungs,
      failed: out.failed,
      bestValAuc: out.best.valAuc,
      epochsTrained,
      backend: out.best.backend,
      loadBefore,
    };
  } finally {
    await stopWorkers(processes);
  }
}

export function printSearch(r: SearchResult, log: Log): void {
  const row = (run: SearchRun): [string, string] => [
    `${run.trainWorkers} train worker${run.trainWorkers > 1 ? 's' : ''} (parallelism ${run.parallelism}) s`,
    `${fmt(run.wallSeconds)}  (${run.epochsTrained} epochs, best val AUC ${run.bestValAuc?.toFixed(4) ?? '–'}, load ${fmt(run.loadBefore)} before)`,
  ];
  log('');
  log(
    table(`search benchmark: hyperparameterSearch workflow, ${r.trials} trials, wall time from start to result`, [
      ['shop', `${r.users.toLocaleString('en')} users, ${r.days} days, seed ${r.seed}`],
      ['train / val rows', `${r.trainRows.toLocaleString('en')} / ${r.valRows.toLocaleString('en')}`],
      ['search', `≤ ${r.search.epochs} epochs, halving eta ${r.search.halving.eta} from ${r.search.halving.minEpochs}, patience ${r.search.patience}`],
      ['rungs', r.runs[0].rungs.map((x) => `${x.trials}×${x.budget}ep`).join(' → ')],
      ...r.runs.map(row),
      ['speedup 1 → 2 workers', `${fmt(r.speedup)}×`],
      ['backend', r.runs[0].backend],
      ['code', r.gitCommit],
      ['machine', `${r.machine.cpus} cpus, ${r.machine.memGb} GB, node ${r.machine.node}`],
    ]),
  );
  log('');
}

export function recordSearch(r: SearchResult): string {
  return appendResult('search', r);
}

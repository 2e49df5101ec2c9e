/**
 * `bench train`: training speed of our MLP against Keras on the same matrix and configuration, and the wall time of
 * one 16-trial hyperparameterSearch against the same configurations trained one after another by Keras.
 *
 * Ours is timed through `trainMlp` itself (the code the trainTrial activity runs), each backend in a child process
 * of its own; the activity's per-epoch I/O (an S3 checkpoint, a Postgres update, a heartbeat) is left out there and
 * shown separately from the search: search wall time minus the epochs' own seconds.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../activities/index.js';
import { initBackend, type BackendName } from '../ml/backend.js';
import { trainMlp } from '../ml/model.js';
import { transform, type Preprocessor } from '../ml/preprocess.js';
import type { MlpParams } from '../ml/types.js';
import { cleanInput } from '../workflows/inputs.js';
import { appendResult, deletePrefix, ensureShop, fmt, load1, machine, openBench, provenance, ROOT, round, runChild, table, waitForQuiet, type Log } from './common.js';
import { cpuProfiler, printProfile, profileBreakdown, type ProfileBreakdown } from './profile.js';
import { ensureReferenceEnv, readMatrix, runReference, writeMatrices, type LabeledMatrix } from './reference/python.js';
import { runSearchBench, SEARCH_DATABASE } from './search.js';

/** The search part's space: the standard encoding only, since a PLE trial reads a matrix several times wider than Keras'. */
const SEARCH_SPACE = Object.freeze({ numericEncoding: ['standard'] });

export interface TrainBenchOptions {
  users: number;
  days: number;
  seed: number;
  horizonDays: number;
  /** the speed run's configuration */
  units: number[];
  batchSize: number;
  epochs: number;
  learningRate: number;
  backends: BackendName[];
  /** Keras thread counts to time (the first is the one `ratio` uses) */
  kerasThreads: number[];
  search: boolean;
  trials: number;
  searchEpochs?: number;
  quietLoad: number;
  waitMinutes: number;
  reseed: boolean;
  /** V8 CPU profile of each backend's timed epochs (warm-up left out), summarised in the result */
  profile?: boolean;
}

export interface BackendRun {
  backend: BackendName;
  available: boolean;
  /** why it could not be loaded */
  reason?: string;
  detail?: string;
  threads?: number;
  epochSeconds?: number[];
  rowsPerSec?: number;
  loadBefore?: number;
  /** with --profile: where the timed epochs' CPU time went */
  profile?: ProfileBreakdown;
}

interface KerasTrainOutput {
  keras: string;
  tensorflow: string;
  threads: number;
  epochSeconds: number[];
  rowsPerSec: number;
  valAuc: number;
}

interface KerasSearchOutput {
  keras: string;
  threads: number;
  trials: number;
  epochs: number;
  wallSeconds: number;
  perTrial: { trialId: string; epochs: number; seconds: number }[];
}

export interface TrainResult {
  suite: 'train';
  users: number;
  days: number;
  seed: number;
  trainRows: number;
  valRows: number;
  cols: number;
  config: Omit<MlpParams, 'patience'>;
  warmupEpochs: number;
  /** rows/s per epoch after warm-up (train rows / mean epoch seconds, the epoch's validation pass included) */
  oursRowsPerSec: Partial<Record<BackendName, number | null>>;
  bestBackend: BackendName;
  kerasRowsPerSec: number;
  /** ours (best backend) / Keras at kerasThreads[0] threads */
  ratio: number;
  /** each of our backends / Keras at kerasThreads[0] threads (null: the backend could not be loaded) */
  ratioToKeras: Partial<Record<BackendName, number | null>>;
  kerasThreads: number;
  /** Keras at every thread count timed */
  kerasByThreads: { threads: number; rowsPerSec: number; epochSeconds: number[]; loadBefore: number }[];
  backends: BackendRun[];
  searchWallOurs1: number | null;
  searchWallOurs2: number | null;
  searchWallKeras: number | null;
  search: {
    trials: number;
    /** epochs trained per trial by our 1-worker search, fed to Keras as its fixed epoch counts */
    epochs: number;
    /** seconds of the 1-worker search inside trainMlp's epochs: the rest is activity and orchestration overhead */
    oursEpochSeconds1: number;
    kerasThreads: number;
    rungs: { budget: number; trials: number }[];
    loadBefore: number[];
    /** the search.space keys the search ran with instead of the defaults (the encoding Keras reads) */
    space: Record<string, unknown>;
  } | null;
  notes: string[];
  /** 1-minute load average when the measurements started, and whether it was below --quiet-load */
  loadBefore: number;
  quietBefore: boolean;
  gitCommit: string;
  date: string;
  machine: ReturnType<typeof machine>;
}

const call = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run(fn as never, ...(args as unknown as never[])) as Promise<R>;

const WARMUP = 1;
const afterWarmup = (rows: number, secs: number[]) => {
  const timed = secs.slice(WARMUP);
  return timed.length ? (rows * timed.length) / timed.reduce((a, b) => a + b, 0) : NaN;
};

export async function runTrainBench(opts: TrainBenchOptions, log: Log): Promise<TrainResult> {
  if (opts.epochs <= WARMUP) throw new Error(`--epochs must be more than the ${WARMUP} warm-up epoch`);
  log('▸ services');
  const bench = await openBench({ log, database: SEARCH_DATABASE });
  const acts = createActivities({ db: bench.db, store: bench.store, codeVersion: bench.codeVersion });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'propensity-bench-train-'));
  const dataRun = `bench-train-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-data`;
  try {
    log('▸ reference environment (Python venv)');
    const python = await ensureReferenceEnv(log);

    log(`▸ synthetic shop in database ${SEARCH_DATABASE}: ${opts.users} users, ${opts.days} days, seed ${opts.seed}`);
    const { cutoff } = await ensureShop(bench, opts, { reseed: opts.reseed, log });
    // The same ingest → clean → split as the search suite's (same shop and split seed: byte-identical splits).
    log('▸ ingest + clean + split (untimed)');
    const { config } = await call(acts.startRun, {
      runId: dataRun,
      workflowId: dataRun,
      config: { modelName: 'bench-train', source: { kind: 'events', cutoff: cutoff.toISOString(), horizonDays: opts.horizonDays } },
      trigger: 'bench',
    });
    const ingest = await call(acts.ingestSource, { runId: dataRun, source: config.source });
    const clean = await call(acts.cleanData, cleanInput(dataRun, config, ingest));
    const split = await call(acts.splitData, { runId: dataRun, clean: clean.clean, features: ingest.features, split: config.split });
    const [trainFrame, valFrame, pre] = await Promise.all([
      bench.store.getFrame(split.train),
      bench.store.getFrame(split.val),
      bench.store.getJson<Preprocessor>(split.preprocessing),
    ]);
    const matrix = (f: typeof trainFrame): LabeledMatrix => ({ ...transform(pre, f), y: f.label });
    const train = matrix(trainFrame);
    const val = matrix(valFrame);
    writeMatrices(dir, { train, val }, { featureNames: pre.featureNames, source: `runs/${dataRun}/split` });
    log(`  train ${train.rows} × ${train.cols}, val ${val.rows} rows → ${dir}`);

    const params: MlpParams = {
      hiddenUnits: opts.units,
      dropout: 0.1,
      l2: 1e-4,
      learningRate: opts.learningRate,
      batchSize: opts.batchSize,
      epochs: opts.epochs,
      classWeight: 'none',
      patience: opts.epochs, // never stops early: every epoch is timed
    };
    const paramsFile = path.join(dir, 'params.json');
    writeFileSync(paramsFile, JSON.stringify(params));
    const describe = `[${params.hiddenUnits.join(', ')}] ReLU, dropout ${params.dropout}, L2 ${params.l2}, Adam ${params.learningRate}, batch ${params.batchSize}, ${params.epochs} epochs`;

    const quiet = await waitForQuiet(opts.quietLoad, opts.waitMinutes, log);
    const backends: BackendRun[] = [];
    for (const backend of opts.backends) {
      log(`▸ ours, ${backend} backend: ${describe}`);
      const loadBefore = load1();
      const child = (extra: string[]) =>
        runChild(
          process.execPath,
          ['--import', 'tsx', path.join(ROOT, 'bench', 'main.ts'), 'train-backend', '--data', dir, '--params', paramsFile, '--backend', backend, ...extra],
          // tfjs' start-up banner (install tfjs-node…) is noise here: the tensorflow row says whether it is there
          (l) => (l.trim().startsWith('{') || /Hi, looks like|={10,}|tfjs-node for more/.test(l) ? undefined : log(l)),
        ).then((out) => JSON.parse(out.trim().split('\n').at(-1)!) as BackendRun);
      const run: BackendRun = { ...(await child([])), loadBefore };
      if (opts.profile && run.available) {
        // a second run under the sampler, so that the timed figures above are not the profiler's
        const file = path.join(dir, `CPU.${backend}.cpuprofile`);
        await child(['--profile', file]);
        run.profile = profileBreakdown(file, `ours, ${backend}`, `${path.basename(file)} (a second, profiled run; deleted with the bench's temporary files)`);
      }
      backends.push(run);
      log(run.available ? `  ${fmt(run.rowsPerSec!, 0)} rows/s after warm-up; epochs ${run.epochSeconds!.map((s) => fmt(s)).join(' ')} s` : `  unavailable: ${run.reason}`);
    }
    const available = backends.filter((b) => b.available);
    if (!available.length) throw new Error(`no backend of ${opts.backends.join(', ')} could be loaded`);
    const best = available.reduce((a, b) => (b.rowsPerSec! > a.rowsPerSec! ? b : a));

    const kerasByThreads: TrainResult['kerasByThreads'] = [];
    for (const threads of opts.kerasThreads) {
      log(`▸ Keras, ${threads} thread${threads > 1 ? 's' : ''}: ${describe}`);
      const loadBefore = load1();
      const k = await runReference<KerasTrainOutput>(python, 'keras_train.py', ['--data', dir, '--params', paramsFile, '--epochs', String(opts.epochs), '--threads', String(threads), '--warmup', String(WARMUP)]);
      kerasByThreads.push({ threads, rowsPerSec: round(k.rowsPerSec, 1), epochSeconds: k.epochSeconds, loadBefore });
      log(`  ${fmt(k.rowsPerSec, 0)} rows/s after warm-up; epochs ${k.epochSeconds.map((s) => fmt(s)).join(' ')} s (keras ${k.keras}, tensorflow ${k.tensorflow})`);
    }
    const keras = kerasByThreads[0];

    let searchPart: Pick<TrainResult, 'searchWallOurs1' | 'searchWallOurs2' | 'searchWallKeras' | 'search'> = {
      searchWallOurs1: null, searchWallOurs2: null, searchWallKeras: null, search: null,
    };
    if (opts.search) {
      log(`▸ ours: hyperparameterSearch, ${opts.trials} trials, 1 then 2 train workers (bench search)`);
      const since = new Date();
      const ours = await runSearchBench(
        { users: opts.users, days: opts.days, seed: opts.seed, horizonDays: opts.horizonDays, trials: opts.trials, epochs: opts.searchEpochs, space: SEARCH_SPACE, reseed: false, json: false },
        (l) => log(`  ${l}`),
      );
      // The 1-worker run's trials: their sampled configurations, seeds and the epochs each actually trained.
      const run = await bench.db.db
        .selectFrom('ml.pipeline_runs')
        .select('run_id')
        .where('run_id', 'like', 'bench-search-%-w1')
        .where('started_at', '>=', since)
        .orderBy('started_at', 'desc')
        .executeTakeFirstOrThrow();
      const trials = await bench.db.db
        .selectFrom('ml.trials')
        .select(['trial_id', 'params', 'seed', 'epochs_run', 'curve'])
        .where('run_id', '=', run.run_id)
        .orderBy('trial_id')
        .execute();
      const oursEpochSeconds1 = trials.reduce((s, t) => s + ((t.curve ?? []) as { seconds: number }[]).reduce((a, p) => a + p.seconds, 0), 0);
      const trialsFile = path.join(dir, 'trials.json');
      writeFileSync(
        trialsFile,
        JSON.stringify(trials.map((t) => ({ trialId: t.trial_id, params: t.params, seed: Number(t.seed), epochs: t.epochs_run ?? 0 }))),
      );
      const epochs = trials.reduce((s, t) => s + (t.epochs_run ?? 0), 0);
      const threads = opts.kerasThreads[0];
      log(`▸ Keras: the same ${trials.length} configurations one after another, ${epochs} epochs as ours trained them, ${threads} threads`);
      const loadBefore = load1();
      const ks = await runReference<KerasSearchOutput>(python, 'keras_search.py', ['--data', dir, '--trials', trialsFile, '--threads', String(threads)]);
      log(`  ${fmt(ks.wallSeconds)} s for ${ks.epochs} epochs`);
      searchPart = {
        searchWallOurs1: ours.searchWallOurs1,
        searchWallOurs2: ours.searchWallOurs2,
        searchWallKeras: round(ks.wallSeconds),
        search: {
          trials: trials.length,
          epochs,
          oursEpochSeconds1: round(oursEpochSeconds1),
          kerasThreads: threads,
          rungs: ours.runs[0].rungs,
          loadBefore: [...ours.runs.map((r) => r.loadBefore), loadBefore],
          space: SEARCH_SPACE,
        },
      };
    }

    const { patience: _, ...configOut } = params;
    return {
      suite: 'train',
      users: opts.users,
      days: opts.days,
      seed: opts.seed,
      trainRows: train.rows,
      valRows: val.rows,
      cols: train.cols,
      config: configOut,
      warmupEpochs: WARMUP,
      oursRowsPerSec: Object.fromEntries(backends.map((b) => [b.backend, b.available ? round(b.rowsPerSec!, 1) : null])),
      bestBackend: best.backend,
      kerasRowsPerSec: keras.rowsPerSec,
      ratio: round(best.rowsPerSec! / keras.rowsPerSec),
      ratioToKeras: Object.fromEntries(backends.map((b) => [b.backend, b.available ? round(b.rowsPerSec! / keras.rowsPerSec) : null])),
      kerasThreads: keras.threads,
      kerasByThreads,
      backends,
      ...searchPart,
      notes: [
        'ours: trainMlp in a child process per backend; the wasm backend is single-threaded (one core per train worker); ' +
          'tensorflow is @tensorflow/tfjs-node on libtensorflow (`propensity setup tensorflow`), with TensorFlow\'s own thread pools (every core)',
        `Keras: tensorflow-cpu with intra- and inter-op threads pinned to the count shown; ratio uses ${keras.threads}`,
        `an epoch's seconds include its validation pass (predict, log loss, ROC-AUC, PR-AUC) on both sides; the first ${WARMUP} epoch is left out`,
        'search: Keras trains each configuration for the epochs our 1-worker search trained it (rungs added up), no early stopping; both read the standard-encoded matrix (search.space.numericEncoding pinned to standard)',
      ],
      loadBefore: quiet.load,
      quietBefore: quiet.quiet,
      ...provenance(bench.codeVersion),
    };
  } finally {
    await call(acts.finishRun, { runId: dataRun, status: 'cancelled', error: { type: 'Benchmark', message: 'bench train only reads the split' } }).catch(() => {});
    await deletePrefix(bench.s3, bench.store.bucket, `runs/${dataRun}/`).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    await bench.close();
  }
}

/**
 * The child side of the speed run (`bench train-backend`): one backend, the matrices the parent wrote, fixed epochs.
 * Prints one JSON line (a BackendRun); a backend that cannot be loaded is reported, not thrown.
 */
export async function trainBackendChild({ data, params: file, backend, profile }: { data: string; params: string; backend: BackendName; profile?: string }): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const params = JSON.parse(readFileSync(file, 'utf8')) as MlpParams;
  let info;
  try {
    info = await initBackend(backend);
  } catch (err) {
    console.log(JSON.stringify({ backend, available: false, reason: (err as Error).message } satisfies BackendRun));
    return;
  }
  const train = readMatrix(data, 'train');
  const val = readMatrix(data, 'val');
  // --profile: sample exactly the timed epochs (from the end of the warm-up epoch to the end of training)
  const profiler = profile ? await cpuProfiler() : undefined;
  const fit = await trainMlp({
    train, val, params, seed: 1234,
    onEpochEnd: profiler && (async (e) => (e.epoch === WARMUP ? profiler.start() : undefined)),
  });
  if (profiler && profile) await profiler.stop(profile);
  const epochSeconds = fit.history.map((h) => round(h.seconds, 4));
  console.log(
    JSON.stringify({
      backend,
      available: true,
      detail: info.detail,
      // tfjs' wasm backend runs without its threaded build in Node; cpu is plain JavaScript
      threads: backend === 'tensorflow' ? undefined : 1,
      epochSeconds,
      rowsPerSec: afterWarmup(train.rows, epochSeconds),
    } satisfies BackendRun),
  );
}

export function printTrain(r: TrainResult, log: Log): void {
  const rows: [string, string][] = [
    ['shop', `${r.users.toLocaleString('en')} users, ${r.days} days, seed ${r.seed}`],
    ['matrix (train / val)', `${r.trainRows.toLocaleString('en')} / ${r.valRows.toLocaleString('en')} rows × ${r.cols} cols`],
    ['MLP', `[${r.config.hiddenUnits.join(', ')}], dropout ${r.config.dropout}, L2 ${r.config.l2}, Adam ${r.config.learningRate}, batch ${r.config.batchSize}, ${r.config.epochs} epochs`],
    ...r.backends.map((b): [string, string] => [
      `ours, ${b.backend}${b.threads ? ` (${b.threads} thread)` : ''} rows/s`,
      b.available
        ? `${fmt(b.rowsPerSec!, 0)}  (${fmt(r.ratioToKeras?.[b.backend] ?? NaN, 3)}× Keras; load ${fmt(b.loadBefore ?? NaN)} before)`
        : `unavailable (${b.reason?.slice(0, 60)}…)`,
    ]),
    ...r.kerasByThreads.map((k): [string, string] => [`Keras, ${k.threads} thread${k.threads > 1 ? 's' : ''} rows/s`, `${fmt(k.rowsPerSec, 0)}  (load ${fmt(k.loadBefore)} before)`]),
    [`ratio ours (${r.bestBackend}) / Keras (${r.kerasThreads} threads)`, fmt(r.ratio, 3)],
  ];
  if (r.search) {
    rows.push(
      ['search', `${r.search.trials} trials, ${r.search.rungs.map((x) => `${x.trials}×${x.budget}ep`).join(' → ')}, ${r.search.epochs} epochs trained, space ${JSON.stringify(r.search.space)}`],
      ['ours, 1 train worker s', `${fmt(r.searchWallOurs1!)}  (${fmt(r.search.oursEpochSeconds1)} s of it inside epochs)`],
      ['ours, 2 train workers s', fmt(r.searchWallOurs2!)],
      [`Keras, sequential, ${r.search.kerasThreads} threads s`, fmt(r.searchWallKeras!)],
    );
  }
  rows.push(['load before', `${fmt(r.loadBefore)}${r.quietBefore ? '' : ' (not quiet)'}`], ['code', r.gitCommit], ['machine', `${r.machine.cpus} cpus, ${r.machine.memGb} GB, node ${r.machine.node}`]);
  log('');
  log(table(`train benchmark: rows/s per epoch after ${r.warmupEpochs} warm-up epoch, validation pass included`, rows));
  for (const n of r.notes) log(`  · ${n}`);
  for (const b of r.backends) if (b.available && b.backend === 'tensorflow') log(`  · tensorflow backend: ${b.detail}`);
  for (const b of r.backends) {
    if (!b.profile) continue;
    log('');
    printProfile(`profile of ours, ${b.backend}, timed epochs`, b.profile, log);
  }
  log('');
}

export const recordTrain = (r: TrainResult): string => appendResult('train', r);

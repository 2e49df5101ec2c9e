/**
 * `bench accuracy`: test ROC-AUC and PR-AUC of our pipeline's model next to LightGBM (random search of the same
 * budget, early stopping on the validation split) and Keras (our best hyperparameters, our final training's epochs
 * and early stopping), all three scored on the same test rows of the split the pipeline wrote; DeLong's paired test
 * of ours against each; on the synthetic shop also the oracle AUC (the generator's true probabilities).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PipelineConfigInput } from '../pipeline/config.js';
import { loadConfigFile } from '../cli/config-file.js';
import { followPipeline } from '../cli/follow.js';
import { spawnWorkers, stopWorkers, waitForPollers, type WorkerProcess } from '../cli/workers.js';
import { BANK_TABLE, grantBankRead, seedBankMarketing } from '../db/tables/bank-marketing.js';
import { initBackend } from '../ml/backend.js';
import { delongPairedTest, formatAucDiff, formatPValue } from '../ml/delong.js';
import { ensembleGain, formatEnsembleGain, type EnsembleGain } from '../ml/ensemble-gain.js';
import { prAuc, rocAuc } from '../ml/metrics.js';
import { predict } from '../ml/model.js';
import { transform, withEncoding, type Preprocessor } from '../ml/preprocess.js';
import { encodingOf, familyOf } from '../ml/search.js';
import type { MlpParams } from '../ml/types.js';
import { ipcToFrame } from '../store/arrow.js';
import { keys } from '../store/artifacts.js';
import { connectTemporal } from '../workers/deps.js';
import { trainPipeline, type TrainPipelineOutput } from '../workflows/pipeline.js';
import { appendResult, BENCH_DATABASE, benchWorkerDatabaseEnv, deletePrefix, ensureShop, fmt, machine, openBench, provenance, round, seconds, table, waitForQuiet, type Log } from './common.js';
import { ensureReferenceEnv, readPredictions, runReference, writeMatrices, type LabeledMatrix } from './reference/python.js';

export interface AccuracyBenchOptions {
  users: number;
  days: number;
  seed: number;
  horizonDays: number;
  /** synthetic shop: source.sequenceLength (each user's last N events, the sequence family's input); 0 or absent: none */
  sequenceLength?: number;
  /** a table-mode pipeline config file instead of the synthetic shop */
  config?: string;
  /** search.trials (default 16; table mode: the file's unless given) */
  trials?: number;
  /** search.space keys that replace the run's (e.g. { numericEncoding: ['ple', 'periodic'] }): an ablation */
  space?: Record<string, unknown>;
  /** training keys that replace the run's (e.g. { ensemble: { seeds: 8, maxMembers: 10 } }): an ablation */
  training?: Record<string, unknown>;
  trainWorkers: number;
  /** threads for LightGBM and Keras */
  threads: number;
  /** rows of public_data.bank_marketing to seed when a config reads it and it is missing */
  bankRows: number;
  quietLoad: number;
  waitMinutes: number;
  keepArtifacts: boolean;
  reseed: boolean;
}

interface KerasOutput {
  keras: string;
  tensorflow: string;
  threads: number;
  epochs: number;
  bestEpoch: number;
  stopReason: string;
  wallSeconds: number;
  valAuc: number;
  testAuc: number;
  embeddingIgnored: boolean;
}

interface LightgbmOutput {
  lightgbm: string;
  threads: number;
  configs: number;
  best: Record<string, number> & { rounds: number; valLogLoss: number; valAuc: number };
  testAuc: number;
  wallSeconds: number;
}

interface Scores {
  testAuc: number;
  testPrAuc: number;
}
export interface Versus {
  /** ours − theirs (test ROC-AUC) */
  diff: number;
  /** DeLong standard error of diff (absent in results written before it was kept) */
  se?: number;
  pValue: number;
}

export interface AccuracyResult {
  suite: 'accuracy';
  dataset:
    | { kind: 'synthetic'; users: number; days: number; seed: number; horizonDays: number; cutoff: string; sequenceLength?: number }
    | { kind: 'table'; config: string; query: string };
  split: TrainPipelineOutput['split'];
  positiveRates: TrainPipelineOutput['positiveRates'];
  cols: number;
  ours: Scores & {
    status: TrainPipelineOutput['status'];
    runId: string;
    trials: number;
    /** the search.space keys the bench replaced (--space); absent: the pipeline's defaults (or the config file's) */
    space?: Record<string, unknown>;
    /** the training keys the bench replaced (--training); absent: the pipeline's defaults (or the config file's) */
    training?: Record<string, unknown>;
    bestParams: unknown;
    finalEpochs: number;
    backend: string;
    wallSeconds: number;
    trainWorkers: number;
    /**
     * the shipped ensemble against its first member: on validation as the run recorded it (chosen there, so
     * optimistic), and on the test rows, both by paired DeLong (null: not recorded, or that member is not a family's best)
     */
    ensemble?: { members: string[]; valGain: EnsembleGain | null; testGain: EnsembleGain | null };
  };
  lightgbm: Scores & { version: string; configs: number; best: LightgbmOutput['best']; wallSeconds: number; threads: number };
  keras: Scores & { version: string; epochs: number; bestEpoch: number; stopReason: string; wallSeconds: number; threads: number; note?: string };
  /** synthetic shop only: ROC-AUC of the true probabilities on the same test rows */
  oracleAuc: number | null;
  /**
   * synthetic shop only: ours − the true probabilities on the same rows (minus the gap to the oracle), by DeLong's
   * paired test, so the gap has an SE (absent in results written before it was kept)
   */
  versusOracle?: Versus | null;
  /** each candidate family of the run side by side: its best trial by the search's rule, on the same test rows */
  families: FamilyScore[];
  delong: { lightgbm: Versus; keras: Versus };
  loadBefore: number;
  quietBefore: boolean;
  gitCommit: string;
  date: string;
  machine: ReturnType<typeof machine>;
}

export interface FamilyScore {
  /** e.g. 'logistic', 'mlp standard', 'mlp ple16', 'mlp periodic batch-ensemble 8', 'shipped (ensemble)' */
  family: string;
  trialId: string;
  valAuc: number | null;
  testAuc: number;
  /** ours − LightGBM on the test rows, DeLong's paired test */
  versusLightgbm: Versus;
}

const BANK_PATTERN = new RegExp(`\\b${BANK_TABLE.replace('.', '\\.')}\\b`, 'i');

export async function runAccuracyBench(opts: AccuracyBenchOptions, log: Log): Promise<AccuracyResult> {
  // Read the config before anything starts: a bad file fails here, changing nothing.
  const file = opts.config ? loadConfigFile(opts.config) : undefined;
  if (file && file.config.source.kind !== 'table') {
    throw new Error(`${opts.config}: bench accuracy --config takes a table-mode config (source.kind "table"); the synthetic shop is the default`);
  }
  if (file && opts.sequenceLength) {
    throw new Error(`--sequence-length ${opts.sequenceLength}: a table-mode config has no events to take sequences from; use it with the synthetic shop (no --config)`);
  }
  log('▸ services');
  const bench = await openBench({ log, database: BENCH_DATABASE });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'propensity-bench-accuracy-'));
  const workers: WorkerProcess[] = [];
  let runId: string | undefined;
  try {
    log('▸ reference environment (Python venv)');
    const python = await ensureReferenceEnv(log);

    let configInput: PipelineConfigInput;
    let dataset: AccuracyResult['dataset'];
    if (file) {
      const source = file.config.source as { kind: 'table'; query: string };
      if (BANK_PATTERN.test(source.query)) {
        const { rows } = await bench.db.pool.query(`select to_regclass($1) is not null as present`, [BANK_TABLE]);
        if (!rows[0].present || opts.reseed) {
          log(`▸ ${rows[0].present ? 'reseeding' : `${BANK_TABLE} is missing in ${BENCH_DATABASE}: seeding`} ${opts.bankRows} rows (seed 1)`);
          await seedBankMarketing(bench.db.pool, { rows: opts.bankRows, seed: 1 });
        } else {
          // seeded before the source role existed or was granted it: table-mode queries run as that role
          await grantBankRead(bench.db.pool);
        }
      }
      const raw = file.raw as PipelineConfigInput;
      configInput = opts.trials ? { ...raw, search: { ...raw.search, trials: opts.trials } } : raw;
      if (opts.training) configInput = { ...configInput, training: { ...configInput.training, ...opts.training } as never };
      if (opts.space) configInput = { ...configInput, search: { ...configInput.search, space: { ...configInput.search?.space, ...opts.space } as never } };
      dataset = { kind: 'table', config: opts.config!, query: source.query };
    } else {
      log(`▸ synthetic shop in database ${BENCH_DATABASE}: ${opts.users} users, ${opts.days} days, seed ${opts.seed}`);
      const shop = await ensureShop(bench, opts, { reseed: opts.reseed, log });
      configInput = {
        // one model name per shop shape: the drift limit and the champion comparison then only ever see the same shop
        modelName: `bench-accuracy-${opts.users}u-${opts.days}d-s${opts.seed}`,
        source: { kind: 'events', cutoff: shop.cutoff.toISOString(), horizonDays: opts.horizonDays, ...(opts.sequenceLength ? { sequenceLength: opts.sequenceLength } : {}) },
        search: { trials: opts.trials ?? 16, parallelism: opts.trainWorkers, ...(opts.space ? { space: opts.space as never } : {}) },
        ...(opts.training ? { training: opts.training as never } : {}),
      };
      dataset = {
        kind: 'synthetic', users: opts.users, days: opts.days, seed: opts.seed, horizonDays: opts.horizonDays, cutoff: shop.cutoff.toISOString(),
        ...(opts.sequenceLength ? { sequenceLength: opts.sequenceLength } : {}),
      };
    }

    // Our pipeline, as the demo runs it: one cpu worker and N train worker processes, on queues of this bench's own.
    const queues = { cpu: `bench-accuracy-cpu-${randomUUID()}`, train: `bench-accuracy-train-${randomUUID()}` };
    const logEnv = { ...bench.env, PROPENSITY_DATA_DIR: path.join(bench.env.PROPENSITY_DATA_DIR, 'bench-accuracy') };
    log(`▸ workers: 1 cpu, ${opts.trainWorkers} train (logs in ${logEnv.PROPENSITY_DATA_DIR}/logs)`);
    workers.push(
      ...spawnWorkers(logEnv, { cpu: 1, train: opts.trainWorkers }, {
        ...benchWorkerDatabaseEnv(bench), PROPENSITY_CPU_QUEUE: queues.cpu, PROPENSITY_TRAIN_QUEUE: queues.train, PROPENSITY_CODE_VERSION: bench.codeVersion,
      }),
    );
    const client = await connectTemporal(bench.connections);
    let out: TrainPipelineOutput;
    let wallSeconds: number;
    let quiet: Awaited<ReturnType<typeof waitForQuiet>>;
    try {
      await waitForPollers(client, [{ name: queues.cpu, min: 1, kind: 'workflow' }, { name: queues.train, min: opts.trainWorkers, kind: 'activity' }], workers);
      quiet = await waitForQuiet(opts.quietLoad, opts.waitMinutes, log);
      const workflowId = `bench-accuracy-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}`;
      log(`▸ ours: trainPipeline ${workflowId}`);
      const t0 = performance.now();
      const handle = await client.workflow.start(trainPipeline, {
        taskQueue: queues.cpu,
        workflowId,
        args: [{ config: configInput, trigger: 'bench', taskQueues: queues }],
      });
      runId = handle.firstExecutionRunId; // the pipeline's run id: its artifacts go even when it fails
      out = await followPipeline(client, handle, (l) => log(`  ${l}`));
      wallSeconds = seconds(t0);
    } finally {
      await client.connection.close().catch(() => {});
      await stopWorkers(workers.splice(0));
    }
    log(`  ${out.status}, test ROC-AUC ${out.metrics.testAuc.toFixed(4)}, ${fmt(wallSeconds, 1)} s`);

    // Exactly what the model saw: the run's split files and preprocessing, transformed as trainTrial does.
    const get = async (key: string) => bench.store.getKey(key);
    const [trainF, valF, testF] = await Promise.all((['train', 'val', 'test'] as const).map(async (p) => ipcToFrame(await get(keys.split(out.runId, p)))));
    const splitPre = JSON.parse(new TextDecoder().decode(await get(keys.preprocessing(out.runId)))) as Preprocessor;
    // the references get the standard encoding (trees do not need another; Keras gets what our best MLP params say)
    const pre = withEncoding(splitPre, undefined);
    const matrix = (f: typeof trainF, p = pre): LabeledMatrix => ({ ...transform(p, f), y: f.label });
    const [train, val, test] = [matrix(trainF), matrix(valF), matrix(testF)];
    writeMatrices(dir, { train, val, test }, { featureNames: pre.featureNames, source: `runs/${out.runId}/split` });

    // Our shipped model's test scores (for DeLong), on the backend it was trained on, through its own preprocessing.
    await initBackend(out.backend === 'tensorflow' || out.backend === 'cpu' ? out.backend : 'wasm');
    const shippedRef = out.model?.ref ?? { modelJson: { key: `runs/${out.runId}/final/model/model.json` }, weights: { key: `runs/${out.runId}/final/model/weights.bin` } };
    const shippedPre = out.model ? await bench.store.getJson<Preprocessor>(out.model.preprocessing) : splitPre;
    const testFor = async (modelKeys: { modelJson: { key: string }; weights: { key: string } }, p: Preprocessor) => {
      const [modelJson, weights] = await Promise.all([get(modelKeys.modelJson.key), get(modelKeys.weights.key)]);
      const m = transform(p, testF);
      return Float64Array.from(await predict({ modelJson: JSON.parse(new TextDecoder().decode(modelJson)), weights }, m.x, m.rows, m.cols));
    };
    const ours = await testFor(shippedRef, shippedPre);
    const oursScores = { testAuc: rocAuc(test.y, ours), testPrAuc: prAuc(test.y, ours) };
    if (Math.abs(oursScores.testAuc - out.metrics.testAuc) > 1e-6) {
      throw new Error(`our final model scores test ROC-AUC ${oursScores.testAuc} here but ${out.metrics.testAuc} in the pipeline: the matrices differ`);
    }

    const config = (await bench.db.db.selectFrom('ml.pipeline_runs').select('config').where('run_id', '=', out.runId).executeTakeFirstOrThrow()).config as {
      training: { finalEpochs: number; patience: number; seed: number };
      search: { trials: number };
    };
    const finalParams: MlpParams = { ...(out.best.params as MlpParams), epochs: config.training.finalEpochs, patience: config.training.patience };
    const paramsFile = path.join(dir, 'params.json');
    writeFileSync(paramsFile, JSON.stringify(finalParams));
    const threads = String(opts.threads);

    log(`▸ LightGBM: random search of ${config.search.trials} configurations, early stopping on validation log loss, ${threads} threads`);
    const lgbPred = path.join(dir, 'lightgbm.npy');
    const lgb = await runReference<LightgbmOutput>(python, 'lightgbm_tune.py', ['--data', dir, '--configs', String(config.search.trials), '--threads', threads, '--out-pred', lgbPred]);
    const lgbScores = readPredictions(lgbPred);
    log(`  best of ${lgb.configs}: ${lgb.best.rounds} rounds, ${lgb.best.num_leaves} leaves, val AUC ${lgb.best.valAuc.toFixed(4)}; ${fmt(lgb.wallSeconds)} s`);

    log(`▸ Keras: our best hyperparameters, up to ${finalParams.epochs} epochs, patience ${finalParams.patience}, ${threads} threads`);
    const kerasPred = path.join(dir, 'keras.npy');
    const keras = await runReference<KerasOutput>(python, 'keras_train.py', [
      '--data', dir, '--params', paramsFile, '--epochs', String(finalParams.epochs), '--patience', String(finalParams.patience),
      '--seed', String(config.training.seed), '--threads', threads, '--out-pred', kerasPred,
    ]);
    const kerasScores = readPredictions(kerasPred);
    log(`  ${keras.epochs} epochs (best ${keras.bestEpoch}), ${fmt(keras.wallSeconds)} s`);

    const versus = (theirs: Float64Array): Versus => versusOf(test.y, ours, theirs);
    const scores = (p: Float64Array): Scores => ({ testAuc: rocAuc(test.y, p), testPrAuc: prAuc(test.y, p) });
    const truth = dataset.kind === 'synthetic' ? await truthOf(bench.db.pool, testF.ids) : null;
    const oracleAuc = truth ? rocAuc(test.y, truth) : null;
    const { families, predictions } = await familyScores(bench, out, splitPre, testFor, test.y, (p) => versusOf(test.y, p, lgbScores));
    const members = out.model?.members ?? null;
    const ensemble = members && members.length > 1
      ? {
          members,
          valGain: ((await bench.db.db.selectFrom('ml.run_steps').select('detail').where('run_id', '=', out.runId).where('step', '=', 'ensemble').where('status', '=', 'succeeded').executeTakeFirst())?.detail as { gain?: EnsembleGain } | undefined)?.gain ?? null,
          testGain: ((first) => (first ? ensembleGain(test.y, ours, { id: members[0], val: first }) ?? null : null))(predictions.get(members[0])),
        }
      : undefined;
    families.push({ family: `shipped (${out.family ?? 'mlp'})`, trialId: out.model?.members?.join('+') ?? '', valAuc: null, testAuc: oursScores.testAuc, versusLightgbm: versus(lgbScores) });

    return {
      suite: 'accuracy',
      dataset,
      split: out.split,
      positiveRates: out.positiveRates,
      cols: test.cols,
      ours: {
        ...oursScores,
        status: out.status,
        runId: out.runId,
        trials: out.trials,
        ...(opts.space ? { space: opts.space } : {}),
        ...(opts.training ? { training: opts.training } : {}),
        bestParams: out.best.params,
        finalEpochs: config.training.finalEpochs,
        backend: out.backend,
        wallSeconds: round(wallSeconds, 1),
        trainWorkers: opts.trainWorkers,
        ...(ensemble && { ensemble }),
      },
      lightgbm: { ...scores(lgbScores), version: lgb.lightgbm, configs: lgb.configs, best: lgb.best, wallSeconds: round(lgb.wallSeconds, 1), threads: lgb.threads },
      keras: {
        ...scores(kerasScores),
        version: `keras ${keras.keras}, tensorflow ${keras.tensorflow}`,
        epochs: keras.epochs,
        bestEpoch: keras.bestEpoch,
        stopReason: keras.stopReason,
        wallSeconds: round(keras.wallSeconds, 1),
        threads: keras.threads,
        ...(keras.embeddingIgnored && { note: 'our best trial used categorical embeddings; the Keras reference trains on the one-hot columns' }),
        ...(((out.best.params as MlpParams).sequenceUnits ?? 0) > 0 && {
          note: "our best trial was a sequence model; the Keras reference trains its dense layers on the aggregate columns alone (it has no GRU)",
        }),
      },
      oracleAuc,
      versusOracle: truth ? versus(truth) : null,
      families,
      delong: { lightgbm: versus(lgbScores), keras: versus(kerasScores) },
      loadBefore: quiet.load,
      quietBefore: quiet.quiet,
      ...provenance(bench.codeVersion),
    };
  } finally {
    await stopWorkers(workers);
    if (runId && !opts.keepArtifacts) await deletePrefix(bench.s3, bench.store.bucket, `runs/${runId}/`).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    await bench.close();
  }
}

function versusOf(y: ArrayLike<number>, ours: Float64Array, theirs: Float64Array): Versus {
  const t = delongPairedTest(y, ours, theirs);
  return { diff: t.diff, se: t.se, pValue: t.pValue };
}

/**
 * The best trial of each family the run trained (the logistic baseline, each numeric encoding of the MLP, the
 * sequence model), by the search's own rule on validation, then the shipped model: all on the same test rows.
 */
async function familyScores(
  bench: Awaited<ReturnType<typeof openBench>>,
  out: TrainPipelineOutput,
  splitPre: Preprocessor,
  testFor: (ref: { modelJson: { key: string }; weights: { key: string } }, pre: Preprocessor) => Promise<Float64Array>,
  y: ArrayLike<number>,
  versus: (p: Float64Array) => Versus,
): Promise<{ families: FamilyScore[]; predictions: Map<string, Float64Array> }> {
  const run = await bench.db.db.selectFrom('ml.pipeline_runs').select('config').where('run_id', '=', out.runId).executeTakeFirstOrThrow();
  const metric = ((run.config as { search?: { metric?: 'valAuc' | 'valLogLoss' | 'valPrAuc' } }).search?.metric ?? 'valAuc');
  const rows = await bench.db.db
    .selectFrom('ml.trials')
    .select(['trial_id', 'params', 'val_auc', 'val_pr_auc', 'val_log_loss', 'model_uri'])
    .where('run_id', '=', out.runId)
    .where('status', '=', 'completed')
    .where('model_uri', 'is not', null)
    .execute();
  const value = (r: (typeof rows)[number]) => (metric === 'valAuc' ? r.val_auc : metric === 'valPrAuc' ? r.val_pr_auc : r.val_log_loss === null ? null : -r.val_log_loss);
  const best = new Map<string, (typeof rows)[number]>();
  for (const r of rows) {
    const p = r.params as MlpParams;
    const enc = encodingOf(p);
    // a periodic trial reads quantile columns; its embedding is in the network, and it is named for it
    const encoding = (p.numericEncoding === 'periodic' ? 'periodic' : `${enc.numeric}${enc.bins ?? ''}`) + ((p.batchEnsemble ?? 0) > 1 ? ` batch-ensemble ${p.batchEnsemble}` : '');
    // a GRU alone reads no aggregate column, so their encoding does not name it
    const family = r.trial_id === 'baseline' ? 'logistic' : `${r.trial_id === 'final' ? 'final retrain ' : ''}${familyOf(p)} ${p.sequenceAlone ? 'alone' : encoding}`;
    const prev = best.get(family);
    if (!prev || (value(r) ?? -Infinity) > (value(prev) ?? -Infinity)) best.set(family, r);
  }
  const keyOf = (uri: string) => uri.replace(/^s3:\/\/[^/]+\//, '');
  const scores: FamilyScore[] = [];
  const predictions = new Map<string, Float64Array>();
  for (const [family, r] of [...best.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
    const modelKey = keyOf(r.model_uri!);
    const dirKey = modelKey.replace(/model\.json$/, '');
    const p = r.params as MlpParams;
    const trialPre = encodingOf(p).numeric === 'standard' && !encodingOf(p).sequence ? splitPre : (JSON.parse(new TextDecoder().decode(await bench.store.getKey(keys.modelPreprocessing(out.runId, r.trial_id)))) as Preprocessor);
    const t = await testFor({ modelJson: { key: modelKey }, weights: { key: `${dirKey}weights.bin` } }, trialPre);
    scores.push({ family, trialId: r.trial_id, valAuc: r.val_auc, testAuc: rocAuc(y, t), versusLightgbm: versus(t) });
    predictions.set(r.trial_id, t);
  }
  return { families: scores, predictions };
}

/** The generator's true probabilities of the test users: their ROC-AUC is the best any model could reach. */
async function truthOf(pool: import('pg').Pool, ids: string[]): Promise<Float64Array> {
  const { rows } = await pool.query<{ user_id: string; probability: number }>(
    'select user_id::text as user_id, probability from bench.user_truth where user_id = any($1::bigint[])',
    [ids],
  );
  const truth = new Map(rows.map((r) => [r.user_id, r.probability]));
  const p = Float64Array.from(ids, (id) => truth.get(id) ?? NaN);
  if (p.some(Number.isNaN)) throw new Error('bench.user_truth lacks some test users: was the bench shop re-seeded during the run?');
  return p;
}

export function printAccuracy(r: AccuracyResult, log: Log): void {
  const row = (name: string, s: Scores, extra: string): [string, string] => [name, `${s.testAuc.toFixed(4)} / ${s.testPrAuc.toFixed(4)}  ${extra}`];
  const p = (v: Versus) => `Δ ${formatAucDiff(v.diff)}${v.se === undefined ? '' : ` (SE ${v.se.toFixed(4)})`}, DeLong p ${formatPValue(v.pValue)}`;
  const d = r.dataset;
  log('');
  log(
    table('accuracy benchmark: test ROC-AUC / PR-AUC on the same test rows', [
      ['data', d.kind === 'synthetic' ? `synthetic shop, ${d.users.toLocaleString('en')} users, ${d.days} days, seed ${d.seed}${d.sequenceLength ? `, last ${d.sequenceLength} events per user` : ''}` : `${d.config}`],
      ['split (train / val / test)', `${r.split.train} / ${r.split.val} / ${r.split.test} rows × ${r.cols} cols, test positives ${(r.positiveRates.test * 100).toFixed(1)} %`],
      row('ours (pipeline)', r.ours, `${r.ours.status}, ${r.ours.trials} trials, ${r.ours.backend}, ${fmt(r.ours.wallSeconds, 0)} s`),
      ...(r.ours.space ? [['  search.space replaced', JSON.stringify(r.ours.space)] as [string, string]] : []),
      ...(r.ours.training ? [['  training replaced', JSON.stringify(r.ours.training)] as [string, string]] : []),
      row('LightGBM', r.lightgbm, `${r.lightgbm.configs} configs, ${r.lightgbm.threads} threads, ${fmt(r.lightgbm.wallSeconds, 0)} s; ours ${p(r.delong.lightgbm)}`),
      row('Keras (our best params)', r.keras, `${r.keras.epochs} epochs, ${r.keras.threads} threads, ${fmt(r.keras.wallSeconds, 0)} s; ours ${p(r.delong.keras)}`),
      ...(r.families ?? []).map((f): [string, string] => [
        `  family: ${f.family}`,
        `${f.testAuc.toFixed(4)}  ${f.trialId}${f.valAuc === null ? '' : `, val ${f.valAuc.toFixed(4)}`}; vs LightGBM ${p(f.versusLightgbm)}`,
      ]),
      ...(r.ours.ensemble
        ? [[
            '  shipped ensemble vs its first',
            `validation ${r.ours.ensemble.valGain ? formatEnsembleGain(r.ours.ensemble.valGain) : '–'}; test ${r.ours.ensemble.testGain ? formatEnsembleGain(r.ours.ensemble.testGain) : '–'}`,
          ] as [string, string]]
        : []),
      [
        'oracle ROC-AUC',
        r.oracleAuc === null
          ? '– (table mode)'
          : `${r.oracleAuc.toFixed(4)}${r.versusOracle ? `; ours ${(-r.versusOracle.diff).toFixed(4)} below it (SE ${r.versusOracle.se?.toFixed(4) ?? '–'})` : ''}`,
      ],
      ['load before', `${fmt(r.loadBefore)}${r.quietBefore ? '' : ' (not quiet)'}`],
      ['code', r.gitCommit],
      ['machine', `${r.machine.cpus} cpus, ${r.machine.memGb} GB, node ${r.machine.node}`],
    ]),
  );
  log('');
}

export const recordAccuracy = (r: AccuracyResult): string => appendResult('accuracy', r);

import { randomUUID } from 'node:crypto';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Db } from '../../db/client.js';
import { seedShop, type SeedShopResult } from '../../db/synthetic/load.js';
import { BANK_TABLE, seedBankMarketing } from '../../db/tables/bank-marketing.js';
import { rocAuc } from '../../ml/metrics.js';
import { trainPipeline, type TrainPipelineOutput } from '../../workflows/pipeline.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { connections, freshDatabase, testStore } from '../support/services.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { assignSplit } from '../../ml/split.js';

// End to end on the real dev stack: Temporal dev server, PostgreSQL and s3rver, with in-process workers on
// task queues of this test's own.
let db: Db;
let store: ArtifactStore;
let closeStore: () => void;
let bundle: WorkflowBundleWithSourceMap;
let nativeConnection: NativeConnection;
let client: Client;
let cutoff: string;
let shop: SeedShopResult;

const queues = { cpu: `e2e-cpu-${randomUUID()}`, train: `e2e-train-${randomUUID()}` };

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  ({ db } = await freshDatabase('pipeline_e2e'));
  ({ store, close: closeStore } = await testStore());
  shop = await seedShop(db.pool, { users: 3000, days: 40, seed: 11, horizonDays: 14 });
  cutoff = shop.timeline.cutoff.toISOString();
  bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  const { address, namespace } = connections().temporal;
  nativeConnection = await NativeConnection.connect({ address });
  client = new Client({ connection: await Connection.connect({ address }), namespace });
});

afterAll(async () => {
  await client?.connection.close();
  await nativeConnection?.close();
  closeStore?.();
  await db?.close();
});

const quietLogger = {
  log() {},
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
};

async function withWorkers<T>(fn: () => Promise<T>): Promise<T> {
  const activities = createActivities({ db, store, codeVersion: 'test' });
  const { namespace } = connections().temporal;
  const cpu = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities, interceptors: activityInterceptors({ db }) });
  const train = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.train, activities, interceptors: activityInterceptors({ db }), maxConcurrentActivityTaskExecutions: 1 });
  return cpu.runUntil(train.runUntil(fn()));
}

const smallConfig = (over: Record<string, unknown> = {}) => ({
  modelName: 'e2e',
  source: { kind: 'events', cutoff, horizonDays: 14 },
  search: { trials: 3, parallelism: 2, epochs: 4, patience: 2, halving: { eta: 3, minEpochs: 2 } },
  // the retrain path (training.final 'reuse', ensembles and seed replicas have their own tests: model-families.test.ts);
  // seeds 1: no replicas, so the records below are the search's trials and the final model
  training: { finalEpochs: 8, backend: 'wasm', final: 'retrain', ensemble: { seeds: 1 } },
  // a tiny budget: the baseline comparison has its own test below
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.6 }], versusBaseline: { enabled: false } },
  ...over,
});

const bankSource = {
  kind: 'table',
  query: `select * from ${BANK_TABLE} where age >= 18`,
  entityKey: 'client_id',
  label: 'y',
  // month_code is an integer code, declared categorical
  features: { age: 'numeric', job: 'categorical', marital: 'categorical', has_default: 'categorical', balance: 'numeric', housing: 'categorical', contact: 'categorical', month_code: 'categorical', duration_s: 'numeric', campaign: 'numeric', poutcome: 'categorical' },
};

const run = (config: unknown) =>
  client.workflow.execute(trainPipeline, {
    taskQueue: queues.cpu,
    workflowId: `train-e2e-${randomUUID()}`,
    args: [{ config, taskQueues: queues, trigger: 'test' }],
  });

describe('trainPipeline end to end', () => {
  let first: TrainPipelineOutput;

  it('ingests, cleans, splits, searches, trains, evaluates and registers v1', async () => {
    first = await withWorkers(() => run(smallConfig()));
    expect(first.status).toBe('registered');
    expect(first.modelVersion).toBe(1);
    expect(first.trials).toBe(3);
    const total = first.split.train + first.split.val + first.split.test;
    expect(first.split.train / total).toBeGreaterThan(0.75);
    expect(first.split.test / total).toBeGreaterThan(0.07);
    // a real model, well above chance, and below the generator's own ceiling on the same rows
    expect(first.metrics.testAuc).toBeGreaterThan(0.65);
    const test = await store.getFrame(first.artifacts.test);
    const { rows } = await db.pool.query('select user_id::text as id, probability from bench.user_truth');
    const truth = new Map(rows.map((r) => [r.id as string, r.probability as number]));
    const oracle = rocAuc(test.label, Float64Array.from(test.ids, (id) => truth.get(id)!));
    expect(first.metrics.testAuc).toBeLessThan(oracle + 0.05);

    expect(await store.exists(first.modelUri!.replace(`s3://${store.bucket}/`, ''))).toBe(true);
    expect(await store.exists(`models/e2e/v1/preprocessing.json`)).toBe(true);
    expect(await store.exists(`models/e2e/v1/metadata.json`)).toBe(true);

    const runRow = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', first.runId).executeTakeFirstOrThrow();
    expect(runRow.status).toBe('registered');
    expect(runRow.model_version).toBe(1);
    const steps = await db.db.selectFrom('ml.run_steps').selectAll().where('run_id', '=', first.runId).execute();
    const byStep = (s: string) => steps.filter((r) => r.step === s);
    for (const s of ['validate', 'ingest', 'clean', 'split', 'final', 'evaluate', 'register']) {
      expect(byStep(s), s).toHaveLength(1);
      expect(byStep(s)[0].status, s).toBe('succeeded');
      expect(byStep(s)[0].attempt).toBeGreaterThanOrEqual(1);
      expect(byStep(s)[0].duration_ms).not.toBeNull();
    }
    // one row per execution: every trial at rung 0, and the promoted one again at rung 1, each with its own timing
    expect(byStep('trial').filter((t) => t.rung === 0).map((t) => t.trial_id).sort()).toEqual(['baseline', 't001', 't002', 't003']);
    const rung1 = byStep('trial').filter((t) => t.rung === 1);
    expect(rung1).toHaveLength(1);
    for (const t of byStep('trial')) expect(t.duration_ms, `${t.trial_id}@${t.rung}`).not.toBeNull();
    const trials = await db.db.selectFrom('ml.trials').selectAll().where('run_id', '=', first.runId).orderBy('trial_id').execute();
    expect(trials.map((t) => t.trial_id)).toEqual(['baseline', 'final', 't001', 't002', 't003']);
    // successive halving (3 trials, eta 3, budgets 2 → 4 epochs): one trial is promoted and resumed at rung 1
    const rungs = trials.filter((t) => t.trial_id.startsWith('t')).map((t) => t.rung);
    expect(rungs.sort()).toEqual([0, 0, 1]);
    const promoted = trials.find((t) => t.rung === 1)!;
    expect(rung1[0].trial_id).toBe(promoted.trial_id);
    expect((rung1[0].detail as { epochs: number }).epochs).toBe(4);
    expect(promoted.resumed_from_epoch).toBe(2);
    expect(promoted.budget_epochs).toBe(4);
    for (const t of trials) {
      expect(t.status).toBe('completed');
      expect((t.curve as unknown[]).length).toBeGreaterThan(0);
      expect(t.backend).toBe('wasm');
    }
    const version = await db.db.selectFrom('ml.model_versions').selectAll().where('run_id', '=', first.runId).executeTakeFirstOrThrow();
    expect(version.data_sha256).toBe(first.dataSha256);
    expect(version.config_hash).toBe(first.configHash);
    expect(version.code_version).toBe('test');
    const quality = await db.db.selectFrom('ml.data_quality').selectAll().where('run_id', '=', first.runId).execute();
    const stage = (name: string) => quality.find((q) => q.stage === name)!;
    expect(Number(stage('clean').rows_in)).toBe(first.rows.ingested);
    // the generator's dirty events, counted per reason: their sum is exactly what the events stage dropped
    const events = stage('events');
    const reasons = events.quarantined as Record<string, number>;
    expect(Object.values(reasons).reduce((a, b) => a + b, 0)).toBe(Number(events.rows_in) - Number(events.rows_out));
    expect(reasons).toMatchObject({
      duplicate_event_id: shop.dirty.duplicate,
      null_key: shop.dirty.null_user + shop.dirty.null_type,
      negative_price: shop.dirty.negative_price,
      unknown_event_type: shop.dirty.unknown_type,
      // point in time: rows stamped after the run's as-of time (the generator's future rows among them) are not this
      // run's data, so they are neither counted nor quarantined
      future_timestamp: 0,
    });
    const { n: inWindow } = (await db.pool.query('select count(*)::int as n from shop.events where occurred_at is null or occurred_at < $1', [new Date(Date.parse(cutoff) + 14 * 86_400_000)])).rows[0];
    expect(Number(events.rows_in)).toBe(inWindow);
  });

  it('registers the next version on a second run over the same data, with the same split', async () => {
    const second = await withWorkers(() => run(smallConfig()));
    expect(second.status).toBe('registered');
    expect(second.modelVersion).toBe(2);
    expect(second.dataSha256).toBe(first.dataSha256);
    expect(second.artifacts.test.sha256).toBe(first.artifacts.test.sha256);
    const champion = await db.db.selectFrom('ml.model_aliases').selectAll().where('model_name', '=', 'e2e').executeTakeFirstOrThrow();
    expect(champion.version).toBe(2);
  });

  it('rejects (does not register) a model that fails the gate, and says why', async () => {
    const out = await withWorkers(() =>
      run(smallConfig({ gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.999 }], versusBaseline: { enabled: true, requireHigherAuc: true } } })),
    );
    expect(out.status).toBe('rejected');
    expect(out.modelVersion).toBeNull();
    // both failing checks are listed: the threshold, and the under-trained MLP losing to the logistic baseline
    expect(out.gate.reasons).toEqual([
      expect.stringMatching(/^rocAuc = 0\.\d+ fails >= 0\.999$/),
      expect.stringMatching(/^beats_baseline: test ROC-AUC 0\.\d+ vs logistic baseline 0\.\d+ on \d+ rows \(diff -0\.\d+, one-sided DeLong p (?:< 0\.001|[\d.]+); must be higher by > 0 and not significantly worse at alpha 0\.05\)$/),
    ]);
    const versions = await db.db.selectFrom('ml.model_versions').select('version').where('run_id', '=', out.runId).execute();
    expect(versions).toHaveLength(0);
    const row = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', out.runId).executeTakeFirstOrThrow();
    expect(row.status).toBe('rejected');
  });

  it('fails a misspelled config key for good, recorded in ml.pipeline_runs, nothing registered', async () => {
    const err = await withWorkers(() => run({ ...smallConfig(), modelNmae: 'oops' }).catch((e) => e));
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = ((err as WorkflowFailedError).cause as { cause?: { type?: string; message?: string } }).cause;
    expect(cause?.type).toBe('InvalidConfig');
    expect(cause?.message).toMatch(/modelNmae/);
    const rows = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('status', '=', 'failed').execute();
    const failedRun = rows.find((r) => r.error_type === 'InvalidConfig' && /modelNmae/.test(r.error_message ?? ''))!;
    expect(failedRun).toBeDefined();
    const steps = await db.db.selectFrom('ml.run_steps').selectAll().where('run_id', '=', failedRun.run_id).execute();
    expect(steps).toEqual([expect.objectContaining({ step: 'validate', status: 'failed', error_type: 'InvalidConfig' })]);
  });

  it('fails with EmptyDataset when the cutoff precedes every signup', async () => {
    const err = await withWorkers(() =>
      run(smallConfig({ source: { kind: 'events', cutoff: '2000-01-01T00:00:00Z', horizonDays: 14 } })).catch((e) => e),
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as { cause?: { type?: string } };
    expect(cause.cause?.type).toBe('EmptyDataset');
    const failed = await db.db
      .selectFrom('ml.run_steps')
      .selectAll()
      .where('step', '=', 'ingest')
      .where('status', '=', 'failed')
      .execute();
    expect(failed.some((r) => r.error_type === 'EmptyDataset')).toBe(true);
  });

  it('trains, gates and registers a table-mode source (mixed numeric, string, boolean columns) through the same workflow', async () => {
    const table = await seedBankMarketing(db.pool, { rows: 4000, seed: 5 });
    expect(table.positives / table.rows).toBeGreaterThan(0.05);
    const out = await withWorkers(() =>
      run(
        smallConfig({
          modelName: 'bank',
          source: bankSource,
          // categorical features through learned embeddings (4 dimensions each) instead of one-hot
          search: { trials: 3, parallelism: 2, epochs: 4, patience: 2, halving: { eta: 3, minEpochs: 2 }, space: { embeddingDim: [4], numericEncoding: ['standard'] } },
          // one network, so the served topology is the embedding MLP itself
          training: { finalEpochs: 8, backend: 'wasm', final: 'retrain', ensemble: { maxMembers: 1 } },
        }),
      ),
    );
    expect(out.status).toBe('registered');
    expect(out.modelName).toBe('bank');
    expect(out.modelVersion).toBe(1);
    expect(out.cutoff).toBeNull();
    expect(out.rows.ingested).toBe(4000);
    expect(out.metrics.testAuc).toBeGreaterThan(0.7);
    const trials = await db.db.selectFrom('ml.trials').select(['trial_id', 'params']).where('run_id', '=', out.runId).execute();
    for (const t of trials.filter((t) => t.trial_id !== 'baseline')) expect((t.params as { embeddingDim?: number }).embeddingDim).toBe(4);
    const served = JSON.parse(new TextDecoder().decode(await store.getKey('models/bank/v1/model.json')));
    expect(JSON.stringify(served.modelTopology)).toContain('"name":"embed"');
    const pre = JSON.parse(new TextDecoder().decode(await store.getKey('models/bank/v1/preprocessing.json')));
    expect(pre.featureNames).toEqual(expect.arrayContaining(['month_code=3', 'housing=true', 'job=retired', 'duration_s']));
  });

  it('rejects a challenger that is significantly worse than the champion on the same test rows, listing the check', async () => {
    const bank = (over: Record<string, unknown>) =>
      smallConfig({
        modelName: 'bank',
        source: bankSource,
        gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0 }], versusBaseline: { enabled: false } },
        ...over,
      });
    // a crippled challenger: one tiny hidden layer, one epoch at a learning rate too small to learn anything
    const out = await withWorkers(() =>
      run(
        bank({
          search: { trials: 1, parallelism: 1, epochs: 1, halving: { eta: 1 }, space: { hiddenLayers: [1, 1], units: [2], learningRate: [1e-6, 1e-6] } },
          training: { finalEpochs: 1, backend: 'wasm' },
        }),
      ),
    );
    expect(out.status).toBe('rejected');
    // same split seed as the champion: every test row is unseen by it, none excluded
    expect(out.gate.reasons).toEqual([
      expect.stringMatching(/^not_worse_than_champion: test ROC-AUC 0\.\d+ vs champion v1 0\.\d+ on \d+ unseen test rows \(0 excluded: in the champion v1's train or validation split, split seed 42\) \(diff -0\.\d+, DeLong p (?:< 0\.001|[\d.]+), alpha 0\.05\)$/),
    ]);
    const row = await db.db.selectFrom('ml.evaluations').selectAll().where('run_id', '=', out.runId).executeTakeFirstOrThrow();
    const champion = (row.comparisons as { check: string; against: string; passed: boolean; pValue: number }[])[0];
    expect(champion).toMatchObject({ check: 'not_worse_than_champion', against: 'champion v1', passed: false });
    expect(champion.pValue).toBeLessThan(0.05);
    const versions = await db.db.selectFrom('ml.model_versions').select('version').where('model_name', '=', 'bank').execute();
    expect(versions.map((v) => v.version)).toEqual([1]);
  });

  it('compares with the champion only on rows it never saw: a rerun with another split seed is not rejected', async () => {
    // a bigger table, so that the ~10 % of test rows the champion also held out are enough for a real test
    await seedBankMarketing(db.pool, { rows: 24000, seed: 9 });
    const reseed = (seed: number) =>
      smallConfig({
        modelName: 'reseed',
        source: bankSource,
        split: { seed },
        gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.6 }], versusBaseline: { enabled: false } },
      });
    const champion = await withWorkers(() => run(reseed(42)));
    expect(champion.status).toBe('registered');
    // the same model, another split seed: ~80 % of its test rows were in the champion's train split
    const out = await withWorkers(() => run(reseed(7)));
    expect(out.status).toBe('registered');
    expect(out.modelVersion).toBe(2);
    const row = await db.db.selectFrom('ml.evaluations').selectAll().where('run_id', '=', out.runId).executeTakeFirstOrThrow();
    const c = (row.comparisons as { check: string; status: string; rows: number; excluded: number; positives: number; detail: string }[])
      .find((x) => x.check === 'not_worse_than_champion')!;
    expect(c.status).not.toBe('failed');
    expect(c.rows + c.excluded).toBe(out.split.test);
    // the rows compared are exactly the test rows whose keys fell in the champion's own test split (seed 42)
    const test = await store.getFrame(out.artifacts.test);
    const unseen = test.ids.filter((id) => assignSplit(id, 42, { train: 0.8, val: 0.1, test: 0.1 }) === 'test').length;
    expect(c.rows).toBe(unseen);
    expect(c.rows / out.split.test).toBeGreaterThan(0.05);
    expect(c.rows / out.split.test).toBeLessThan(0.15);
    expect(c.detail).toMatch(new RegExp(`on ${c.rows} unseen test rows \\(${c.excluded} excluded: in the champion v1's train or validation split, split seed 42\\)`));
  });

  it('ships the logistic baseline when it is at least as good as every trial on validation, recorded as its family', async () => {
    // networks that cannot learn (tiny, one epoch at a learning rate of 1e-6): the baseline must win on validation
    const out = await withWorkers(() =>
      run(
        smallConfig({
          modelName: 'competes',
          search: { trials: 2, parallelism: 2, epochs: 1, halving: { eta: 1 }, space: { hiddenLayers: [1, 1], units: [2], learningRate: [1e-6, 1e-6] } },
          gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.6 }] },
        }),
      ),
    );
    expect(out.status).toBe('registered');
    expect(out.family).toBe('logistic');
    const trials = await db.db.selectFrom('ml.trials').select(['trial_id', 'family', 'val_auc']).where('run_id', '=', out.runId).execute();
    expect(trials.map((t) => t.trial_id).sort()).toEqual(['baseline', 't001', 't002']); // no final training
    const baseline = trials.find((t) => t.trial_id === 'baseline')!;
    expect(baseline.family).toBe('logistic');
    for (const t of trials.filter((x) => x.trial_id !== 'baseline')) {
      expect(t.family).toBe('mlp');
      expect(baseline.val_auc!).toBeGreaterThanOrEqual(t.val_auc!);
    }
    const version = await db.db.selectFrom('ml.model_versions').select(['family', 'params']).where('run_id', '=', out.runId).executeTakeFirstOrThrow();
    expect(version.family).toBe('logistic');
    expect((version.params as { hiddenUnits: number[] }).hiddenUnits).toEqual([]);
    const evaluation = await db.db.selectFrom('ml.evaluations').select('comparisons').where('run_id', '=', out.runId).executeTakeFirstOrThrow();
    expect(evaluation.comparisons).toEqual(expect.arrayContaining([expect.objectContaining({ check: 'beats_baseline', status: 'skipped' })]));
  });

  it('fails before training when a feature drifted past quality.maxPsi against the last registered run', async () => {
    const err = await withWorkers(() =>
      run(
        smallConfig({
          modelName: 'bank',
          source: {
            kind: 'table',
            // the same clients, but every balance tripled and shifted: a drifted feature
            query: `select client_id, age, job, balance * 3 + 5000 as balance, duration_s, y from ${BANK_TABLE}`,
            entityKey: 'client_id',
            label: 'y',
          },
        }),
      ).catch((e) => e),
    );
    const cause = (err as WorkflowFailedError).cause as { cause?: { type?: string; message?: string } };
    expect(cause.cause?.type).toBe('DataQuality');
    expect(cause.cause?.message).toMatch(/feature drift against run .*: balance PSI \d+\.\d+ above quality\.maxPsi 0\.25/);
    expect(cause.cause?.message).not.toMatch(/age PSI|duration_s PSI/);
    const trials = await db.db.selectFrom('ml.run_steps').select('step').where('step', 'in', ['trial', 'final']).where('run_id', 'in', (qb) => qb.selectFrom('ml.pipeline_runs').select('run_id').where('status', '=', 'failed').where('model_name', '=', 'bank')).execute();
    expect(trials).toHaveLength(0); // failed before any training
  });

  it('fails a table-mode run whose label is not boolean-like, naming the column and rows but never a value', async () => {
    await db.pool.query(`create or replace view public_data.bad_label as select client_id, age, case when y = 'yes' then 'maybe' else 'no' end as y from ${BANK_TABLE}`);
    const err = await withWorkers(() =>
      run(smallConfig({ modelName: 'bank', source: { kind: 'table', query: 'select * from public_data.bad_label', entityKey: 'client_id', label: 'y' } })).catch((e) => e),
    );
    const cause = (err as WorkflowFailedError).cause as { cause?: { type?: string; message?: string } };
    expect(cause.cause?.type).toBe('InvalidData');
    expect(cause.cause?.message).toMatch(/label column "y" has \d+ values? \((first rows|rows|row) [\d, ]+\) that are not boolean-like \(the values are not shown\)/);
    expect(cause.cause?.message).not.toContain('maybe');
  });
});

import { randomUUID } from 'node:crypto';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Db } from '../../db/client.js';
import { EVENT_FEATURES, eventFeatureQuery, VALID_EVENT_TYPES } from '../../db/features.js';
import { seedShop, type SeedShopResult } from '../../db/synthetic/load.js';
import { BANK_TABLE, seedBankMarketing } from '../../db/tables/bank-marketing.js';
import { initBackend } from '../../ml/backend.js';
import { predict } from '../../ml/model.js';
import { transform, type Preprocessor } from '../../ml/preprocess.js';
import type { Frame } from '../../ml/types.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { trainPipeline } from '../../workflows/pipeline.js';
import { planChunks, scoreAfterPromotion, scoreUsers, type ScoreUsersInput, type ScoreUsersOutput } from '../../workflows/score.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { connections, freshDatabase, testStore } from '../support/services.js';
import { runCli } from '../support/cli.js';

// Batch scoring end to end on the real dev stack: a small model is trained and registered by trainPipeline, then
// scoreUsers scores the shop's active users into ml.scores, with in-process workers on this test's own queues.
let db: Db;
let dbUrl: string;
let store: ArtifactStore;
let closeStore: () => void;
let bundle: WorkflowBundleWithSourceMap;
let nativeConnection: NativeConnection;
let client: Client;
let shop: SeedShopResult;
let asOf: string;

const queues = { cpu: `score-cpu-${randomUUID()}`, train: `score-train-${randomUUID()}` };
const ACTIVE_DAYS = 21;
const MODEL = 'sc';

const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

async function withWorkers<T>(fn: () => Promise<T>): Promise<T> {
  const activities = createActivities({ db, store, codeVersion: 'test' });
  const { namespace } = connections().temporal;
  const cpu = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities, interceptors: activityInterceptors({ db }) });
  const train = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.train, activities, interceptors: activityInterceptors({ db }), maxConcurrentActivityTaskExecutions: 1 });
  return cpu.runUntil(train.runUntil(fn()));
}

const score = (workflowId: string, over: Partial<ScoreUsersInput> = {}) =>
  client.workflow.execute(scoreUsers, {
    taskQueue: queues.cpu,
    workflowId,
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    args: [{ model: MODEL, asOf, activeDays: ACTIVE_DAYS, chunkRows: 400, taskQueues: queues, trigger: 'test', ...over }],
  });

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  ({ db, url: dbUrl } = await freshDatabase('score_e2e'));
  ({ store, close: closeStore } = await testStore());
  shop = await seedShop(db.pool, { users: 2500, days: 40, seed: 23, horizonDays: 14 });
  asOf = shop.timeline.end.toISOString();
  bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  const { address, namespace } = connections().temporal;
  nativeConnection = await NativeConnection.connect({ address });
  client = new Client({ connection: await Connection.connect({ address }), namespace });
  const trained = await withWorkers(() =>
    client.workflow.execute(trainPipeline, {
      taskQueue: queues.cpu,
      workflowId: `train-score-${randomUUID()}`,
      args: [
        {
          config: {
            modelName: MODEL,
            source: { kind: 'events', cutoff: shop.timeline.cutoff.toISOString(), horizonDays: 14 },
            search: { trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 1, minEpochs: 3 } },
            training: { finalEpochs: 6, backend: 'wasm' },
            gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.55 }], versusBaseline: { enabled: false } },
            evaluation: { bootstrapSamples: 0, importanceRepeats: 0 },
          },
          taskQueues: queues,
          trigger: 'test',
        },
      ],
    }),
  );
  expect(trained.status).toBe('registered');
  expect(trained.modelVersion).toBe(1);
});

afterAll(async () => {
  await client?.connection.close();
  await nativeConnection?.close();
  closeStore?.();
  await db?.close();
});

/** Active users counted on their own terms: signed up before asOf, with a valid event in the activity window. */
async function activeUsers(): Promise<string[]> {
  const { rows } = await db.pool.query(
    `select distinct e.user_id::text as id
       from shop.events e join shop.users u on u.user_id = e.user_id
      where e.occurred_at >= $1::timestamptz - make_interval(days => $2) and e.occurred_at < $1::timestamptz
        and u.signup_at < $1::timestamptz
        and e.event_id is not null
        and e.event_type = any($3::text[])
        and (e.price is null or (e.price >= 0 and e.price <> 'NaN'::numeric))
        and e.occurred_at <= now() and e.occurred_at >= (select min(signup_at) from shop.users)
      order by 1`,
    [asOf, ACTIVE_DAYS, [...VALID_EVENT_TYPES]],
  );
  return rows.map((r) => r.id as string);
}

const scoresOf = async (scoreRunId: string) =>
  (
    await db.pool.query('select user_id, probability, decile, scored_at, model_version from ml.scores where score_run_id = $1 order by user_id', [
      scoreRunId,
    ])
  ).rows as { user_id: string; probability: number; decile: number | null; scored_at: Date; model_version: number }[];

const scoreRun = (scoreRunId: string) => db.db.selectFrom('ml.score_runs').selectAll().where('score_run_id', '=', scoreRunId).executeTakeFirst();

const failureType = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const cause = (err as WorkflowFailedError).cause as { type?: string; message?: string };
  return { type: cause.type, message: cause.message };
};

describe('scoreUsers', () => {
  const scoreRunId = `score-${MODEL}-${randomUUID()}`;
  let first: ScoreUsersOutput;
  let firstRows: Awaited<ReturnType<typeof scoresOf>>;

  it('writes exactly one row per active user, ranked into deciles, with the registered model', async () => {
    first = await withWorkers(() => score(scoreRunId));
    const active = await activeUsers();
    expect(active.length).toBeGreaterThan(1000);
    expect(active.length).toBeLessThan(2500); // some users are inactive: the restriction matters here
    expect(first).toMatchObject({ scoreRunId, modelName: MODEL, modelVersion: 1, mode: 'events', asOf, activeDays: ACTIVE_DAYS, rows: active.length });
    expect(first.chunks).toBe(Math.ceil(active.length / 400));

    firstRows = await scoresOf(scoreRunId);
    expect(firstRows.map((r) => r.user_id).sort()).toEqual([...active].sort());
    expect(new Set(firstRows.map((r) => r.scored_at.toISOString()))).toEqual(new Set([first.scoredAt]));
    for (const r of firstRows) {
      expect(r.probability).toBeGreaterThan(0);
      expect(r.probability).toBeLessThan(1);
      expect(r.model_version).toBe(1);
    }

    // deciles 1..10, each a tenth (ntile: sizes differ by at most one), decile 1 the highest probabilities
    const n = firstRows.length;
    const byDecile = new Map<number, number[]>();
    for (const r of firstRows) byDecile.set(r.decile!, [...(byDecile.get(r.decile!) ?? []), r.probability]);
    expect([...byDecile.keys()].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (let d = 1; d <= 10; d++) {
      const size = byDecile.get(d)!.length;
      expect(size === Math.floor(n / 10) || size === Math.ceil(n / 10)).toBe(true);
      if (d < 10) expect(Math.min(...byDecile.get(d)!)).toBeGreaterThanOrEqual(Math.max(...byDecile.get(d + 1)!));
    }
    expect(first.deciles.map((d) => d.rows).reduce((a, b) => a + b, 0)).toBe(n);

    const run = (await scoreRun(scoreRunId))!;
    expect(run).toMatchObject({ status: 'succeeded', model_name: MODEL, model_version: 1, model_ref: `${MODEL}@champion`, mode: 'events', active_days: ACTIVE_DAYS, chunks: first.chunks, trigger: 'test' });
    expect(Number(run.rows)).toBe(n);
    expect(run.as_of!.toISOString()).toBe(asOf);
    expect(run.finished_at).not.toBeNull();
    // the analysts' view: one latest score per user, from this (only) succeeded run
    const latest = await db.pool.query('select count(*)::int as n from ml.latest_scores where model_name = $1', [MODEL]);
    expect(latest.rows[0].n).toBe(n);
  });

  it('scores what predict gives on the training feature query at the same cutoff (sample of users)', async () => {
    const sample = new Set(firstRows.filter((_, i) => i % 37 === 0).map((r) => r.user_id));
    const q = eventFeatureQuery({ cutoff: new Date(asOf), horizonDays: 1 });
    const rows = (await db.pool.query(q.sql, q.params)).rows.filter((r) => sample.has(r.user_id));
    expect(rows.length).toBe(sample.size);
    const frame: Frame = {
      ids: rows.map((r) => r.user_id),
      label: new Uint8Array(rows.length),
      numeric: Object.fromEntries(EVENT_FEATURES.filter((f) => f.kind === 'numeric').map((f) => [f.name, Float64Array.from(rows, (r) => (r[f.name] === null ? NaN : Number(r[f.name])))])),
      categorical: Object.fromEntries(EVENT_FEATURES.filter((f) => f.kind === 'categorical').map((f) => [f.name, rows.map((r) => r[f.name] as string | null)])),
    };
    const file = (f: string) => store.getKey(`models/${MODEL}/v1/${f}`);
    const pre = JSON.parse(new TextDecoder().decode(await file('preprocessing.json'))) as Preprocessor;
    await initBackend('auto');
    const m = transform(pre, frame);
    const p = await predict({ modelJson: JSON.parse(new TextDecoder().decode(await file('model.json'))), weights: await file('weights.bin') }, m.x, m.rows, m.cols);
    const stored = new Map(firstRows.map((r) => [r.user_id, r.probability]));
    frame.ids.forEach((id, i) => expect(stored.get(id), id).toBeCloseTo(p[i], 6));
  });

  it('rerunning the same score run replaces its rows: same count, no duplicates, values rewritten', async () => {
    // damage the stored values: a rerun must put them back, not add rows beside them
    await db.pool.query('update ml.scores set probability = 0, decile = null where score_run_id = $1', [scoreRunId]);
    const before = (await scoreRun(scoreRunId))!;
    const again = await withWorkers(() => score(scoreRunId));
    expect(again.rows).toBe(first.rows);
    expect(again.scoredAt > first.scoredAt).toBe(true);
    const rows = await scoresOf(scoreRunId);
    expect(rows.length).toBe(firstRows.length);
    rows.forEach((r, i) => {
      expect(r.user_id).toBe(firstRows[i].user_id);
      expect(r.probability).toBe(firstRows[i].probability);
      expect(r.decile).toBe(firstRows[i].decile);
      expect(r.scored_at.toISOString()).toBe(again.scoredAt);
    });
    const after = (await scoreRun(scoreRunId))!;
    expect(after.temporal_run_id).not.toBe(before.temporal_run_id);
    expect(after.status).toBe('succeeded');
    expect((await db.pool.query('select count(*)::int as n from ml.score_runs')).rows[0].n).toBe(1);
  });

  it('an unknown model, alias or version fails with its type and changes nothing', async () => {
    const snapshot = async () => ({
      runs: await db.db.selectFrom('ml.score_runs').selectAll().orderBy('score_run_id').execute(),
      scores: (
        await db.pool.query(
          `select count(*)::int as n, md5(string_agg(concat_ws(':', score_run_id, user_id, probability, decile, scored_at), ',' order by score_run_id, user_id)) as digest
             from ml.scores`,
        )
      ).rows[0],
    });
    const before = await snapshot();
    // the same id as the succeeded run: its row must stay as it is
    const results = await withWorkers(async () => [
      await failureType(score(scoreRunId, { model: 'nope' })),
      await failureType(score(scoreRunId, { model: `${MODEL}@staging` })),
      await failureType(score(scoreRunId, { model: `${MODEL}:7` })),
      await failureType(score(`score-bad-${randomUUID()}`, { model: 'not a ref!' })),
      await failureType(score(`score-bad-${randomUUID()}`, { activeDays: 0 })),
    ]);
    expect(results.map((r) => r.type)).toEqual(['UnknownModel', 'UnknownAlias', 'UnknownVersion', 'InvalidModelRef', 'InvalidConfig']);
    expect(results[0].message).toMatch(/unknown model "nope" \(registered models: sc\)/);
    expect(results[1].message).toMatch(/has no alias "staging" \(its aliases: champion\)/);
    expect(results[2].message).toMatch(/has no version 7 \(versions: 1\)/);
    expect(await snapshot()).toEqual(before);
  });

  it('no active user at asOf is a typed failure (EmptyDataset), recorded on the run', async () => {
    const id = `score-empty-${randomUUID()}`;
    const failed = await withWorkers(() => failureType(score(id, { asOf: shop.timeline.start.toISOString() })));
    expect(failed.type).toBe('EmptyDataset');
    expect(failed.message).toMatch(/no active users at/);
    expect(await scoreRun(id)).toMatchObject({ status: 'failed', error_type: 'EmptyDataset' });
    expect((await scoresOf(id)).length).toBe(0);
  });

  it('propensity score: scores from the CLI, prints the result, and names an unknown model with exit code 4', async () => {
    const cli = (args: string[]) => runCli(args, { databaseUrl: dbUrl, env: { PROPENSITY_CPU_QUEUE: queues.cpu } });
    const id = `score-cli-${randomUUID()}`;
    const ok = await withWorkers(() => cli(['score', '--model', `${MODEL}:1`, '--as-of', asOf, '--active-days', String(ACTIVE_DAYS), '--id', id, '--json']));
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const out = JSON.parse(ok.stdout.trim().split('\n').at(-1)!) as ScoreUsersOutput;
    expect(out).toMatchObject({ scoreRunId: id, modelVersion: 1, rows: first.rows });
    expect(out.deciles).toHaveLength(10);
    expect((await scoresOf(id)).length).toBe(first.rows);

    const runsBefore = await db.db.selectFrom('ml.score_runs').select('score_run_id').execute();
    const bad = await cli(['score', '--model', 'nope@champion', '--json']);
    expect(bad.code).toBe(4);
    expect(bad.stderr.trim()).toBe('propensity: UnknownModel: unknown model "nope" (registered models: sc)');
    const badRef = await cli(['score', '--model', 'sc:0']);
    expect(badRef.code).toBe(2);
    expect(badRef.stderr).toMatch(/InvalidModelRef/);
    expect(await db.db.selectFrom('ml.score_runs').select('score_run_id').execute()).toEqual(runsBefore);
  });
});

describe('scoreUsers on a table-mode model', () => {
  it("scores every row of the registered run's table query (label ignored), one row per entity key", async () => {
    await seedBankMarketing(db.pool, { rows: 3000, seed: 9 });
    const query = `select * from ${BANK_TABLE} where age >= 25`;
    const out = await withWorkers(async () => {
      const trained = await client.workflow.execute(trainPipeline, {
        taskQueue: queues.cpu,
        workflowId: `train-score-bank-${randomUUID()}`,
        args: [
          {
            config: {
              modelName: 'bank',
              source: { kind: 'table', query, entityKey: 'client_id', label: 'y', features: { age: 'numeric', job: 'categorical', balance: 'numeric', duration_s: 'numeric', housing: 'categorical' } },
              search: { trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 1, minEpochs: 3 } },
              training: { finalEpochs: 4, backend: 'wasm' },
              gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.55 }], versusBaseline: { enabled: false } },
              evaluation: { bootstrapSamples: 0, importanceRepeats: 0 },
            },
            taskQueues: queues,
            trigger: 'test',
          },
        ],
      });
      expect(trained.status).toBe('registered');
      return score(`score-bank-${randomUUID()}`, { model: 'bank@champion', chunkRows: 1000 });
    });
    const expected = (await db.pool.query(`select client_id::text as id from (${query}) q order by 1`)).rows.map((r) => r.id as string);
    expect(out).toMatchObject({ modelName: 'bank', modelVersion: 1, mode: 'table', asOf: null, activeDays: null, rows: expected.length });
    const rows = await scoresOf(out.scoreRunId);
    expect(rows.map((r) => r.user_id).sort()).toEqual([...expected].sort());
    expect(new Set(rows.map((r) => r.decile))).toEqual(new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    expect(await scoreRun(out.scoreRunId)).toMatchObject({ status: 'succeeded', mode: 'table', as_of: null, active_days: null });
  });
});

describe('promote --score', () => {
  it('scores the version before moving the alias and says what the view now serves; a version that cannot score moves nothing', async () => {
    // bank v1 (table mode) was registered above
    const cli = (args: string[]) => runCli(args, { databaseUrl: dbUrl, env: { PROPENSITY_CPU_QUEUE: queues.cpu } });
    const ok = await withWorkers(() => cli(['promote', 'bank', '1', '--alias', 'challenger', '--score', '--by', 'test', '--json']));
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const moved = JSON.parse(ok.stdout.trim().split('\n').at(-1)!) as { toVersion: number; scores: { rows: number } | null; scoring: { rows: number } | null };
    expect(moved.toVersion).toBe(1);
    expect(moved.scoring!.rows).toBeGreaterThan(0);
    expect(moved.scores!.rows).toBe(moved.scoring!.rows);
    const shadow = await db.db.selectFrom('ml.latest_scores_by_alias').select('user_id').where('model_name', '=', 'bank').where('alias', '=', 'challenger').execute();
    expect(shadow).toHaveLength(moved.scoring!.rows);

    // the table lost a feature column: v1 cannot score today's rows, so the alias must not move
    await db.pool.query(`alter table ${BANK_TABLE} rename column duration_s to duration_gone`);
    try {
      const bad = await withWorkers(() => cli(['promote', 'bank', '1', '--alias', 'shadow', '--score', '--by', 'test']));
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/score run .* failed/);
      const alias = await db.db.selectFrom('ml.model_aliases').select('version').where('model_name', '=', 'bank').where('alias', '=', 'shadow').executeTakeFirst();
      expect(alias).toBeUndefined();
    } finally {
      await db.pool.query(`alter table ${BANK_TABLE} rename column duration_gone to duration_s`);
    }
  });
});

describe('trainPipeline with scoring.afterPromotion', () => {
  it('scores every active user with the version it just promoted, as a child workflow, at the run\'s as-of time', async () => {
    const out = await withWorkers(() =>
      client.workflow.execute(trainPipeline, {
        taskQueue: queues.cpu,
        workflowId: `train-score-after-${randomUUID()}`,
        args: [
          {
            config: {
              modelName: MODEL,
              source: { kind: 'events', cutoff: shop.timeline.cutoff.toISOString(), horizonDays: 14 },
              search: { trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 1, minEpochs: 3 } },
              training: { finalEpochs: 6, backend: 'wasm' },
              gate: {
                thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.55 }],
                versusBaseline: { enabled: false },
                versusChampion: { enabled: false },
              },
              evaluation: { bootstrapSamples: 0, importanceRepeats: 0 },
              scoring: { afterPromotion: true, activeDays: ACTIVE_DAYS, chunkRows: 700 },
            },
            taskQueues: queues,
            trigger: 'test',
            asOf,
          },
        ],
      }),
    );
    expect(out.status).toBe('registered');
    const version = out.modelVersion!;
    expect(version).toBeGreaterThan(1);
    expect(out.scoring).toMatchObject({ status: 'succeeded', scoreRunId: `${out.workflowId}/score` });
    const rows = await scoresOf(`${out.workflowId}/score`);
    const active = await activeUsers();
    expect(rows.map((r) => r.user_id)).toEqual([...active].sort());
    expect(new Set(rows.map((r) => r.model_version))).toEqual(new Set([version]));
    const run = (await scoreRun(`${out.workflowId}/score`))!;
    expect(run).toMatchObject({ status: 'succeeded', model_version: version, trigger: `pipeline:${out.workflowId}`, model_ref: `${MODEL}:${version}` });
    expect(run.as_of?.toISOString()).toBe(asOf);
  });
});

describe('scoring workflow helpers', () => {
  const ref = (rows: number) => ({ bucket: 'b', key: `k${rows}`, sha256: 'x', bytes: 1, rows });

  it('planChunks cuts shards into chunks of at most chunkRows rows, covering every row once', () => {
    const chunks = planChunks([ref(1000), ref(250)], 400);
    expect(chunks.map((c) => [c.chunk, c.shard.key, c.start, c.end])).toEqual([
      [0, 'k1000', 0, 400],
      [1, 'k1000', 400, 800],
      [2, 'k1000', 800, 1000],
      [3, 'k250', 0, 250],
    ]);
  });

  it('scoreAfterPromotion builds the child input from the config, or null when scoring after promotion is off', () => {
    const scoring = { afterPromotion: true, activeDays: 14, chunkRows: 10_000 };
    expect(scoreAfterPromotion('train-p-1', { modelName: 'p', scoring }, 3, 'q-cpu')).toEqual({
      workflowId: 'train-p-1/score',
      taskQueue: 'q-cpu',
      args: [{ model: 'p:3', activeDays: 14, chunkRows: 10_000, trigger: 'pipeline:train-p-1', taskQueues: { cpu: 'q-cpu' } }],
    });
    expect(scoreAfterPromotion('train-p-1', { modelName: 'p', scoring: { ...scoring, afterPromotion: false } }, 3)).toBeNull();
    expect(scoreAfterPromotion('train-p-1', { modelName: 'p' }, 3)).toBeNull(); // configs recorded before the key
  });
});

import { randomUUID } from 'node:crypto';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createScoreFeatureActivities } from '../../activities/score-features.js';
import type { BuildScoringFeaturesInput, BuildScoringFeaturesOutput, ScoringModel } from '../../activities/score.js';
import { createSourceDb, type SourceDb } from '../../db/source.js';
import type { Db } from '../../db/client.js';
import { EVENT_FEATURES, eventFeatureQuery, eventScoringQuery } from '../../db/features.js';
import { keys, type ArtifactStore } from '../../store/artifacts.js';
import { freshDatabase, testStore } from '../support/services.js';
import { sourceDatabase } from '../support/source.js';

// The scoring variant of the feature query on a hand-made shop. Cutoff C = 2026-03-01T00:00Z, activeDays 7:
// active users have a valid event in [2026-02-22, 2026-03-01).
const C = Date.parse('2026-03-01T00:00:00Z');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const cutoff = new Date(C);
const now = new Date('2026-03-20T00:00:00Z');

const users = [
  [1, '2026-01-01T00:00:00Z', 'F', '25-34', 'metro'], // active: a view the day before the cutoff
  [2, '2026-01-01T00:00:00Z', 'M', '35-44', 'north'], // last valid event 10 days before: active at 30 days only
  [3, '2026-01-01T00:00:00Z', null, null, null], // in the window only with an invalid (negative-price) event
  [4, '2026-01-01T00:00:00Z', 'F', '18-24', 'south'], // events at and after the cutoff only (and one long before)
  [5, '2026-03-02T00:00:00Z', 'M', '25-34', 'metro'], // signed up after the cutoff
  [6, '2026-01-01T00:00:00Z', 'F', '45-54', 'north'], // exactly at the window's start: active
  [7, '2026-01-01T00:00:00Z', 'M', '55+', 'south'], // no events
];
// [event_id, user_id, session_id, event_type, price, occurred_at (ms)]
const events: [number, number, string, string, string | null, number][] = [
  [1, 1, 'a', 'view', '50.00', C - DAY],
  [2, 1, 'a', 'cart', '50.00', C - DAY + HOUR],
  [3, 1, 'b', 'purchase', '50.00', C - 20 * DAY],
  [4, 1, 'c', 'purchase', '80.00', C + HOUR], // after the cutoff: no feature sees it
  [10, 2, 'd', 'view', '20.00', C - 10 * DAY],
  [20, 3, 'e', 'view', '-5.00', C - DAY],
  [21, 3, 'e', 'view', '5.00', C - 40 * DAY],
  [30, 4, 'f', 'purchase', '10.00', C],
  [31, 4, 'f', 'view', '10.00', C + 2 * DAY],
  [32, 4, 'g', 'view', '10.00', C - 50 * DAY],
  [50, 5, 'h', 'view', '10.00', C - DAY],
  [60, 6, 'i', 'view', '10.00', C - 7 * DAY],
];

let db: Db;
let url: string;
let store: ArtifactStore;
let closeStore: () => void;
let source: SourceDb;
const score = async (activeDays: number) => {
  const q = eventScoringQuery({ cutoff, activeDays, now });
  return (await db.pool.query(q.sql, q.params)).rows as Record<string, unknown>[];
};

beforeAll(async () => {
  ({ db, url } = await freshDatabase('scoring_query'));
  ({ store, close: closeStore } = await testStore());
  source = sourceDatabase(url);
  for (const u of users) await db.pool.query('INSERT INTO shop.users VALUES ($1, $2, $3, $4, $5)', u);
  await db.pool.query("INSERT INTO shop.products (product_id, category, brand, price) VALUES (1, 'shoes', 'nike', 50)");
  for (const [id, user, session, type, price, at] of events) {
    await db.pool.query(
      `INSERT INTO shop.events (event_id, user_id, session_id, product_id, event_type, price, occurred_at) VALUES ($1, $2, $3, 1, $4, $5, $6)`,
      [id, user, session, type, price, new Date(at)],
    );
  }
});

afterAll(async () => {
  await source?.close();
  closeStore?.();
  await db?.close();
});

describe('eventScoringQuery', () => {
  it('returns the active users only: a valid event in [cutoff - activeDays, cutoff), signed up before the cutoff', async () => {
    expect((await score(7)).map((r) => r.user_id)).toEqual(['1', '6']);
    expect((await score(30)).map((r) => r.user_id)).toEqual(['1', '2', '6']);
    // user 3's only event in the window is invalid, user 4's are at or after the cutoff, user 5 signed up after it
    expect((await score(365)).map((r) => r.user_id)).toEqual(['1', '2', '3', '4', '6']);
  });

  it('has the training query columns, with the same feature values and no label', async () => {
    const scored = await score(30);
    const q = eventFeatureQuery({ cutoff, horizonDays: 14, now });
    const train = new Map((await db.pool.query(q.sql, q.params)).rows.map((r) => [r.user_id as string, r]));
    expect(Object.keys(scored[0])).toEqual(['user_id', 'label', ...EVENT_FEATURES.map((f) => f.name)]);
    for (const row of scored) {
      expect(row.label).toBe(0);
      const t = train.get(row.user_id as string)!;
      for (const f of EVENT_FEATURES) expect(row[f.name], `${row.user_id} ${f.name}`).toEqual(t[f.name]);
    }
    // user 1's purchase an hour after the cutoff is a label in training, and no feature of either query
    expect(train.get('1')!.label).toBe(1);
    expect(scored[0].purchases_90d).toBe(1);
    expect(scored[0].days_since_last_view).toBe(1);
  });

  it('reads nothing at or after the cutoff, and rejects a bad activeDays', () => {
    const q = eventScoringQuery({ cutoff, activeDays: 7, now });
    expect(q.params.slice(0, 2)).toEqual(['2026-03-01T00:00:00.000Z', '2026-02-22T00:00:00.000Z']);
    expect(q.sql).toContain('WHERE e.occurred_at < $1::timestamptz');
    expect(q.sql).not.toMatch(/>=\s*\$1::timestamptz(?! -)/); // no condition selects events from the cutoff on
    expect(() => eventScoringQuery({ cutoff, activeDays: 0, now })).toThrow(/activeDays/);
    expect(() => eventScoringQuery({ cutoff, activeDays: 1.5, now })).toThrow(/activeDays/);
  });
});

// The activity that builds scoring features reads shop.* (and a table-mode query) as the least-privilege source
// role, like ingest: a superuser source connection is refused before anything is read.
describe('buildScoringFeatures reads the source as the source role', () => {
  const stamp = Date.now();
  const call = (acts: ReturnType<typeof createScoreFeatureActivities>, input: BuildScoringFeaturesInput) =>
    new MockActivityEnvironment().run(acts.buildScoringFeatures, input) as Promise<BuildScoringFeaturesOutput>;
  const failure = (p: Promise<unknown>) => p.then(() => null, (e: Error & { type?: string }) => e);

  /** A pipeline run whose config says how to build features (what scoring reads of the run that trained the model). */
  async function trainedRun(source: Record<string, unknown>): Promise<string> {
    const runId = randomUUID();
    await db.db
      .insertInto('ml.pipeline_runs')
      .values({ run_id: runId, workflow_id: `wf-${runId}`, model_name: 'sq', status: 'registered', config: JSON.stringify({ modelName: 'sq', source }), config_hash: 'x', code_version: 'test' })
      .execute();
    return runId;
  }

  /** Registered model files with the preprocessing of `features` (table mode scores exactly those columns). */
  async function registered(modelName: string, features: Record<string, 'numeric' | 'categorical'>) {
    const steps = Object.entries(features).map(([name, kind]) => ({ name, kind }));
    await store.putJson(keys.modelFile(modelName, 1, 'model.json'), {});
    await store.put(keys.modelFile(modelName, 1, 'weights.bin'), new Uint8Array(4));
    await store.putJson(keys.modelFile(modelName, 1, 'preprocessing.json'), { version: 1, trainRows: 1, options: {}, steps, featureNames: Object.keys(features) });
  }

  const input = (model: ScoringModel, asOf: string | null, activeDays: number | null): BuildScoringFeaturesInput => ({
    scoreRunId: `score-${model.runId}`,
    temporalRunId: randomUUID(),
    model,
    asOf,
    activeDays,
  });

  it('event mode: the active users, as the source role; a superuser source connection is refused', async () => {
    const runId = await trainedRun({ kind: 'events', horizonDays: 14 });
    const model: ScoringModel = { modelName: `sq-events-${stamp}`, version: 1, runId, mode: 'events' };
    const out = await call(createScoreFeatureActivities({ db, store, codeVersion: 'test', source }), input(model, cutoff.toISOString(), 7));
    expect(out.rows).toBe(2);
    const ids = (await Promise.all(out.features.shards.map((s) => store.getFrame(s)))).flatMap((f) => f.ids);
    expect(ids.sort()).toEqual(['1', '6']);

    const asSuperuser = createSourceDb(url);
    try {
      const err = await failure(call(createScoreFeatureActivities({ db, store, codeVersion: 'test', source: asSuperuser }), input(model, cutoff.toISOString(), 7)));
      expect(err?.type).toBe('InvalidConfig');
      expect(err!.message).toMatch(/role "postgres" is a superuser: source queries run only as a least-privilege read-only role/);
    } finally {
      await asSuperuser.close();
    }
  });

  it('table mode: a query ending in a comment, text declared numeric parsed, duplicate keys counted; values never shown', async () => {
    await db.pool.query(`create table shop.scoring_clients (id int, y boolean, age text, segment text)`);
    await db.pool.query(`insert into shop.scoring_clients select g, g % 2 = 0, (20 + g)::text, 's' || (g % 3) from generate_series(1, 30) g`);
    const features = { age: 'numeric', segment: 'categorical' } as const;
    const table = async (query: string) => {
      const runId = await trainedRun({ kind: 'table', query, entityKey: 'id', label: 'y' });
      const model: ScoringModel = { modelName: `sq-table-${stamp}-${runId.slice(0, 8)}`, version: 1, runId, mode: 'table' };
      await registered(model.modelName, features);
      return { model, acts: createScoreFeatureActivities({ db, store, codeVersion: 'test', source }) };
    };

    const ok = await table('select * from shop.scoring_clients -- every client');
    const out = await call(ok.acts, input(ok.model, null, null));
    expect(out.rows).toBe(30);
    const frame = (await Promise.all(out.features.shards.map((s) => store.getFrame(s))))[0];
    expect(Array.from(frame.numeric.age).slice(0, 3)).toEqual([21, 22, 23]);
    expect(frame.categorical.segment.slice(0, 3)).toEqual(['s1', 's2', 's0']);

    const notNumber = await table(`select id, y, case when id = 7 then 'secret-age-7' else age end as age, segment from shop.scoring_clients order by id`);
    const bad = await failure(call(notNumber.acts, input(notNumber.model, null, null)));
    expect(bad?.type).toBe('InvalidData');
    expect(bad!.message).toMatch(/column "age" holds 1 value \(row 7\) that are not numbers/);
    expect(bad!.message).not.toContain('secret-age-7');

    const duplicated = await table(`select * from shop.scoring_clients union all select * from shop.scoring_clients where id <= 2`);
    const dup = await failure(call(duplicated.acts, input(duplicated.model, null, null)));
    expect(dup?.type).toBe('InvalidData');
    expect(dup!.message).toMatch(/returns 32 rows but 30 distinct values of "id": scoring needs one row per entity/);

    const asSuperuser = createSourceDb(url);
    try {
      const refused = await failure(call(createScoreFeatureActivities({ db, store, codeVersion: 'test', source: asSuperuser }), input(ok.model, null, null)));
      expect(refused?.type).toBe('InvalidConfig');
      expect(refused!.message).toMatch(/is a superuser/);
    } finally {
      await asSuperuser.close();
    }
  });
});

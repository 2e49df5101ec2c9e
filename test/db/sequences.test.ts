import { randomUUID } from 'node:crypto';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCleanActivities, type CleanOutput } from '../../activities/clean.js';
import { createIngestActivities, type IngestOutput } from '../../activities/ingest.js';
import { createScoreFeatureActivities } from '../../activities/score-features.js';
import type { BuildScoringFeaturesOutput } from '../../activities/score.js';
import type { Db } from '../../db/client.js';
import { EVENT_FEATURES, eventFeatureQuery, eventScoringQuery } from '../../db/features.js';
import { sequenceFeatureSpecs } from '../../db/sequences.js';
import type { SourceDb } from '../../db/source.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { freshDatabase, testStore } from '../support/services.js';
import { sourceDatabase } from '../support/source.js';

// Each user's last N valid events before the cutoff, on a hand-made shop. Cutoff C = 2026-03-01T00:00Z, horizon
// 7 days, run time now = 2026-03-20; the shop opened at the first signup, 2026-01-01.
const C = Date.parse('2026-03-01T00:00:00Z');
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const cutoff = new Date(C);
const now = new Date('2026-03-20T00:00:00Z');
const horizonDays = 7;

const users = [
  [1, '2026-01-01T00:00:00Z', 'F', '25-34', 'metro'],
  [2, '2026-01-01T00:00:00Z', 'M', '35-44', 'north'],
  [3, '2026-01-01T00:00:00Z', null, null, null], // no events at all
  [4, '2026-01-01T00:00:00Z', 'F', '18-24', 'south'], // events at and after the cutoff only
  [5, '2026-03-02T00:00:00Z', 'M', '25-34', 'metro'], // signed up after the cutoff: no row
];
const products = [
  [1, 'shoes', 'nike', '50.00'],
  [2, 'tv', 'sony', '400.00'],
  [3, null, null, '10.00'],
];
// [event_id, user_id, product_id, event_type, price, occurred_at (ms)]
const events: [number, number, number | null, string, string | null, number][] = [
  [101, 1, 1, 'view', '50.00', C - 10 * DAY],
  [102, 1, 1, 'cart', '50.00', C - 10 * DAY + 2 * HOUR],
  [109, 1, 1, 'view', '50.00', C - 10 * DAY + 2 * HOUR], // the same instant as 102: the higher event id is newer
  [103, 1, 2, 'view', '400.00', C - DAY],
  [103, 1, 2, 'view', '400.00', C - HOUR], // a second copy of event 103: dropped, the first copy is kept
  [104, 1, 2, 'review', null, C - 12 * HOUR],
  [105, 1, 1, 'view', '-5.00', C - 6 * HOUR], // negative price: invalid
  [106, 1, 1, 'wishlist', '50.00', C - 3 * HOUR], // unknown type: invalid
  [107, 1, 1, 'purchase', '50.00', C], // exactly at the cutoff: the label, never a sequence step
  [108, 1, 2, 'view', '400.00', C + 2 * DAY], // after the cutoff
  [201, 2, 3, 'view', '10.00', C - 5 * HOUR], // a product without a category
  [202, 2, 3, 'cart', '10.00', C - 2 * HOUR - 30 * MIN],
  [203, 2, 3, 'view', '10.00', Date.parse('2025-12-01T00:00:00Z')], // before the shop opened: invalid
  [204, 2, null, 'view', '10.00', Date.parse('2026-04-01T00:00:00Z')], // after now: invalid
  [401, 4, 1, 'view', '50.00', C],
  [402, 4, 1, 'purchase', '50.00', C + DAY],
];

type Step = [eventType: string | null, category: string | null, price: number | null, hoursSincePrev: number | null];
/** The expected seq_<i>_* values of a row, position by position; positions past `steps` are all NULL. */
const expectSequence = (row: Record<string, unknown>, n: number, steps: Step[]) => {
  for (let i = 1; i <= n; i++) {
    const got = ['event_type', 'category', 'price', 'hours_since_prev'].map((f) => row[`seq_${i}_${f}`]);
    expect(got, `user ${row.user_id} position ${i}`).toEqual(steps[i - 1] ?? [null, null, null, null]);
  }
};
// user 1, most recent first: 104 (C-12h), 103 (C-1d), 109 and 102 (C-10d+2h, tied), 101 (C-10d)
const user1: Step[] = [
  ['review', 'tv', null, 12],
  ['view', 'tv', 400, 9 * 24 - 2],
  ['view', 'shoes', 50, 0],
  ['cart', 'shoes', 50, 2],
  ['view', 'shoes', 50, null],
];
const user2: Step[] = [
  ['cart', null, 10, 2.5],
  ['view', null, 10, null],
];

let db: Db;
let url: string;
let store: ArtifactStore;
let closeStore: () => void;
let source: SourceDb;

async function insertEvent([id, user, product, type, price, at]: (typeof events)[number]) {
  await db.pool.query(
    `INSERT INTO shop.events (event_id, user_id, session_id, product_id, event_type, price, occurred_at) VALUES ($1, $2, 's', $3, $4, $5, $6)`,
    [id, user, product, type, price, new Date(at)],
  );
}
const train = async (sequenceLength: number) => {
  const q = eventFeatureQuery({ cutoff, horizonDays, now, sequenceLength });
  return (await db.pool.query(q.sql, q.params)).rows as Record<string, unknown>[];
};
const score = async (sequenceLength: number) => {
  const q = eventScoringQuery({ cutoff, activeDays: 30, now, sequenceLength });
  return (await db.pool.query(q.sql, q.params)).rows as Record<string, unknown>[];
};
const byUser = (rows: Record<string, unknown>[], id: string) => rows.find((r) => r.user_id === id)!;

beforeAll(async () => {
  ({ db, url } = await freshDatabase('sequences'));
  ({ store, close: closeStore } = await testStore());
  source = sourceDatabase(url);
  for (const u of users) await db.pool.query('INSERT INTO shop.users VALUES ($1, $2, $3, $4, $5)', u);
  for (const p of products) await db.pool.query('INSERT INTO shop.products (product_id, category, brand, price) VALUES ($1, $2, $3, $4)', p);
  for (const e of events) await insertEvent(e);
});

afterAll(async () => {
  await source?.close();
  closeStore?.();
  await db?.close();
});

describe('the last N events before the cutoff, in the feature query', () => {
  it('appends seq_<i>_<field> after the existing columns, in sequenceFeatureSpecs order', async () => {
    const rows = await train(3);
    expect(Object.keys(rows[0])).toEqual(['user_id', 'label', ...EVENT_FEATURES.map((f) => f.name), ...sequenceFeatureSpecs(3).map((f) => f.name)]);
    expect(rows.map((r) => r.user_id)).toEqual(['1', '2', '3', '4']);
  });

  it('orders most recent first (ties by event id), keeps one copy of a duplicate, skips invalid events', async () => {
    const rows = await train(3);
    // the 3rd step's gap is to the 4th event, which is past N but still read
    expectSequence(byUser(rows, '1'), 3, user1.slice(0, 3));
    expectSequence(byUser(rows, '2'), 3, user2);
  });

  it('pads with NULLs past a user\'s events, and hours_since_prev is NULL for the oldest one', async () => {
    const rows = await train(6);
    expectSequence(byUser(rows, '1'), 6, user1);
    expectSequence(byUser(rows, '2'), 6, user2);
    expectSequence(byUser(rows, '3'), 6, []); // no events at all
  });

  it('reads nothing at or after the cutoff: it is the label only', async () => {
    const rows = await train(4);
    expect(byUser(rows, '1').label).toBe(1); // the purchase exactly at the cutoff
    expect(byUser(rows, '4').label).toBe(1);
    expectSequence(byUser(rows, '4'), 4, []); // only events at and after the cutoff
    // more events at and after the cutoff change no sequence column
    const before = await train(4);
    await insertEvent([901, 2, 2, 'purchase', '400.00', C]);
    await insertEvent([902, 2, 2, 'view', '400.00', C + HOUR]);
    try {
      const after = await train(4);
      const seq = (rows: Record<string, unknown>[]) => rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => k.startsWith('seq_'))));
      expect(seq(after)).toEqual(seq(before));
      expect(byUser(after, '2').label).toBe(1);
    } finally {
      await db.pool.query('DELETE FROM shop.events WHERE event_id IN (901, 902)');
    }
  });

  it('gives the same values in the scoring query as in the training query at the same cutoff', async () => {
    const [scored, trained] = [await score(5), await train(5)];
    expect(scored.map((r) => r.user_id)).toEqual(['1', '2']); // the active users
    expect(Object.keys(scored[0])).toEqual(Object.keys(trained[0]));
    for (const row of scored) {
      const t = byUser(trained, row.user_id as string);
      for (const f of sequenceFeatureSpecs(5)) expect(row[f.name], `${row.user_id} ${f.name}`).toEqual(t[f.name]);
    }
  });

  it('with sequences off, has exactly the columns and values it always had', async () => {
    const [off, on] = [await train(0), await train(2)];
    expect(Object.keys(off[0])).toEqual(['user_id', 'label', ...EVENT_FEATURES.map((f) => f.name)]);
    for (const row of off) {
      const o = byUser(on, row.user_id as string);
      for (const [k, v] of Object.entries(row)) expect(o[k], `${row.user_id} ${k}`).toEqual(v);
    }
  });
});

describe('the activities with source.sequenceLength', () => {
  const env = () => new MockActivityEnvironment();
  const deps = () => ({ db, store, codeVersion: 'test', source });

  async function run(config: Record<string, unknown>): Promise<string> {
    const runId = `seq-${randomUUID()}`;
    await db.db
      .insertInto('ml.pipeline_runs')
      .values({ run_id: runId, workflow_id: `wf-${runId}`, model_name: 'seq', status: 'running', config: JSON.stringify(config), config_hash: 'x', code_version: 'test' })
      .execute();
    return runId;
  }

  it('ingest returns the sequence specs and writes their columns; clean neither quarantines nor profiles them', async () => {
    const src = { kind: 'events' as const, cutoff: cutoff.toISOString(), horizonDays, sequenceLength: 2 };
    const runId = await run({ modelName: 'seq', source: src });
    const ingest = (await env().run(createIngestActivities(deps()).ingestSource, { runId, source: src })) as IngestOutput;
    expect(ingest.features).toEqual([...EVENT_FEATURES, ...sequenceFeatureSpecs(2)]);
    const raw = (await Promise.all(ingest.raw.shards.map((s) => store.getFrame(s))))[0];
    expect(raw.ids).toEqual(['1', '2', '3', '4']);
    expect(raw.categorical.seq_1_event_type).toEqual(['review', 'cart', null, null]);
    expect(raw.categorical.seq_2_category).toEqual(['tv', null, null, null]);
    expect(Array.from(raw.numeric.seq_2_hours_since_prev)).toEqual([214, NaN, NaN, NaN]);

    const quality = { maxQuarantineRate: 0.05, maxPsi: 0.25 };
    const clean = (await env().run(createCleanActivities(deps()).cleanData, { runId, modelName: 'seq', mode: 'events' as const, raw: ingest.raw, quality })) as CleanOutput;
    expect(clean.rowsOut).toBe(4);
    expect(clean.quarantined).toEqual({});
    expect(clean.repaired).toEqual({});
    const kept = (await Promise.all(clean.clean.shards.map((s) => store.getFrame(s))))[0];
    expect(kept.categorical.seq_1_event_type).toEqual(raw.categorical.seq_1_event_type);
    const ledger = await db.db.selectFrom('ml.data_quality').select('features').where('run_id', '=', runId).where('stage', '=', 'clean').executeTakeFirstOrThrow();
    const features = ledger.features as Record<string, { kind: string }>;
    expect(Object.keys(features).filter((k) => k.startsWith('seq_'))).toEqual([]);
    expect(features.views_30d.kind).toBe('numeric');
    // 4 users × 8 columns = 32 cells: user 1 has 7 values (no review price), user 2 has 5 (no category, no oldest gap), users 3 and 4 none
    expect(features.sequence).toEqual({ kind: 'sequence', length: 2, columns: 8, missingRate: (32 - 12) / 32 });
  });

  it('scoring builds the columns of the length the model was trained with, read from its run\'s config', async () => {
    const runId = await run({ modelName: 'seq', source: { kind: 'events', horizonDays, sequenceLength: 3 } });
    const input = {
      scoreRunId: `score-${runId}`,
      temporalRunId: randomUUID(),
      model: { modelName: 'seq', version: 1, runId, mode: 'events' as const },
      asOf: cutoff.toISOString(),
      activeDays: 30,
    };
    const out = (await env().run(createScoreFeatureActivities(deps()).buildScoringFeatures, input)) as BuildScoringFeaturesOutput;
    const frame = (await Promise.all(out.features.shards.map((s) => store.getFrame(s))))[0];
    expect(frame.ids).toEqual(['1', '2']);
    expect(frame.categorical.seq_3_event_type).toEqual(['view', null]);
    expect(Array.from(frame.numeric.seq_1_hours_since_prev)).toEqual([12, 2.5]);
    expect(frame.numeric.seq_4_price).toBeUndefined();

    // a run from before the key existed: no sequence columns
    const older = await run({ modelName: 'seq', source: { kind: 'events', horizonDays } });
    const plain = (await env().run(createScoreFeatureActivities(deps()).buildScoringFeatures, { ...input, temporalRunId: randomUUID(), model: { ...input.model, runId: older } })) as BuildScoringFeaturesOutput;
    const f = (await Promise.all(plain.features.shards.map((s) => store.getFrame(s))))[0];
    expect([...Object.keys(f.numeric), ...Object.keys(f.categorical)].filter((k) => k.startsWith('seq_'))).toEqual([]);
  });
});

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../db/client.js';
import { EVENT_FEATURES, eventFeatureQuery, eventQualityQuery } from '../../db/features.js';
import { createShop, utcMidnight, type ShopOptions } from '../../db/synthetic/generator.js';
import { seedShop, type SeedShopResult } from '../../db/synthetic/load.js';
import { truthProbability } from '../../db/synthetic/truth.js';
import { freshDatabase } from '../support/services.js';

// A small shop against the real Postgres of the dev stack: the SQL features must equal the generator's JS mirror,
// so the known truth holds for what the pipeline actually trains on.
const options: ShopOptions = {
  users: 2000, days: 30, seed: 5, horizonDays: 10, dirtyRate: 0.02,
  end: utcMidnight(),
};

let db: Db;
let seeded: SeedShopResult;
let rows: Record<string, unknown>[];

async function features(client: pg.Pool | pg.PoolClient) {
  const q = eventFeatureQuery({ cutoff: seeded.timeline.cutoff, horizonDays: options.horizonDays! });
  return (await client.query(q.sql, q.params)).rows as Record<string, unknown>[];
}

beforeAll(async () => {
  ({ db } = await freshDatabase('synthetic_features')); // a migrated database of this file's own
  seeded = await seedShop(db.pool, options);
  rows = await features(db.pool);
});

afterAll(async () => {
  await db?.close();
});

describe('eventFeatureQuery on a seeded synthetic shop', () => {
  it('returns one row per user who signed up before the cutoff, with the declared columns', async () => {
    expect(rows.length).toBe(seeded.labelled);
    expect(Object.keys(rows[0])).toEqual(['user_id', 'label', ...EVENT_FEATURES.map((f) => f.name)]);
    const { rows: [shop] } = await db.pool.query('SELECT users, events::float8 AS events, cutoff_at FROM bench.shops');
    expect(shop).toEqual({ users: options.users, events: seeded.events, cutoff_at: seeded.timeline.cutoff });
  });

  it('computes exactly the features and labels the truth was drawn from', async () => {
    const truth = new Map((await db.pool.query('SELECT user_id::text, probability, label FROM bench.user_truth')).rows
      .map((r) => [r.user_id as string, r as { probability: number; label: boolean }]));
    expect(truth.size).toBe(rows.length);
    const mirror = new Map<string, Record<string, unknown>>();
    for (const u of createShop(options).users()) if (u.features) mirror.set(String(u.user.userId), u.features);
    for (const row of rows) {
      const t = truth.get(row.user_id as string)!;
      const { user_id: _id, label, ...sqlFeatures } = row;
      expect(Math.abs(truthProbability(sqlFeatures as never) - t.probability)).toBeLessThan(1e-9);
      expect(label).toBe(t.label ? 1 : 0);
      const js = mirror.get(row.user_id as string)!;
      for (const f of EVENT_FEATURES) {
        const [a, b] = [sqlFeatures[f.name], js[f.name]];
        if (typeof a === 'number' && typeof b === 'number') expect(Math.abs(a - b), f.name).toBeLessThan(1e-9);
        else expect(a, `${f.name} of user ${row.user_id}`).toEqual(b);
      }
    }
    const positives = rows.filter((r) => r.label === 1).length / rows.length;
    expect(positives).toBeGreaterThan(0.02);
  });

  it('lets nothing at or after the cutoff leak into a feature', async () => {
    const cutoff = seeded.timeline.cutoff.getTime();
    const before = rows.find((r) => r.label === 0 && (r.views_30d as number) > 3)!;
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const insert = `INSERT INTO shop.events (event_id, user_id, session_id, product_id, event_type, price, occurred_at)
        SELECT 9000000000 + n, $1, 'leak', (SELECT max(product_id) FROM shop.products), t, 1.00, $2::timestamptz
        FROM unnest(ARRAY['view', 'cart', 'purchase', 'review']) WITH ORDINALITY AS x(t, n)`;
      await client.query(insert, [before.user_id, new Date(cutoff).toISOString()]);
      await client.query(insert.replace('9000000000', '9000000100'), [before.user_id, new Date(cutoff + 3_600_000).toISOString()]);
      const after = (await features(client)).find((r) => r.user_id === before.user_id)!;
      expect(after.label).toBe(1); // the inserted rows were read, for the label only
      expect({ ...after, label: 0 }).toEqual(before);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  it('counts the dirty rows the generator inserted, per reason', async () => {
    const q = eventQualityQuery({ cutoff: seeded.timeline.cutoff });
    const { rows: [quality] } = await db.pool.query(q.sql, q.params);
    const d = seeded.dirty;
    expect(quality).toMatchObject({
      total_rows: seeded.events,
      valid_rows: seeded.cleanEvents,
      null_key: d.null_user + d.null_type,
      unknown_event_type: d.unknown_type,
      negative_price: d.negative_price,
      future_timestamp: d.future,
      duplicate_event_id: d.duplicate,
    });
    expect(d.duplicate).toBeGreaterThan(0);
    expect(quality.valid_before_cutoff).toBeLessThan(quality.valid_rows);
  });
});

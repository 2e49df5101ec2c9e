import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../db/client.js';
import { EVENT_FEATURES, eventFeatureQuery, eventScoringQuery } from '../../db/features.js';
import { freshDatabase } from '../support/services.js';

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
const score = async (activeDays: number) => {
  const q = eventScoringQuery({ cutoff, activeDays, now });
  return (await db.pool.query(q.sql, q.params)).rows as Record<string, unknown>[];
};

beforeAll(async () => {
  ({ db } = await freshDatabase('scoring_query'));
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

import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { to as copyTo } from 'pg-copy-streams';
import type { Db } from '../../db/client.js';
import {
  cutoffCheckQuery, EVENT_FEATURES, eventFeatureQuery, eventQualityQuery, eventQuarantineQuery,
} from '../../db/features.js';
import { freshDatabase } from '../support/services.js';

// A shop small enough to compute every feature by hand. Cutoff C = 2026-03-01T00:00Z, horizon 7 days (label window
// [C, 2026-03-08)), run time now = 2026-03-20. The shop opened at the first signup, 2026-01-01.
const C = Date.parse('2026-03-01T00:00:00Z');
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const cutoff = new Date(C);
const now = new Date('2026-03-20T00:00:00Z');
const horizonDays = 7;

const users = [
  [1, '2026-01-01T00:00:00Z', 'F', '25-34', 'metro'],
  [2, '2026-02-20T12:00:00Z', 'M', '35-44', 'north'],
  [3, '2026-02-25T00:00:00Z', null, null, null], // no events at all
  [4, '2026-03-02T00:00:00Z', 'F', '18-24', 'south'], // signed up after the cutoff: no feature row
];
const products = [
  [501, 'shoes', 'nike', '50.00'],
  [502, 'shoes', 'adidas', '70.00'],
  [503, 'tv', 'sony', '400.00'],
  [504, null, null, '10.00'],
];
// [event_id, user_id, session_id, product_id, event_type, price, rating, occurred_at (ms)]
type Row = [number, number | null, string | null, number | null, string, string | null, number | null, number];
const events: Row[] = [
  [1, 1, 'a', 501, 'view', '50.00', null, C - 2 * DAY], //                       02-27 00:00
  [2, 1, 'a', 502, 'view', '70.00', null, C - 2 * DAY + 10 * MIN], //            02-27 00:10
  [3, 1, 'a', 502, 'cart', '70.00', null, C - 2 * DAY + 15 * MIN], //            02-27 00:15
  [4, 1, 'a', 502, 'purchase', '70.00', null, C - 2 * DAY + 30 * MIN], //        02-27 00:30
  [4, 1, 'a', 502, 'purchase', '70.00', null, C - 2 * DAY + 30 * MIN], //        duplicate of event 4
  [11, 1, 'a', 502, 'wishlist', '70.00', null, C - 2 * DAY + 20 * MIN], //       unknown type
  [5, 1, 'b', 501, 'view', '50.00', null, C - 12 * HOUR], //                     02-28 12:00
  [12, 1, 'b', 503, 'view', 'NaN', null, C - 12 * HOUR + 2 * MIN], //            NaN price
  [6, 1, 'b', 503, 'view', '400.00', null, C - 12 * HOUR + 5 * MIN], //          02-28 12:05
  [7, 1, 'c', 504, 'view', '10.00', null, C - 40 * DAY], //                      01-20: in 90 days, not in 30
  [8, 1, null, 502, 'review', null, 5, C - DAY], //                              02-28 00:00
  [9, 1, 'd', 501, 'purchase', '50.00', null, C], //                             exactly at the cutoff: label only
  [10, 1, 'd', 503, 'view', '400.00', null, C + 8 * DAY], //                     after the label window
  [13, 1, 'x', 501, 'view', '50.00', null, Date.parse('2025-12-31T00:00:00Z')], // before the shop opened
  [14, 1, 'y', 501, 'view', '50.00', null, Date.parse('2026-04-01T00:00:00Z')], // after now: future
  [21, 2, 's', 503, 'view', '400.00', null, C - 3 * HOUR], //                    02-28 21:00
  [22, 2, 's', 503, 'cart', '400.00', null, C - 3 * HOUR + 10 * MIN], //         02-28 21:10
  [23, 2, 's', 503, 'remove_from_cart', '400.00', null, C - 3 * HOUR + 20 * MIN], // 21:20
  [25, 2, 's', 503, 'view', '-5.00', null, C - HOUR], //                         negative price
  [24, 2, 't', 503, 'purchase', '400.00', null, C + 10 * DAY], //                after the window: label 0
  [30, null, 'z', 501, 'view', '50.00', null, C - DAY], //                       no user
];

let db: Db;
let rows: Record<string, unknown>[];
const byUser = (id: string) => rows.find((r) => r.user_id === id);

beforeAll(async () => {
  ({ db } = await freshDatabase('features_fixture'));
  for (const u of users) await db.pool.query('INSERT INTO shop.users VALUES ($1, $2, $3, $4, $5)', u);
  for (const p of products) {
    await db.pool.query('INSERT INTO shop.products (product_id, category, brand, price) VALUES ($1, $2, $3, $4)', p);
  }
  for (const [id, user, session, product, type, price, rating, at] of events) {
    await db.pool.query(
      `INSERT INTO shop.events (event_id, user_id, session_id, product_id, event_type, price, rating, occurred_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [id, user, session, product, type, price, rating, new Date(at)],
    );
  }
  const q = eventFeatureQuery({ cutoff, horizonDays, now });
  rows = (await db.pool.query(q.sql, q.params)).rows;
});

afterAll(async () => {
  await db?.close();
});

describe('eventFeatureQuery on a hand-computed fixture', () => {
  it('returns the users who signed up before the cutoff, with the declared columns', () => {
    expect(rows.map((r) => r.user_id)).toEqual(['1', '2', '3']);
    expect(Object.keys(rows[0])).toEqual(['user_id', 'label', ...EVENT_FEATURES.map((f) => f.name)]);
  });

  it('user 1: valid events 1–8 before the cutoff (event 4 once), a purchase at the cutoff', () => {
    expect(byUser('1')).toEqual({
      user_id: '1',
      label: 1, //                                  event 9, a purchase at exactly C, is in [C, C + 7d)
      days_since_last_view: 715 / 1440, //          event 6 at C - 12h + 5min = C - 715 min
      days_since_last_cart: 2865 / 1440, //         event 3 at C - 2d + 15min = C - (2880 - 15) min
      days_since_last_purchase: 2850 / 1440, //     event 4 at C - 2d + 30min
      views_1d: 2, //                               events 5, 6 (the NaN-priced 12 is invalid)
      views_7d: 4, //                               + events 1, 2
      views_30d: 4,
      views_90d: 5, //                              + event 7 (C - 40d)
      carts_1d: 0, carts_7d: 1, carts_30d: 1, //    event 3
      removes_30d: 0,
      purchases_1d: 0, purchases_7d: 1, purchases_30d: 1, purchases_90d: 1, // event 4, its duplicate dropped
      spend_90d: 70, //                             event 4
      cart_view_ratio_30d: 1 / 4, //                1 cart / 4 views
      purchase_cart_ratio_90d: 1, //                1 purchase / 1 cart
      distinct_categories_30d: 2, //                shoes (1, 2, 5), tv (6)
      distinct_brands_30d: 3, //                    nike (1, 5), adidas (2), sony (6)
      category_concentration_30d: 3 / 4, //         shoes: 3 of 4 views
      brand_concentration_30d: 2 / 4, //            nike: 2 of 4 views
      sessions_30d: 2, //                           a (1–4), b (5, 6); the review has no session
      events_per_session_30d: 6 / 2,
      mean_session_minutes_30d: (30 + 5) / 2, //    a: 00:00 → 00:30, b: 12:00 → 12:05
      mean_view_price_30d: (50 + 70 + 50 + 400) / 4, // 142.5
      reviews_90d: 1, //                            event 8
      tenure_days: 31 + 28, //                      2026-01-01 → 2026-03-01
      gender: 'F', age_band: '25-34', region: 'metro',
    });
  });

  it('user 2: a viewed, carted and removed TV; the negative-priced view is invalid, the purchase too late', () => {
    expect(byUser('2')).toEqual({
      user_id: '2',
      label: 0, //                                  event 24 at C + 10d is after C + 7d
      days_since_last_view: 3 / 24, //              event 21 at C - 3h (event 25 at C - 1h is invalid)
      days_since_last_cart: 170 / 1440, //          event 22 at C - 2h50min
      days_since_last_purchase: null,
      views_1d: 1, views_7d: 1, views_30d: 1, views_90d: 1,
      carts_1d: 1, carts_7d: 1, carts_30d: 1,
      removes_30d: 1, //                            event 23
      purchases_1d: 0, purchases_7d: 0, purchases_30d: 0, purchases_90d: 0,
      spend_90d: 0,
      cart_view_ratio_30d: 1, //                    1 cart / 1 view
      purchase_cart_ratio_90d: 0, //                0 purchases / 1 cart
      distinct_categories_30d: 1, distinct_brands_30d: 1,
      category_concentration_30d: 1, brand_concentration_30d: 1,
      sessions_30d: 1, //                           s (21–23)
      events_per_session_30d: 3,
      mean_session_minutes_30d: 20, //              21:00 → 21:20
      mean_view_price_30d: 400,
      reviews_90d: 0,
      tenure_days: 8.5, //                          2026-02-20 12:00 → 2026-03-01 00:00
      gender: 'M', age_band: '35-44', region: 'north',
    });
  });

  it('user 3: no events, so zero counts and NULL for everything undefined', () => {
    expect(byUser('3')).toEqual({
      user_id: '3', label: 0,
      days_since_last_view: null, days_since_last_cart: null, days_since_last_purchase: null,
      views_1d: 0, views_7d: 0, views_30d: 0, views_90d: 0, carts_1d: 0, carts_7d: 0, carts_30d: 0, removes_30d: 0,
      purchases_1d: 0, purchases_7d: 0, purchases_30d: 0, purchases_90d: 0, spend_90d: 0,
      cart_view_ratio_30d: null, purchase_cart_ratio_90d: null,
      distinct_categories_30d: 0, distinct_brands_30d: 0, category_concentration_30d: null, brand_concentration_30d: null,
      sessions_30d: 0, events_per_session_30d: null, mean_session_minutes_30d: null, mean_view_price_30d: null,
      reviews_90d: 0,
      tenure_days: 4, //                            2026-02-25 → 2026-03-01
      gender: null, age_band: null, region: null,
    });
  });

  it('takes an explicit shop opening time: earlier events become invalid', async () => {
    const q = eventFeatureQuery({ cutoff, horizonDays, now, openedAt: new Date('2026-01-25T00:00:00Z') });
    const [u1] = (await db.pool.query(q.sql, q.params)).rows;
    expect(u1).toMatchObject({ user_id: '1', views_30d: 4, views_90d: 4 }); // event 7 (01-20) is now before opening
  });

  it('gives the same rows with every value inlined', async () => {
    const q = eventFeatureQuery({ cutoff, horizonDays, now, inline: true });
    expect(q.params).toEqual([]);
    expect((await db.pool.query(q.sql)).rows).toEqual(rows);
  });
});

describe('event quality on the fixture', () => {
  it('counts each invalid row under its first reason, so the reasons sum to total - valid', async () => {
    const q = eventQualityQuery({ cutoff, now });
    const { rows: [quality] } = await db.pool.query(q.sql, q.params);
    expect(quality).toEqual({
      total_rows: 21,
      valid_rows: 14, //                            user 1: events 1–10, user 2: 21–24
      null_key: 1, unknown_event_type: 1, non_finite_price: 1, negative_price: 1, future_timestamp: 1,
      before_shop_opened: 1, duplicate_event_id: 1,
      valid_before_cutoff: 11, //                   user 1: 1–8, user 2: 21–23
    });
  });

  it('lists exactly the invalid rows with their reason, inlined for COPY TO STDOUT', async () => {
    const q = eventQuarantineQuery({ cutoff, now, inline: true });
    expect(q.sql).not.toMatch(/\$\d/);
    const client = await db.pool.connect();
    let text = '';
    try {
      const stream: Readable = client.query(copyTo(`COPY (${q.sql}) TO STDOUT WITH (FORMAT csv, HEADER)`));
      for await (const chunk of stream) text += chunk.toString();
    } finally {
      client.release();
    }
    const [header, ...lines] = text.trim().split('\n');
    expect(header).toBe('event_id,user_id,session_id,product_id,event_type,price,rating,occurred_at,reason,before_cutoff');
    const got = lines.map((l) => { const f = l.split(','); return [f[0], f[8], f[9]]; });
    expect(got).toEqual([
      ['13', '1', 'before_shop_opened'],
      ['4', '1', 'duplicate_event_id'],
      ['14', '1', 'future_timestamp'],
      ['25', '2', 'negative_price'],
      ['12', '1', 'non_finite_price'],
      ['30', '', 'null_key'],
      ['11', '1', 'unknown_event_type'],
    ].map(([id, user, reason]) => [id, reason, id === '14' ? 'f' : 't']));
    expect(lines.find((l) => l.startsWith('12,'))).toContain(',NaN,');
  });

  it('checks a cutoff: valid events before it, in its label window, and the last valid one', async () => {
    const q = cutoffCheckQuery({ cutoff, horizonDays, now });
    const { rows: [check] } = await db.pool.query(q.sql, q.params);
    expect(check).toEqual({
      valid_before_cutoff: 11,
      valid_in_window: 1, //                        event 9 at C; 10 (C + 8d) and 24 (C + 10d) are after
      last_valid_at: new Date(C + 10 * DAY), //     event 24; 14 is in the future
    });
    const later = cutoffCheckQuery({ cutoff: new Date(C + 7 * DAY), horizonDays, now, inline: true });
    const { rows: [l] } = await db.pool.query(later.sql);
    expect(l).toMatchObject({ valid_before_cutoff: 12, valid_in_window: 2 }); // + event 9; events 10, 24
  });
});

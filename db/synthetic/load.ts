/** Loads a synthetic shop into shop.* and bench.* with COPY, streaming one user at a time. */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { createShop, DIRTY_KINDS, type DirtyKind, type ShopOptions, type Timeline } from './generator.js';

export interface SeedShopOptions extends ShopOptions {
  log?: (message: string) => void;
}

export interface SeedShopResult {
  timeline: Timeline;
  users: number;
  products: number;
  /** Rows in shop.events, dirty ones included. */
  events: number;
  cleanEvents: number;
  dirty: Record<DirtyKind, number>;
  /** Users who signed up before the cutoff, i.e. rows in bench.user_truth. */
  labelled: number;
  positives: number;
  bots: number;
  seconds: number;
}

const text = (v: string | number | null) => (v === null ? '\\N' : String(v).replace(/[\\\t\n\r]/g, (c) => `\\${c === '\t' ? 't' : c === '\n' ? 'n' : c === '\r' ? 'r' : '\\'}`));
const row = (values: (string | number | null)[]) => values.map(text).join('\t') + '\n';
const money = (cents: number | null) =>
  cents === null ? null : `${cents < 0 ? '-' : ''}${Math.floor(Math.abs(cents) / 100)}.${String(Math.abs(cents) % 100).padStart(2, '0')}`;
const iso = (ms: number) => new Date(ms).toISOString();

/** Replaces the synthetic shop (TRUNCATE shop.*, bench.*) with a freshly generated one; same options, same data. */
export async function seedShop(pool: pg.Pool, options: SeedShopOptions): Promise<SeedShopResult> {
  const t0 = performance.now();
  const { log = () => {} } = options;
  const horizonDays = options.horizonDays ?? 14;
  const dirtyRate = options.dirtyRate ?? 0.01;
  const shop = createShop({ ...options, horizonDays, dirtyRate });
  const { timeline } = shop;
  const totals = { events: 0, cleanEvents: 0, labelled: 0, positives: 0, bots: 0 };
  const dirty = Object.fromEntries(DIRTY_KINDS.map((k) => [k, 0])) as Record<DirtyKind, number>;
  // O(users) small rows are kept; events, the bulk, stream straight into COPY.
  const users: string[] = [];
  const truths: string[] = [];
  function* eventRows(): Generator<string> {
    let done = 0;
    for (const g of shop.users()) {
      const u = g.user;
      users.push(row([u.userId, iso(u.signupAt), u.gender, u.ageBand, u.region]));
      if (g.truth) {
        truths.push(row([u.userId, g.truth.probability, g.truth.label ? 't' : 'f', g.truth.isBot ? 't' : 'f']));
        totals.labelled++;
        totals.positives += +g.truth.label;
        totals.bots += +g.truth.isBot;
      }
      totals.events += g.events.length;
      totals.cleanEvents += g.clean;
      for (const k of DIRTY_KINDS) dirty[k] += g.dirty[k];
      let chunk = '';
      for (const e of g.events) {
        chunk += row([e.eventId, e.userId, e.sessionId, e.productId, e.eventType, money(e.priceCents), e.rating, iso(e.at)]);
      }
      if (chunk) yield chunk;
      if (++done % Math.max(1, Math.round(options.users / 10)) === 0) log(`seed: ${done}/${options.users} users, ${totals.events} events`);
    }
  }
  const copy = async (client: pg.PoolClient, target: string, rows: Iterable<string>) =>
    pipeline(Readable.from(rows), client.query(copyFrom(`COPY ${target} FROM STDIN`)));

  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('TRUNCATE shop.events, shop.users, shop.products, bench.user_truth, bench.shops');
    await copy(client, 'shop.products (product_id, category, category_id, brand, price)',
      shop.products.map((p) => row([p.productId, p.category, p.categoryId, p.brand, money(p.priceCents)])));
    await copy(client, 'shop.events (event_id, user_id, session_id, product_id, event_type, price, rating, occurred_at)', eventRows());
    await copy(client, 'shop.users (user_id, signup_at, gender, age_band, region)', users);
    await copy(client, 'bench.user_truth (user_id, probability, label, is_bot)', truths);
    await client.query(
      `INSERT INTO bench.shops (id, seed, users, days, start_at, end_at, cutoff_at, horizon_days, events, dirty_rate)
       VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [options.seed, options.users, options.days, timeline.start, timeline.end, timeline.cutoff, horizonDays, totals.events, dirtyRate],
    );
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
  await pool.query('ANALYZE shop.users, shop.products, shop.events, bench.user_truth');
  const seconds = (performance.now() - t0) / 1000;
  log(`seed: ${options.users} users, ${totals.events} events (${totals.positives}/${totals.labelled} positive) in ${seconds.toFixed(1)} s`);
  return { timeline, users: options.users, products: shop.products.length, ...totals, dirty, seconds };
}

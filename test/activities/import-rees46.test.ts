import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../db/client.js';
import { fileLines, importEvents, lineEventId, REES46_HEADER, type DecodedLine, type ImportEventsResult } from '../../db/import/rees46.js';
import { findRepoRoot } from '../../infra/env.js';
import { freshDatabase } from '../support/services.js';

const fixture = path.join(findRepoRoot(), '..', 'shared', 'fixtures', 'rees46-2019-oct-first1000.csv');

let db: Db;
let result: ImportEventsResult;

beforeAll(async () => {
  ({ db } = await freshDatabase('import_rees46'));
  result = await importEvents(db.pool, { file: fixture, format: 'rees46' });
});

afterAll(async () => {
  await db?.close();
});

describe('importEvents on the first 1000 real REES46 events', () => {
  it('loads every line, with the event types, users and sessions of the export', async () => {
    expect(result).toMatchObject({
      rowsIn: 1000, rowsLoaded: 1000, quarantined: {}, quarantine: [], sessions: 372,
      byType: { view: 987, cart: 3, purchase: 10 },
    });
    const { rows: [shop] } = await db.pool.query(`SELECT
      (SELECT count(*)::int FROM shop.events) AS events,
      (SELECT count(DISTINCT session_id)::int FROM shop.events) AS sessions,
      (SELECT count(DISTINCT session_id)::int FROM shop.events WHERE event_type = 'purchase') AS purchase_sessions,
      (SELECT count(*)::int FROM shop.users) AS users,
      (SELECT count(*)::int FROM shop.products) AS products`);
    expect(shop).toEqual({ events: 1000, sessions: 372, purchase_sessions: 9, users: result.users, products: result.products });
    const { rows: [rec] } = await db.pool.query('SELECT * FROM ml.imports WHERE import_id = $1', [result.importId]);
    expect(rec).toMatchObject({ format: 'rees46', rows_in: 1000, rows_loaded: 1000, quarantined: {} });
    expect(rec.finished_at.getTime()).toBeGreaterThanOrEqual(rec.started_at.getTime());
  });

  it('keeps 19-digit category ids exact, empty codes and brands as NULL, and timestamps in UTC', async () => {
    // line 2: 2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-…
    const { rows: [p] } = await db.pool.query(
      'SELECT category_id::text, category, brand, price::text FROM shop.products WHERE product_id = 44600062');
    expect(p).toEqual({ category_id: '2103807459595387724', category: null, brand: 'shiseido', price: '35.79' });
    expect(Number(p.category_id).toString()).not.toBe('2103807459595387724'); // what a JS number would have made of it
    const { rows: [sofa] } = await db.pool.query('SELECT category, brand FROM shop.products WHERE product_id = 17200506');
    expect(sofa).toEqual({ category: 'furniture.living_room.sofa', brand: null });
    const { rows: [e] } = await db.pool.query(`SELECT event_id::text, occurred_at, session_id,
      to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS utc
      FROM shop.events WHERE user_id = 541312140 ORDER BY occurred_at LIMIT 1`);
    expect(e.utc).toBe('2019-10-01 00:00:00');
    expect(e.occurred_at.toISOString()).toBe('2019-10-01T00:00:00.000Z');
    expect(e.session_id).toBe('72d76fde-8bb3-4e00-8c23-a032dfed738c');
    const line = '2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-8bb3-4e00-8c23-a032dfed738c';
    expect(e.event_id).toBe(lineEventId(line));
    const { rows: [u] } = await db.pool.query('SELECT signup_at, gender FROM shop.users WHERE user_id = 541312140');
    expect(u).toEqual({ signup_at: new Date('2019-10-01T00:00:00Z'), gender: null });
  });

  it('gives a re-imported file the same event ids, so the pipeline dedup catches it', async () => {
    const again = await importEvents(db.pool, { file: fixture, format: 'rees46' });
    expect(again.importId).not.toBe(result.importId);
    expect(again.newUsers).toBe(0);
    const { rows: [r] } = await db.pool.query(`SELECT count(*)::int AS events,
      count(DISTINCT (user_id, event_id))::int AS distinct_ids FROM shop.events`);
    // 2000 rows of 1000 distinct events: the fixture's own lines are all distinct
    expect(r).toEqual({ events: 2000, distinct_ids: 1000 });
  });
});

describe('importEvents on a file with malformed lines', () => {
  it('quarantines each bad line with its line number and reason, and loads the good ones', async () => {
    const { db: own } = await freshDatabase('import_rees46_bad');
    try {
      const lines = [
        REES46_HEADER, //                                                                                   line 1
        '2019-11-02 10:00:00 UTC,view,1001,2053013552326770905,electronics.smartphone,apple,999.99,7001,s1', // 2 ok
        '2019-11-02 10:00:05 UTC,view,1001,2053013552326770905,electronics.smartphone,apple,999.99,7001', //    3 8 fields
        '2019-11-02T10:00:10Z,view,1001,2053013552326770905,,apple,999.99,7001,s1', //                          4 timestamp form
        '2019-02-30 10:00:10 UTC,view,1001,2053013552326770905,,apple,999.99,7001,s1', //                       5 no such day
        '2019-11-02 10:00:15 UTC,wishlist,1001,2053013552326770905,,apple,999.99,7001,s1', //                   6 event type
        '2019-11-02 10:00:20 UTC,cart,1001,2053013552326770905,,apple,abc,7001,s1', //                          7 price
        '2019-11-02 10:00:25 UTC,cart,1001,2053013552326770905,,apple,1.50,x7001,s1', //                        8 user id
        '2019-11-02 10:00:30 UTC,cart,99999999999999999999,2053013552326770905,,apple,1.50,7001,s1', //         9 > bigint
        '2019-11-02 10:00:35 UTC,cart,1001,12e3,,apple,1.50,7001,s1', //                                       10 category id
        '', //                                                                                                11 empty
        '2019-11-02 10:00:40 UTC,purchase,1002,2053013552326770905,"kids,toys",lego,"12.00",7002,s2', //       12 ok, quoted
        '2019-11-02 10:00:45 UTC,purchase,1002,2053013552326770905,"kids,toys,lego,12.00,7002,s2', //          13 open quote
        '2019-11-02 10:00:50 UTC,remove_from_cart,1001,,,,,7001,', //                                          14 ok, empty optionals
      ];
      const dir = mkdtempSync(path.join(tmpdir(), 'rees46-'));
      const file = path.join(dir, 'bad.csv');
      writeFileSync(file, lines.join('\r\n') + '\r\n');
      const r = await importEvents(own.pool, { file, format: 'rees46', quarantineListLimit: 3 });
      const expected = [
        [3, 'wrong_field_count'], [4, 'bad_timestamp'], [5, 'bad_timestamp'], [6, 'unknown_event_type'],
        [7, 'bad_price'], [8, 'bad_user_id'], [9, 'bad_product_id'], [10, 'bad_category_id'], [11, 'empty_line'],
        [13, 'bad_quoting'],
      ];
      expect(r).toMatchObject({ rowsIn: 13, rowsLoaded: 3, byType: { view: 1, purchase: 1, remove_from_cart: 1 } });
      expect(r.quarantined).toEqual({
        wrong_field_count: 1, bad_timestamp: 2, unknown_event_type: 1, bad_price: 1, bad_user_id: 1,
        bad_product_id: 1, bad_category_id: 1, empty_line: 1, bad_quoting: 1,
      });
      expect(r.quarantine).toEqual(expected.slice(0, 3).map(([line, reason]) => ({ line, reason, raw: lines[(line as number) - 1] })));
      const { rows: q } = await own.pool.query(
        'SELECT line, reason, raw FROM ml.import_quarantine WHERE import_id = $1 ORDER BY line', [r.importId]);
      expect(q).toEqual(expected.map(([line, reason]) => ({ line, reason, raw: lines[(line as number) - 1] })));
      const { rows: events } = await own.pool.query(`SELECT user_id::text, product_id::text, event_type, price::text,
        session_id, occurred_at FROM shop.events ORDER BY occurred_at`);
      expect(events).toEqual([
        { user_id: '7001', product_id: '1001', event_type: 'view', price: '999.99', session_id: 's1', occurred_at: new Date('2019-11-02T10:00:00Z') },
        { user_id: '7002', product_id: '1002', event_type: 'purchase', price: '12.00', session_id: 's2', occurred_at: new Date('2019-11-02T10:00:40Z') },
        { user_id: '7001', product_id: '1001', event_type: 'remove_from_cart', price: null, session_id: null, occurred_at: new Date('2019-11-02T10:00:50Z') },
      ]);
      const { rows: products } = await own.pool.query(
        'SELECT product_id::text, category, category_id::text, brand, price::text FROM shop.products ORDER BY product_id');
      expect(products).toEqual([
        // the latest line of product 1001 (line 14) has no category, brand or price: an empty value never erases a
        // known one, so each column keeps the latest value the file has for it (line 2)
        { product_id: '1001', category: 'electronics.smartphone', category_id: '2053013552326770905', brand: 'apple', price: '999.99' },
        { product_id: '1002', category: 'kids,toys', category_id: '2053013552326770905', brand: 'lego', price: '12.00' },
      ]);
    } finally {
      await own.close();
    }
  });

  it('quarantines lines with a NUL byte, invalid UTF-8 or other damaged text by line number, and keeps existing reference data', async () => {
    const { db: own } = await freshDatabase('import_rees46_damaged');
    try {
      // what the shop knew before this file: a product with its brand, category and price, and a user
      await own.pool.query(`INSERT INTO shop.products (product_id, category, category_id, brand, price)
        VALUES (2001, 'electronics.smartphone', 2053013552326770905, 'samsung', 100.00)`);
      await own.pool.query(`INSERT INTO shop.users (user_id, signup_at) VALUES (7001, '2019-01-01T00:00:00Z')`);
      const enc = (text: string) => Buffer.from(text, 'utf8');
      const line = (time: string, brand: Buffer | string, price = '120.00', product = 2001) =>
        Buffer.concat([enc(`2019-11-02 ${time} UTC,view,${product},2053013552326770905,electronics.smartphone,`), typeof brand === 'string' ? enc(brand) : brand, enc(`,${price},7001,s1`)]);
      const lines: Buffer[] = [
        enc(REES46_HEADER), //                                                           line 1
        line('10:00:00', 'samsung'), //                                                        2 ok: a new price
        line('10:00:01', Buffer.from([0x73, 0x61, 0x00, 0x6d])), //                            3 NUL byte
        line('10:00:02', Buffer.from([0x73, 0x61, 0xc3, 0x28, 0x6d])), //                      4 invalid UTF-8 (C3 28)
        line('10:00:03', 'sa\ufffdm'), //                                                      5 U+FFFD, valid UTF-8
        line('10:00:04', 'sa\u0001m'), //                                                      6 a control character
        line('10:00:05', '', ''), //                                                           7 ok: no brand, no price
        line('10:00:06', 'samsung', '-1.00'), //                                               8 ok: a negative price
        line('10:00:07', enc('café'), '5.00', 2002), //                                        9 ok: valid UTF-8, another product
      ];
      const file = path.join(mkdtempSync(path.join(tmpdir(), 'rees46-')), 'damaged.csv');
      // CRLF line ends, the last line without one
      writeFileSync(file, Buffer.concat(lines.flatMap((l, i) => (i < lines.length - 1 ? [l, enc('\r\n')] : [l]))));

      const r = await importEvents(own.pool, { file, format: 'rees46' });
      expect(r).toMatchObject({ rowsIn: 8, rowsLoaded: 4, newUsers: 0, byType: { view: 4 } });
      expect(r.quarantined).toEqual({ nul_byte: 1, invalid_utf8: 1, replacement_character: 1, control_character: 1 });
      const expected = [
        { line: 3, reason: 'nul_byte', raw: line('10:00:01', 'sa\ufffdm').toString() },
        { line: 4, reason: 'invalid_utf8', raw: line('10:00:02', 'sa\ufffd(m').toString() },
        { line: 5, reason: 'replacement_character', raw: line('10:00:03', 'sa\ufffdm').toString() },
        { line: 6, reason: 'control_character', raw: line('10:00:04', 'sa\u0001m').toString() },
      ];
      expect(r.quarantine).toEqual(expected);
      const { rows: q } = await own.pool.query('SELECT line, reason, raw FROM ml.import_quarantine WHERE import_id = $1 ORDER BY line', [r.importId]);
      expect(q).toEqual(expected);

      // the brand survives every damaged line and the empty one; the price is the latest sensible one (line 2)
      const { rows: products } = await own.pool.query('SELECT product_id::int, category, brand, price::text FROM shop.products ORDER BY product_id');
      expect(products).toEqual([
        { product_id: 2001, category: 'electronics.smartphone', brand: 'samsung', price: '120.00' },
        { product_id: 2002, category: 'electronics.smartphone', brand: 'café', price: '5.00' },
      ]);
      const { rows: [u] } = await own.pool.query('SELECT signup_at FROM shop.users WHERE user_id = 7001');
      expect(u.signup_at).toEqual(new Date('2019-01-01T00:00:00Z'));
      const { rows: events } = await own.pool.query("SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'HH24:MI:SS') AS t, price::text FROM shop.events ORDER BY occurred_at");
      expect(events).toEqual([{ t: '10:00:00', price: '120.00' }, { t: '10:00:05', price: null }, { t: '10:00:06', price: '-1.00' }, { t: '10:00:07', price: '5.00' }]);
    } finally {
      await own.close();
    }
  });

  it('reads lines across read chunks exactly: multi-byte characters and damaged lines at any offset', async () => {
    // ~5 MB, so the 1 MB read chunks end inside lines and inside multi-byte characters
    const texts = Array.from({ length: 60_000 }, (_, i) => `${i},ünïcødé €${'x'.repeat(i % 97)}`);
    const bytes = texts.map((t) => Buffer.from(t, 'utf8'));
    bytes[31_337] = Buffer.concat([bytes[31_337], Buffer.from([0x00])]);
    bytes[45_000] = Buffer.concat([bytes[45_000], Buffer.from([0xe2, 0x82])]); // a truncated €
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'rees46-')), 'big.csv');
    writeFileSync(file, Buffer.concat(bytes.flatMap((b) => [b, Buffer.from(b.length % 2 ? '\r\n' : '\n')])));
    const read: DecodedLine[] = [];
    for await (const lines of fileLines(file)) read.push(...lines);
    expect(read.length).toBe(texts.length);
    const damaged = read.flatMap((l, i) => ('reason' in l ? [[i, l.reason]] : []));
    expect(damaged).toEqual([[31_337, 'nul_byte'], [45_000, 'invalid_utf8']]);
    expect(read.every((l, i) => 'reason' in l || l.text === texts[i])).toBe(true);
  });

  it('rejects a file whose header is not REES46, loading nothing', async () => {
    const { db: own } = await freshDatabase('import_rees46_header');
    try {
      const file = path.join(mkdtempSync(path.join(tmpdir(), 'rees46-')), 'other.csv');
      writeFileSync(file, 'time,type,product\n2019-11-02 10:00:00 UTC,view,1\n');
      await expect(importEvents(own.pool, { file, format: 'rees46' })).rejects.toMatchObject({
        type: 'InvalidImportFile', message: expect.stringContaining('line 1 is not the REES46 header'),
      });
      // a file without its header starts with a data row: the message says where and what was expected, never a value
      const headless = path.join(path.dirname(file), 'headless.csv');
      const dataRow = '2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-8bb3-4e00-8c23-a032dfed738c';
      writeFileSync(headless, `${dataRow}\n`);
      const err = (await importEvents(own.pool, { file: headless, format: 'rees46' }).catch((e: Error) => e)) as Error & { type?: string };
      expect(err.type).toBe('InvalidImportFile');
      expect(err.message).toContain('line 1 is not the REES46 header');
      expect(err.message).toContain(`expected the 9 column names "${REES46_HEADER}"`);
      const told = err.message.replace(headless, '<file>');
      for (const field of dataRow.split(',').filter(Boolean)) expect(told).not.toContain(field);
      const { rows: [n] } = await own.pool.query('SELECT (SELECT count(*)::int FROM shop.events) AS e, (SELECT count(*)::int FROM ml.imports) AS i');
      expect(n).toEqual({ e: 0, i: 0 });
    } finally {
      await own.close();
    }
  });
});

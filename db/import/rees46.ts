/**
 * Loads a REES46 event export ("eCommerce behavior data from multi category store") into shop.*: streamed line by
 * line into a COPY, never row inserts; every line that cannot be loaded is kept in ml.import_quarantine with its
 * line number and reason. One transaction per file: it is loaded and recorded in ml.imports entirely, or not at all.
 *
 * Lines are read as bytes and decoded one by one, strictly: a NUL byte or invalid UTF-8 damages that line only (it is
 * quarantined), never the whole import, and never reaches the reference data as U+FFFD.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { isUtf8 } from 'node:buffer';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { VALID_EVENT_TYPES } from '../features.js';

export const REES46_HEADER = 'event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session';
const FIELDS = REES46_HEADER.split(',').length;

/** Why a line was not loaded (ml.import_quarantine.reason). */
export const IMPORT_QUARANTINE_REASONS = [
  'empty_line', 'bad_quoting', 'wrong_field_count', 'bad_timestamp', 'unknown_event_type', 'bad_product_id',
  'bad_category_id', 'bad_price', 'bad_user_id',
  // damaged text: the line is quarantined whole, so none of its values can reach shop.products or shop.users
  'nul_byte', 'invalid_utf8', 'control_character', 'replacement_character',
] as const;
export type ImportQuarantineReason = (typeof IMPORT_QUARANTINE_REASONS)[number];

export type ImportFormat = 'rees46';

export interface ImportEventsOptions {
  /** Path of the CSV file. */
  file: string;
  format: ImportFormat;
  log?: (message: string) => void;
  /** Defaults to a random UUID. */
  importId?: string;
  /** How many quarantined lines the result lists (all of them are in ml.import_quarantine). Default 100. */
  quarantineListLimit?: number;
}

export interface QuarantinedLine {
  /** 1-based line number in the file; the header is line 1. */
  line: number;
  reason: string;
  /** The line as text; in a nul_byte or invalid_utf8 line every NUL and undecodable byte sequence shows as U+FFFD. */
  raw: string;
}

export interface ImportEventsResult {
  importId: string;
  file: string;
  /** Data lines read (the header excluded). */
  rowsIn: number;
  /** Rows added to shop.events. */
  rowsLoaded: number;
  /** Lines not loaded, per reason; rowsIn = rowsLoaded + their sum. */
  quarantined: Record<string, number>;
  /** The first quarantineListLimit quarantined lines, for display. */
  quarantine: QuarantinedLine[];
  /** Distinct users, products and non-empty sessions among the loaded rows. */
  users: number;
  products: number;
  sessions: number;
  /** Users created by this import (the others already existed and kept their signup_at). */
  newUsers: number;
  /** Loaded rows per event type. */
  byType: Record<string, number>;
  seconds: number;
}

/** Bad input (wrong header, unknown format): retrying cannot help. */
export class ImportError extends Error {
  readonly type = 'InvalidImportFile';
}

const MAX_BIGINT = 9_223_372_036_854_775_807n;
const HASH_MASK = (1n << 63n) - 1n;
const TYPES = new Set<string>(VALID_EVENT_TYPES);
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d{1,6})? UTC$/;
// numeric(12, 2): at most 10 integer digits once rounded to cents.
const PRICE = /^-?(\d{1,9}(\.\d+)?|\d{10}(\.\d{1,2})?)$/;

// Text no export writes on purpose: C0 controls other than tab (a lone CR included: CRLF is stripped before), DEL, and
// U+FFFD, which a decoder upstream left where it could not read bytes.
const SUSPICIOUS = /[\u0001-\u0008\u000b-\u001f\u007f\ufffd]/;
/** A line's text, or why it cannot be read as text and what to show of it. */
export type DecodedLine = { text: string } | { reason: ImportQuarantineReason; raw: string };

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const LENIENT_UTF8 = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * One line's bytes (without its line break) as text, or why it is damaged: `nul_byte` (Postgres text cannot hold
 * it), `invalid_utf8` (checked with a fatal decoder, never replaced silently), `control_character` or
 * `replacement_character` (damaged before it reached this file). `raw` is always storable text.
 */
export function decodeLine(bytes: Uint8Array): DecodedLine {
  if (bytes.indexOf(0) !== -1) return { reason: 'nul_byte', raw: LENIENT_UTF8.decode(bytes).replaceAll('\0', '\ufffd') };
  let text: string;
  try {
    text = STRICT_UTF8.decode(bytes);
  } catch {
    return { reason: 'invalid_utf8', raw: LENIENT_UTF8.decode(bytes) };
  }
  return checkText(text);
}

function checkText(text: string): DecodedLine {
  const bad = SUSPICIOUS.exec(text);
  if (bad) return { reason: bad[0] === '\ufffd' ? 'replacement_character' : 'control_character', raw: text };
  return { text };
}

/**
 * The lines of a file as bytes, split at LF with a CR before it dropped; the last line may lack its LF. Blocks of
 * whole lines that are valid UTF-8 without NUL (nearly all of them) are decoded at once; only a damaged block is
 * decoded line by line, so exactly the damaged lines are quarantined.
 */
export async function* fileLines(file: string): AsyncGenerator<DecodedLine[]> {
  let rest: Buffer | null = null;
  const stripCr = (b: Buffer) => (b.length && b[b.length - 1] === 13 ? b.subarray(0, b.length - 1) : b);
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    const buf: Buffer = rest ? Buffer.concat([rest, chunk]) : chunk;
    const lastLf = buf.lastIndexOf(10);
    if (lastLf === -1) {
      rest = buf;
      continue;
    }
    const block = buf.subarray(0, lastLf);
    rest = lastLf + 1 < buf.length ? buf.subarray(lastLf + 1) : null;
    if (block.indexOf(0) === -1 && isUtf8(block)) {
      yield block.toString('utf8').split('\n').map((l) => checkText(l.endsWith('\r') ? l.slice(0, -1) : l));
    } else {
      const out: DecodedLine[] = [];
      let start = 0;
      for (;;) {
        const lf = block.indexOf(10, start);
        out.push(decodeLine(stripCr(block.subarray(start, lf === -1 ? block.length : lf))));
        if (lf === -1) break;
        start = lf + 1;
      }
      yield out;
    }
  }
  if (rest && rest.length) yield [decodeLine(stripCr(rest))];
}

/** The event id of a raw line: its first 63 bits of SHA-256, so the same line always gets the same id. */
export function lineEventId(raw: string): string {
  const digest = createHash('sha256').update(raw, 'utf8').digest();
  return (digest.readBigUInt64BE(0) & HASH_MASK).toString();
}

/** Splits one CSV line (RFC 4180 quoting, no embedded line breaks); null when a quote is unbalanced. */
export function splitCsvLine(line: string): string[] | null {
  if (!line.includes('"')) return line.split(',');
  const out: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  let wasQuoted = false;
  while (i <= line.length) {
    const c = line[i];
    if (quoted) {
      if (c === undefined) return null;
      if (c === '"') {
        if (line[i + 1] === '"') (field += '"'), (i += 2);
        else (quoted = false), i++;
      } else (field += c), i++;
    } else if (c === undefined || c === ',') {
      out.push(field);
      field = '';
      wasQuoted = false;
      i++;
    } else if (c === '"') {
      if (field !== '' || wasQuoted) return null; // a quote in the middle of an unquoted field
      quoted = wasQuoted = true;
      i++;
    } else {
      if (wasQuoted) return null; // text after a closing quote
      field += c;
      i++;
    }
  }
  return out;
}

/** `2019-10-01 00:00:00 UTC` → ISO 8601 in UTC, or null when it is not a real instant in that form. */
export function parseRees46Time(s: string): string | null {
  const m = TIMESTAMP.exec(s);
  if (!m) return null;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number);
  const ms = Date.UTC(y, mo - 1, d, h, mi, se);
  const t = new Date(ms);
  if (t.getUTCFullYear() !== y || t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d || h > 23 || mi > 59 || se > 59) {
    return null;
  }
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[7] ?? ''}Z`;
}

const bigintId = (s: string) => /^\d{1,19}$/.test(s) && BigInt(s) <= MAX_BIGINT;

interface ParsedRow {
  eventId: string;
  occurredAt: string;
  eventType: string;
  productId: string;
  categoryId: string | null;
  categoryCode: string | null;
  brand: string | null;
  price: string | null;
  userId: string;
  session: string | null;
}

/** One data line → a row, or the reason it cannot be loaded. Ids stay strings: 19 digits overflow a JS number. */
export function parseRees46Line(raw: string): ParsedRow | { reason: ImportQuarantineReason } {
  if (raw.trim() === '') return { reason: 'empty_line' };
  const f = splitCsvLine(raw);
  if (f === null) return { reason: 'bad_quoting' };
  if (f.length !== FIELDS) return { reason: 'wrong_field_count' };
  const [time, eventType, productId, categoryId, categoryCode, brand, price, userId, session] = f;
  const occurredAt = parseRees46Time(time);
  if (occurredAt === null) return { reason: 'bad_timestamp' };
  if (!TYPES.has(eventType)) return { reason: 'unknown_event_type' };
  if (!bigintId(productId)) return { reason: 'bad_product_id' };
  if (categoryId !== '' && !/^\d{1,20}$/.test(categoryId)) return { reason: 'bad_category_id' };
  if (price !== '' && !PRICE.test(price)) return { reason: 'bad_price' };
  if (!bigintId(userId)) return { reason: 'bad_user_id' };
  const orNull = (s: string) => (s === '' ? null : s);
  return {
    eventId: lineEventId(raw),
    occurredAt,
    eventType,
    productId,
    categoryId: orNull(categoryId),
    categoryCode: orNull(categoryCode),
    brand: orNull(brand),
    price: orNull(price),
    userId,
    session: orNull(session),
  };
}

// COPY text format: \N is NULL; backslash, tab and line breaks are escaped.
const copyText = (v: string | number | null) =>
  v === null ? '\\N' : String(v).replace(/[\\\t\n\r]/g, (c) => (c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\\\'));
const copyRow = (values: (string | number | null)[]) => values.map(copyText).join('\t') + '\n';

const STAGE_COLUMNS = 'line, reason, raw, event_id, user_id, session_id, product_id, event_type, price, occurred_at, category_id, category_code, brand';

/**
 * Imports one event file into shop.events (event ids: lineEventId, so a re-import is caught by the pipeline's dedup),
 * shop.users (new users only, signup_at = their first event in the file; existing users are never changed) and
 * shop.products (each of category, category id, brand and price takes its latest non-empty value in the file and
 * keeps the existing one when the file has none), and records it in ml.imports / ml.import_quarantine.
 */
export async function importEvents(pool: pg.Pool, options: ImportEventsOptions): Promise<ImportEventsResult> {
  const t0 = performance.now();
  const startedAt = new Date();
  const { file, format, log = () => {}, importId = randomUUID(), quarantineListLimit = 100 } = options;
  if (format !== 'rees46') throw new ImportError(`unknown import format '${String(format)}': the only format is rees46`);
  const quarantined: Record<string, number> = {};
  const quarantine: QuarantinedLine[] = [];
  const byType: Record<string, number> = {};
  let rowsIn = 0;
  let rowsLoaded = 0;

  async function* stageRows(): AsyncGenerator<string> {
    let lineNo = 0;
    let chunk = '';
    const quarantineLine = (reason: ImportQuarantineReason, raw: string) => {
      quarantined[reason] = (quarantined[reason] ?? 0) + 1;
      if (quarantine.length < quarantineListLimit) quarantine.push({ line: lineNo, reason, raw });
      chunk += copyRow([lineNo, reason, raw, null, null, null, null, null, null, null, null, null, null]);
    };
    for await (const lines of fileLines(file)) {
      for (const decoded of lines) {
        lineNo++;
        if (lineNo === 1) {
          const header = ('text' in decoded ? decoded.text : decoded.raw).replace(/^\uFEFF/, '').trim();
          if (header !== REES46_HEADER) {
            // Never the line itself: a file without its header starts with a data row (user ids, sessions).
            const fields = splitCsvLine(header);
            const found = fields ? `a line of ${fields.length} CSV field${fields.length === 1 ? '' : 's'}` : 'a line that is not valid CSV';
            throw new ImportError(
              `${file}: line 1 is not the REES46 header: expected the ${FIELDS} column names "${REES46_HEADER}", ` +
                `found ${found} (its content is not shown: it may be a data row); export the file with its header line`,
            );
          }
          continue;
        }
        rowsIn++;
        if (!('text' in decoded)) {
          quarantineLine(decoded.reason, decoded.raw);
        } else {
          const text = decoded.text;
          const row = parseRees46Line(text);
          if ('reason' in row) {
            quarantineLine(row.reason, text);
          } else {
            rowsLoaded++;
            byType[row.eventType] = (byType[row.eventType] ?? 0) + 1;
            chunk += copyRow([lineNo, null, null, row.eventId, row.userId, row.session, row.productId, row.eventType,
              row.price, row.occurredAt, row.categoryId, row.categoryCode, row.brand]);
          }
        }
        if (chunk.length > 1 << 16) {
          yield chunk;
          chunk = '';
        }
        if (rowsIn % 1_000_000 === 0) log(`import ${path.basename(file)}: ${rowsIn} lines`);
      }
    }
    if (lineNo === 0) throw new ImportError(`${file} is empty: expected the REES46 header "${REES46_HEADER}"`);
    if (chunk) yield chunk;
  }

  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`CREATE TEMP TABLE import_stage (
      line integer NOT NULL, reason text, raw text, event_id bigint, user_id bigint, session_id text, product_id bigint,
      event_type text, price numeric(12, 2), occurred_at timestamptz, category_id numeric(20, 0), category_code text,
      brand text) ON COMMIT DROP`);
    await pipeline(Readable.from(stageRows()), client.query(copyFrom(`COPY import_stage (${STAGE_COLUMNS}) FROM STDIN`)));
    const { rows: [counts] } = await client.query(`SELECT count(DISTINCT user_id)::int AS users,
      count(DISTINCT product_id)::int AS products, count(DISTINCT session_id)::int AS sessions
      FROM import_stage WHERE reason IS NULL`);
    const users = await client.query(`INSERT INTO shop.users (user_id, signup_at)
      SELECT user_id, min(occurred_at) FROM import_stage WHERE reason IS NULL GROUP BY user_id
      ON CONFLICT (user_id) DO NOTHING`);
    // Reference data only ever improves: each column takes the latest non-empty value among the file's loaded lines
    // (a negative price is not a product's price), and an existing value is kept when the file has none. Quarantined
    // lines contribute nothing, so a damaged line can never overwrite a brand, a category or a price.
    const latest = (col: string, where = `${col} IS NOT NULL`) =>
      `(array_agg(${col} ORDER BY occurred_at DESC, line DESC) FILTER (WHERE ${where}))[1]`;
    await client.query(`INSERT INTO shop.products (product_id, category, category_id, brand, price)
      SELECT product_id, ${latest('category_code')}, ${latest('category_id')}, ${latest('brand')}, ${latest('price', 'price >= 0')}
      FROM import_stage WHERE reason IS NULL
      GROUP BY product_id
      ON CONFLICT (product_id) DO UPDATE SET
        category = coalesce(excluded.category, products.category),
        category_id = coalesce(excluded.category_id, products.category_id),
        brand = coalesce(excluded.brand, products.brand),
        price = coalesce(excluded.price, products.price)`);
    await client.query(`INSERT INTO shop.events (event_id, user_id, session_id, product_id, event_type, price, occurred_at)
      SELECT event_id, user_id, session_id, product_id, event_type, price, occurred_at
      FROM import_stage WHERE reason IS NULL ORDER BY line`);
    await client.query(
      `INSERT INTO ml.imports (import_id, file, format, rows_in, rows_loaded, quarantined, started_at, finished_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, clock_timestamp())`,
      [importId, path.resolve(file), format, rowsIn, rowsLoaded, JSON.stringify(quarantined), startedAt],
    );
    await client.query(`INSERT INTO ml.import_quarantine (import_id, line, reason, raw)
      SELECT $1, line, reason, raw FROM import_stage WHERE reason IS NOT NULL`, [importId]);
    await client.query('COMMIT');
    await client.query('ANALYZE shop.users, shop.products, shop.events');
    const seconds = (performance.now() - t0) / 1000;
    const bad = rowsIn - rowsLoaded;
    log(`import ${path.basename(file)}: ${rowsLoaded}/${rowsIn} rows loaded, ${bad} quarantined, ${users.rowCount ?? 0} new users in ${seconds.toFixed(1)} s`);
    return {
      importId, file: path.resolve(file), rowsIn, rowsLoaded, quarantined, quarantine,
      users: counts.users, products: counts.products, sessions: counts.sessions, newUsers: users.rowCount ?? 0,
      byType, seconds,
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { grantSourceRead } from '../source.js';
import { SOURCE_ROLE } from '../../infra/connections.js';
import { createRng } from '../../ml/random.js';

/**
 * A feature table in the shape of the public UCI "Bank Marketing" data set (one row per client, a yes/no label,
 * numeric, string-coded and boolean columns, an integer code that is really a category). The values are drawn
 * from a seeded generator — the real file cannot be downloaded here — with a known non-linear relation to the
 * label, so table mode can be tested end to end on a realistic schema.
 */
export const BANK_TABLE = 'public_data.bank_marketing';
export const BANK_SCHEMA = 'public_data';

const JOBS = ['admin.', 'blue-collar', 'entrepreneur', 'housemaid', 'management', 'retired', 'self-employed', 'services', 'student', 'technician', 'unemployed', 'unknown'];
const MARITAL = ['married', 'single', 'divorced'];
const EDUCATION = ['primary', 'secondary', 'tertiary', 'unknown'];
const CONTACT = ['cellular', 'telephone', 'unknown'];
const OUTCOME = ['failure', 'other', 'success', 'unknown'];

export async function seedBankMarketing(pool: pg.Pool, { rows, seed }: { rows: number; seed: number }): Promise<{ rows: number; positives: number }> {
  const rng = createRng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(rng.next() * xs.length)];
  await pool.query(`create schema if not exists ${BANK_SCHEMA}`);
  await pool.query(`drop table if exists ${BANK_TABLE}`);
  await pool.query(`create table ${BANK_TABLE} (
    client_id bigint primary key, age int, job text, marital text, education text, has_default boolean,
    balance numeric(12,2), housing boolean, loan boolean, contact text, month_code int, duration_s int,
    campaign int, pdays int, previous int, poutcome text, y text not null)`);
  let positives = 0;
  const lines: string[] = [];
  for (let i = 1; i <= rows; i++) {
    const age = 18 + Math.floor(rng.next() * 70);
    const job = age > 62 && rng.next() < 0.7 ? 'retired' : age < 25 && rng.next() < 0.4 ? 'student' : pick(JOBS);
    const duration = Math.round(-Math.log(1 - rng.next()) * 250);
    const outcome = rng.next() < 0.8 ? 'unknown' : pick(OUTCOME);
    const month = 1 + Math.floor(rng.next() * 12);
    const balance = Math.round((Math.exp(rng.next() * 8) - 300) * 100) / 100;
    const housing = rng.next() < 0.55;
    const contact = pick(CONTACT);
    const campaign = 1 + Math.floor(-Math.log(1 - rng.next()) * 2);
    // Known truth: saturating call duration, past success, age U-shape, month seasonality, cellular contact.
    const logit =
      -3.2 + 2.4 * (1 - Math.exp(-duration / 300)) + (outcome === 'success' ? 2.0 : 0) + 0.0012 * (age - 45) ** 2 +
      ([3, 9, 10, 12].includes(month) ? 1.0 : 0) + (contact === 'cellular' ? 0.4 : 0) - (housing ? 0.5 : 0) - 0.15 * campaign;
    const y = rng.next() < 1 / (1 + Math.exp(-logit));
    if (y) positives++;
    const field = (v: unknown) => (v === null || v === undefined ? '\\N' : String(v));
    lines.push(
      [i, age, job, pick(MARITAL), pick(EDUCATION), rng.next() < 0.02, balance, housing, rng.next() < 0.15, contact, month,
        duration, campaign, outcome === 'unknown' ? -1 : Math.floor(rng.next() * 400), outcome === 'unknown' ? 0 : 1 + Math.floor(rng.next() * 5),
        outcome, y ? 'yes' : 'no'].map(field).join('\t'),
    );
  }
  const client = await pool.connect();
  try {
    await pipeline(Readable.from(lines.map((l) => l + '\n')), client.query(copyFrom(`COPY ${BANK_TABLE} FROM STDIN`)));
  } finally {
    client.release();
  }
  await pool.query(`analyze ${BANK_TABLE}`);
  await grantBankRead(pool);
  return { rows, positives };
}

/**
 * Lets the source role (table-mode queries run as it) read public_data, as a DBA would for any schema table mode
 * reads. Idempotent; does nothing where the role does not exist (a database migrated without CREATEROLE), and
 * returns whether it granted.
 */
export async function grantBankRead(pool: pg.Pool): Promise<boolean> {
  const { rowCount } = await pool.query('select 1 from pg_roles where rolname = $1', [SOURCE_ROLE]);
  if (!rowCount) return false;
  await grantSourceRead(pool, BANK_SCHEMA);
  return true;
}

import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

// bigint (int8) and numeric come back as strings by default; ids must stay exact, so we keep strings for
// int8 and convert only where a number is safe (counts are cast in SQL).
export interface Db {
  pool: pg.Pool;
  db: Kysely<Database>;
  close(): Promise<void>;
}

export function createDb(databaseUrl: string, max = 5): Db {
  const pool = new pg.Pool({ connectionString: databaseUrl, max, application_name: 'propensity' });
  // An idle client's socket error (e.g. Postgres restarting) must not crash the process; the next query retries.
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { pool, db, close: () => db.destroy() };
}

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
  // A socket error (e.g. Postgres restarting) must never crash the process. The pool handles idle clients; a
  // checked-out client emits 'error' on itself, and with no listener Node throws it as an uncaught exception. The
  // query or COPY stream in flight rejects with the same error, so the step that owns the client sees it (and the
  // activity interceptor retries it as a transient fault).
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { pool, db, close: () => db.destroy() };
}

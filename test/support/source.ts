import pg from 'pg';
import { createSourceDb, type SourceDb } from '../../db/source.js';
import { devSourceUrl } from '../../infra/connections.js';

/**
 * The least-privilege source pool for a test database (freshDatabase creates it as the superuser; the migration
 * grants the dev stack's propensity_source role SELECT on its schema shop).
 */
export function sourceDatabase(url: string, opts: { statementTimeoutMs?: number } = {}): SourceDb {
  return createSourceDb(devSourceUrl(url), { max: 4, ...opts });
}

/** A plain connection as the source role, outside any guard: what the role alone allows. */
export async function sourceClient(url: string, applicationName = 'propensity-test-source'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: devSourceUrl(url), application_name: applicationName });
  client.on('error', () => {});
  await client.connect();
  return client;
}

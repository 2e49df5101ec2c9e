import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { inject } from 'vitest';
import { createDb, type Db } from '../../db/client.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createS3Client, ensureBucket } from '../../infra/index.js';
import { createArtifactStore, type ArtifactStore } from '../../store/artifacts.js';

export const connections = () => inject('connections');

/**
 * A database of its own for one test file (dropped and re-created, then migrated), on the real dev-stack
 * Postgres: suites that seed shop.* never see each other's rows.
 */
export async function freshDatabase(name: string): Promise<{ url: string; db: Db }> {
  const base = new URL(connections().databaseUrl);
  const dbName = `test_${name.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}`;
  const admin = new pg.Client({ connectionString: base.toString() });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${dbName} with (force)`);
    await admin.query(`create database ${dbName}`);
  } finally {
    await admin.end();
  }
  const url = new URL(base);
  url.pathname = `/${dbName}`;
  const db = createDb(url.toString());
  await migrateToLatest(db.db as unknown as Kysely<any>);
  return { url: url.toString(), db };
}

/** The real s3rver bucket of the dev stack (keys are per run id, so suites do not collide). */
export async function testStore(): Promise<{ store: ArtifactStore; close: () => void }> {
  const s3 = connections().s3;
  const client = createS3Client(s3);
  await ensureBucket(client, s3.bucket);
  return { store: createArtifactStore({ client, bucket: s3.bucket }), close: () => client.destroy() };
}

export { Kysely, PostgresDialect };

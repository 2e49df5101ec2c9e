import { Migrator, type Kysely, type MigrationResult } from 'kysely';
import { migrations } from '../migrations/index.js';

export class MigrationError extends Error {
  readonly type = 'MigrationFailed';
}

/** Applies every pending migration; throws naming the migration that failed. */
export async function migrateToLatest(db: Kysely<any>): Promise<MigrationResult[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableSchema: 'public',
  });
  const { error, results = [] } = await migrator.migrateToLatest();
  const failed = results.find((r) => r.status === 'Error');
  if (error || failed) {
    const cause = error instanceof Error ? error.message : String(error ?? 'unknown error');
    throw new MigrationError(`migration ${failed?.migrationName ?? '(none)'} failed: ${cause}`, { cause: error });
  }
  return results;
}

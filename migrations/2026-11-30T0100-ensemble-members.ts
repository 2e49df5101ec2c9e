import type { Kysely } from 'kysely';

// Ensembles (issue 14): a registered version that averages several of its run's trials lists them, so lineage
// answers "which networks is this model" from Postgres alone. NULL: a single network (or a version from before).
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.withSchema('ml').alterTable('model_versions').addColumn('members', 'jsonb').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.withSchema('ml').alterTable('model_versions').dropColumn('members').execute();
}

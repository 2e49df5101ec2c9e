import type { Kysely } from 'kysely';

// Worker pools (issue 15): which training pool (task queue propensity-train[-<pool>]) and which host trained each
// trial attempt, so `run show` and analysts can see where a run's training went. Rows from before say nothing.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.withSchema('ml').alterTable('trials').addColumn('pool', 'text').addColumn('host', 'text').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.withSchema('ml').alterTable('trials').dropColumn('host').dropColumn('pool').execute();
}

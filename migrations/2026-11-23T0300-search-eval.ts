import { sql, type Kysely } from 'kysely';

// Successive halving (trials resumed at larger epoch budgets), model comparisons in the gate, feature importance.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .withSchema('ml')
    .alterTable('trials')
    .addColumn('rung', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('budget_epochs', 'integer')
    .addColumn('stop_reason', 'text')
    .execute();
  await db.schema
    .withSchema('ml')
    .alterTable('evaluations')
    .addColumn('comparisons', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
  await db.schema
    .withSchema('ml')
    .createTable('feature_importance')
    .addColumn('run_id', 'text', (c) => c.notNull().references('ml.pipeline_runs.run_id').onDelete('cascade'))
    .addColumn('feature', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('method', 'text', (c) => c.notNull().defaultTo('permutation_auc_drop'))
    .addColumn('importance', 'double precision', (c) => c.notNull())
    .addColumn('rank', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('feature_importance_pk', ['run_id', 'feature'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.withSchema('ml').dropTable('feature_importance').execute();
  await db.schema.withSchema('ml').alterTable('evaluations').dropColumn('comparisons').execute();
  await db.schema.withSchema('ml').alterTable('trials').dropColumn('rung').dropColumn('budget_epochs').dropColumn('stop_reason').execute();
}

import { sql, type Kysely } from 'kysely';

// Registry operations and human approval: a version's status and who decided it, runs that wait for a reviewer,
// one row per approval request, and which alias moves were rollbacks (so a second rollback goes further back).
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  const s = db.schema.withSchema('ml');

  await s
    .alterTable('model_versions')
    .addColumn('status', 'text', (c) =>
      c.notNull().defaultTo('approved').check(sql`status in ('approved', 'pending_approval', 'rejected')`),
    )
    .addColumn('decided_by', 'text')
    .addColumn('decided_at', 'timestamptz')
    .addColumn('decision_reason', 'text')
    .execute();

  await sql`alter table ml.pipeline_runs drop constraint if exists pipeline_runs_status_check`.execute(db);
  await sql`alter table ml.pipeline_runs add constraint pipeline_runs_status_check
    check (status in ('running', 'awaiting_approval', 'registered', 'rejected', 'failed', 'cancelled'))`.execute(db);

  await s
    .alterTable('model_alias_history')
    .addColumn('action', 'text', (c) => c.notNull().defaultTo('move').check(sql`action in ('move', 'rollback')`))
    .execute();
  await s.createIndex('model_alias_history_alias').on('model_alias_history').columns(['model_name', 'alias', 'id']).execute();

  await s
    .createTable('approvals')
    .addColumn('run_id', 'text', (c) => c.primaryKey().references('ml.pipeline_runs.run_id').onDelete('cascade'))
    .addColumn('workflow_id', 'text', (c) => c.notNull())
    .addColumn('model_name', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('requested_at', 'timestamptz', (c) => c.notNull())
    .addColumn('timeout_at', 'timestamptz', (c) => c.notNull())
    .addColumn('decision', 'text', (c) => c.check(sql`decision in ('approved', 'rejected', 'timeout')`))
    .addColumn('decided_by', 'text')
    .addColumn('decided_at', 'timestamptz')
    .addColumn('reason', 'text')
    .addForeignKeyConstraint('approvals_version_fk', ['model_name', 'version'], 'ml.model_versions', ['model_name', 'version'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  const s = db.schema.withSchema('ml');
  await s.dropTable('approvals').execute();
  await s.dropIndex('model_alias_history_alias').execute();
  await s.alterTable('model_alias_history').dropColumn('action').execute();
  await sql`alter table ml.pipeline_runs drop constraint if exists pipeline_runs_status_check`.execute(db);
  await sql`alter table ml.pipeline_runs add constraint pipeline_runs_status_check
    check (status in ('running', 'registered', 'rejected', 'failed', 'cancelled'))`.execute(db);
  await s
    .alterTable('model_versions')
    .dropColumn('status')
    .dropColumn('decided_by')
    .dropColumn('decided_at')
    .dropColumn('decision_reason')
    .execute();
}

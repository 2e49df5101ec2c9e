import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create schema if not exists ml`.execute(db);
  const s = db.schema.withSchema('ml');

  await s
    .createTable('pipeline_runs')
    .addColumn('run_id', 'text', (c) => c.primaryKey())
    .addColumn('workflow_id', 'text', (c) => c.notNull())
    .addColumn('model_name', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('running', 'registered', 'rejected', 'failed', 'cancelled')`),
    )
    .addColumn('trigger', 'text', (c) => c.notNull().defaultTo('manual'))
    .addColumn('cutoff', 'timestamptz')
    .addColumn('horizon_days', 'integer')
    .addColumn('config', 'jsonb', (c) => c.notNull())
    .addColumn('config_hash', 'text', (c) => c.notNull())
    .addColumn('code_version', 'text', (c) => c.notNull())
    .addColumn('started_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('finished_at', 'timestamptz')
    .addColumn('model_version', 'integer')
    .addColumn('metrics', 'jsonb')
    .addColumn('error_type', 'text')
    .addColumn('error_message', 'text')
    .execute();
  await s.createIndex('pipeline_runs_model_started').on('pipeline_runs').columns(['model_name', 'started_at']).execute();

  await s
    .createTable('run_steps')
    .addColumn('run_id', 'text', (c) => c.notNull().references('ml.pipeline_runs.run_id').onDelete('cascade'))
    .addColumn('step', 'text', (c) => c.notNull())
    .addColumn('trial_id', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('running', 'succeeded', 'failed')`))
    .addColumn('attempt', 'integer', (c) => c.notNull())
    .addColumn('worker', 'text')
    .addColumn('started_at', 'timestamptz', (c) => c.notNull())
    .addColumn('finished_at', 'timestamptz')
    .addColumn('duration_ms', 'integer')
    .addColumn('detail', 'jsonb')
    .addColumn('error_type', 'text')
    .addColumn('error_message', 'text')
    .addPrimaryKeyConstraint('run_steps_pk', ['run_id', 'step', 'trial_id'])
    .execute();

  await s
    .createTable('data_quality')
    .addColumn('run_id', 'text', (c) => c.notNull().references('ml.pipeline_runs.run_id').onDelete('cascade'))
    .addColumn('stage', 'text', (c) => c.notNull())
    .addColumn('rows_in', 'bigint', (c) => c.notNull())
    .addColumn('rows_out', 'bigint', (c) => c.notNull())
    .addColumn('quarantined', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('features', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('quarantine_uri', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('data_quality_pk', ['run_id', 'stage'])
    .execute();

  await s
    .createTable('trials')
    .addColumn('run_id', 'text', (c) => c.notNull().references('ml.pipeline_runs.run_id').onDelete('cascade'))
    .addColumn('trial_id', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('running', 'completed', 'failed')`))
    .addColumn('params', 'jsonb', (c) => c.notNull())
    .addColumn('seed', 'bigint', (c) => c.notNull())
    .addColumn('attempt', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('resumed_from_epoch', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('epochs_run', 'integer')
    .addColumn('best_epoch', 'integer')
    .addColumn('val_auc', 'double precision')
    .addColumn('val_pr_auc', 'double precision')
    .addColumn('val_log_loss', 'double precision')
    .addColumn('curve', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('backend', 'text')
    .addColumn('model_uri', 'text')
    .addColumn('started_at', 'timestamptz', (c) => c.notNull())
    .addColumn('finished_at', 'timestamptz')
    .addColumn('duration_ms', 'integer')
    .addColumn('error', 'text')
    .addPrimaryKeyConstraint('trials_pk', ['run_id', 'trial_id'])
    .execute();

  await s
    .createTable('evaluations')
    .addColumn('run_id', 'text', (c) => c.primaryKey().references('ml.pipeline_runs.run_id').onDelete('cascade'))
    .addColumn('model_name', 'text', (c) => c.notNull())
    .addColumn('split', 'text', (c) => c.notNull().defaultTo('test'))
    .addColumn('rows', 'integer', (c) => c.notNull())
    .addColumn('metrics', 'jsonb', (c) => c.notNull())
    .addColumn('blessed', 'boolean', (c) => c.notNull())
    .addColumn('checks', 'jsonb', (c) => c.notNull())
    .addColumn('reasons', 'jsonb', (c) => c.notNull())
    .addColumn('report_uri', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  // Postgres, not S3, decides version numbers: s3rver (and plain S3 without conditional writes) cannot.
  await s
    .createTable('model_versions')
    .addColumn('model_name', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull().check(sql`version > 0`))
    .addColumn('run_id', 'text', (c) => c.notNull().references('ml.pipeline_runs.run_id'))
    .addColumn('workflow_id', 'text', (c) => c.notNull())
    .addColumn('uri', 'text', (c) => c.notNull())
    .addColumn('config_hash', 'text', (c) => c.notNull())
    .addColumn('code_version', 'text', (c) => c.notNull())
    .addColumn('data_sha256', 'text', (c) => c.notNull())
    .addColumn('params', 'jsonb', (c) => c.notNull())
    .addColumn('seed', 'bigint', (c) => c.notNull())
    .addColumn('backend', 'text', (c) => c.notNull())
    .addColumn('metrics', 'jsonb', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('model_versions_pk', ['model_name', 'version'])
    .addUniqueConstraint('model_versions_one_per_run', ['model_name', 'run_id'])
    .execute();

  await s
    .createTable('model_aliases')
    .addColumn('model_name', 'text', (c) => c.notNull())
    .addColumn('alias', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_by', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('model_aliases_pk', ['model_name', 'alias'])
    .addForeignKeyConstraint('model_aliases_version_fk', ['model_name', 'version'], 'ml.model_versions', [
      'model_name',
      'version',
    ])
    .execute();

  await s
    .createTable('model_alias_history')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('model_name', 'text', (c) => c.notNull())
    .addColumn('alias', 'text', (c) => c.notNull())
    .addColumn('from_version', 'integer')
    .addColumn('to_version', 'integer', (c) => c.notNull())
    .addColumn('changed_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('changed_by', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop schema if exists ml cascade`.execute(db);
}

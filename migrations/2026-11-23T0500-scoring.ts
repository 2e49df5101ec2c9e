import { sql, type Kysely } from 'kysely';

// Batch scoring: one ml.score_runs row per scoring run (its id is the workflow id, so rerunning the same id
// replaces its rows), one ml.scores row per scored user, and a view of each user's latest completed score.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  const s = db.schema.withSchema('ml');

  await s
    .createTable('score_runs')
    .addColumn('score_run_id', 'text', (c) => c.primaryKey())
    // the Temporal run that owns the rows now: a stale attempt of an earlier run of the same id cannot write
    .addColumn('temporal_run_id', 'text', (c) => c.notNull())
    .addColumn('model_name', 'text', (c) => c.notNull())
    .addColumn('model_version', 'integer', (c) => c.notNull())
    .addColumn('model_ref', 'text', (c) => c.notNull())
    .addColumn('mode', 'text', (c) => c.notNull().check(sql`mode in ('events', 'table')`))
    .addColumn('as_of', 'timestamptz')
    .addColumn('active_days', 'integer')
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('running', 'succeeded', 'failed', 'cancelled')`))
    .addColumn('trigger', 'text', (c) => c.notNull().defaultTo('manual'))
    .addColumn('rows', 'bigint')
    .addColumn('chunks', 'integer')
    .addColumn('deciles', 'jsonb')
    .addColumn('started_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('finished_at', 'timestamptz')
    .addColumn('error_type', 'text')
    .addColumn('error_message', 'text')
    .addForeignKeyConstraint('score_runs_model_version_fk', ['model_name', 'model_version'], 'ml.model_versions', [
      'model_name',
      'version',
    ])
    .execute();
  await s.createIndex('score_runs_model_started').on('score_runs').columns(['model_name', 'started_at']).execute();

  await s
    .createTable('scores')
    .addColumn('score_run_id', 'text', (c) => c.notNull().references('ml.score_runs.score_run_id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('model_name', 'text', (c) => c.notNull())
    .addColumn('model_version', 'integer', (c) => c.notNull())
    .addColumn('scored_at', 'timestamptz', (c) => c.notNull())
    .addColumn('probability', 'double precision', (c) => c.notNull().check(sql`probability >= 0 and probability <= 1`))
    // NULL until the run's finalize step ranks the whole run (1 = the highest probabilities)
    .addColumn('decile', 'smallint', (c) => c.check(sql`decile between 1 and 10`))
    .addPrimaryKeyConstraint('scores_pk', ['score_run_id', 'user_id'])
    .execute();
  // "the latest score of user X (for model M)": an index-only walk per user, newest first
  await sql`create index scores_latest_per_model_user on ml.scores (model_name, user_id, scored_at desc)`.execute(db);
  await sql`create index scores_latest_per_user on ml.scores (user_id, scored_at desc)`.execute(db);

  await sql`
    create view ml.latest_scores as
    select distinct on (s.model_name, s.user_id)
           s.model_name, s.user_id, s.model_version, s.score_run_id, s.scored_at, s.probability, s.decile, r.as_of
    from ml.scores s
    join ml.score_runs r on r.score_run_id = s.score_run_id and r.status = 'succeeded'
    order by s.model_name, s.user_id, s.scored_at desc, s.score_run_id desc`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop view if exists ml.latest_scores`.execute(db);
  await db.schema.withSchema('ml').dropTable('scores').execute();
  await db.schema.withSchema('ml').dropTable('score_runs').execute();
}

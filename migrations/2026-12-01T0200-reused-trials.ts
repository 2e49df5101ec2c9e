import { sql, type Kysely } from 'kysely';

// `run resume` of a run whose ensemble step did not complete takes the seed replicas it did complete one by one
// (the step itself runs again, training only the others): ml.pipeline_runs.reused_trials names them, beside
// reused_steps, so a replica's ml.trials row under the new run is known as copied, not trained by it.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table ml.pipeline_runs add column reused_trials text[]`.execute(db);
  await sql`comment on column ml.pipeline_runs.reused_trials is 'run resume: seed replicas (t010-s2, ...) taken from resumed_from_run_id''s unfinished ensemble step instead of trained again'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table ml.pipeline_runs drop column reused_trials`.execute(db);
}

import { sql, type Kysely } from 'kysely';

// `propensity run resume`: a resumed run records the failed run it took its completed steps from, and which steps
// (ingest, clean, split, search, final) it reused instead of executing them — its lineage beside the config hash.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table ml.pipeline_runs add column resumed_from_run_id text references ml.pipeline_runs (run_id)`.execute(db);
  await sql`alter table ml.pipeline_runs add column reused_steps text[]`.execute(db);
  await sql`comment on column ml.pipeline_runs.resumed_from_run_id is 'run resume: the failed run whose completed steps this run reused'`.execute(db);
  await sql`comment on column ml.pipeline_runs.reused_steps is 'run resume: the steps taken from resumed_from_run_id instead of executed (ingest, clean, split, search, final)'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table ml.pipeline_runs drop column reused_steps`.execute(db);
  await sql`alter table ml.pipeline_runs drop column resumed_from_run_id`.execute(db);
}

import { sql, type Kysely } from 'kysely';

// `run resume` reuses a failed run's ensemble step too (its seed replicas and the selection it built), so
// ml.pipeline_runs.reused_steps may now name 'ensemble': the column's comment, which analysts read in psql (\d+),
// says so. Comments only: no data changes.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`comment on column ml.pipeline_runs.reused_steps is 'run resume: the steps taken from resumed_from_run_id instead of executed (ingest, clean, split, search, final, ensemble)'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`comment on column ml.pipeline_runs.reused_steps is 'run resume: the steps taken from resumed_from_run_id instead of executed (ingest, clean, split, search, final)'`.execute(db);
}

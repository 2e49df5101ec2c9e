import { sql, type Kysely } from 'kysely';

// `run resume` of a run that stopped inside its search or its ensemble step takes the trial results that step had
// completed one by one (the step itself runs again and trains only the rest): ml.pipeline_runs.reused_trials names
// them beside reused_steps, so their ml.trials rows under the new run are known as copied, not trained by it.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table ml.pipeline_runs add column reused_trials text[]`.execute(db);
  await sql`comment on column ml.pipeline_runs.reused_trials is 'run resume: trials taken from resumed_from_run_id''s unfinished search or ensemble step instead of trained again: t003@1 (search trial t003 through rung 1, 0-based as ml.trials.rung), baseline, t010-s2 (a seed replica)'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table ml.pipeline_runs drop column reused_trials`.execute(db);
}

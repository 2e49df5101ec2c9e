import { sql, type Kysely } from 'kysely';

// `run resume` now also continues a seed replica the failed run was still training, from its last checkpoint: the
// column's comment names that label too (t010-s2:5). Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`comment on column ml.pipeline_runs.reused_trials is 'run resume: trials taken from resumed_from_run_id''s unfinished search or ensemble step instead of trained again: t003@1 (search trial t003 through rung 1, 0-based as ml.trials.rung), t003@2:7 (interrupted in rung 2, continued from its checkpoint at epoch 7), baseline, t010-s2 (a seed replica), t010-s2:5 (a seed replica interrupted, continued from its checkpoint at epoch 5)'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`comment on column ml.pipeline_runs.reused_trials is 'run resume: trials taken from resumed_from_run_id''s unfinished search or ensemble step instead of trained again: t003@1 (search trial t003 through rung 1, 0-based as ml.trials.rung), t003@2:7 (interrupted in rung 2, continued from its checkpoint at epoch 7), baseline, t010-s2 (a seed replica)'`.execute(db);
}

import { sql, type Kysely } from 'kysely';

// Champion-aware scores: ml.latest_scores serves only the scores of the version the `champion` alias points to
// (a challenger scored in shadow never reaches it; a rollback is followed at once), and
// ml.latest_scores_by_alias gives the same for every alias. Same columns as before, so queries keep working.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create or replace view ml.latest_scores_by_alias as
    select distinct on (a.model_name, a.alias, s.user_id)
           a.model_name, s.user_id, s.model_version, s.score_run_id, s.scored_at, s.probability, s.decile, r.as_of, a.alias
    from ml.model_aliases a
    join ml.scores s on s.model_name = a.model_name and s.model_version = a.version
    join ml.score_runs r on r.score_run_id = s.score_run_id and r.status = 'succeeded'
    order by a.model_name, a.alias, s.user_id, s.scored_at desc, s.score_run_id desc`.execute(db);
  await sql`
    create or replace view ml.latest_scores as
    select model_name, user_id, model_version, score_run_id, scored_at, probability, decile, as_of
    from ml.latest_scores_by_alias
    where alias = 'champion'`.execute(db);
  await sql`create index if not exists scores_model_version_user on ml.scores (model_name, model_version, user_id, scored_at desc)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists ml.scores_model_version_user`.execute(db);
  await sql`
    create or replace view ml.latest_scores as
    select distinct on (s.model_name, s.user_id)
           s.model_name, s.user_id, s.model_version, s.score_run_id, s.scored_at, s.probability, s.decile, r.as_of
    from ml.scores s
    join ml.score_runs r on r.score_run_id = s.score_run_id and r.status = 'succeeded'
    order by s.model_name, s.user_id, s.scored_at desc, s.score_run_id desc`.execute(db);
  await sql`drop view if exists ml.latest_scores_by_alias`.execute(db);
}

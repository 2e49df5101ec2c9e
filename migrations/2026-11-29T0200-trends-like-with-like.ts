import { sql, type Kysely } from 'kysely';

// ml.metric_trends compares like with like: the AUC change of a run is its model against the champion of the day
// on the same test rows (the rows neither had seen, as the evaluation stored them), not against the previous run's
// AUC on another test set. Changes of cutoff, horizon or split settings between consecutive runs are flagged.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop view if exists ml.metric_trends`.execute(db);
  await sql`
    create view ml.metric_trends as
    with runs as (
      select r.model_name, r.run_id, r.workflow_id, r.trigger, r.cutoff, r.horizon_days, r.started_at, r.status, r.model_version,
             r.config -> 'split' as split, e.blessed, e.rows as test_rows, e.metrics,
             (select c from jsonb_array_elements(e.comparisons) c where c ->> 'check' = 'not_worse_than_champion' limit 1) as vs
      from ml.evaluations e
      join ml.pipeline_runs r on r.run_id = e.run_id
    )
    select model_name, run_id, workflow_id, trigger, cutoff, started_at, status, model_version, blessed, test_rows,
           (metrics ->> 'rocAuc')::float8 as test_auc, (metrics ->> 'prAuc')::float8 as test_pr_auc,
           (metrics ->> 'logLoss')::float8 as test_log_loss, (metrics ->> 'brier')::float8 as test_brier,
           (metrics ->> 'ece')::float8 as test_ece,
           -- this run's model minus the champion's, both scored on the same unseen test rows
           case when vs ->> 'status' = 'skipped' then null else (vs ->> 'diff')::float8 end as test_auc_change,
           vs ->> 'against' as change_against,
           (vs ->> 'rows')::int as change_rows,
           case when vs is null then 'no champion' else coalesce(vs ->> 'status', case when (vs ->> 'passed')::boolean then 'passed' else 'failed' end) end as change_status,
           (vs ->> 'otherAuc')::float8 as champion_test_auc,
           lag(run_id) over w is not null and cutoff is distinct from lag(cutoff) over w as cutoff_changed,
           lag(run_id) over w is not null and horizon_days is distinct from lag(horizon_days) over w as horizon_changed,
           lag(run_id) over w is not null and split is distinct from lag(split) over w as split_changed
    from runs
    window w as (partition by model_name order by started_at)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop view if exists ml.metric_trends`.execute(db);
  await sql`
    create view ml.metric_trends as
    select r.model_name, r.run_id, r.workflow_id, r.trigger, r.cutoff, r.started_at, r.status, r.model_version,
           e.blessed, e.rows as test_rows,
           (e.metrics ->> 'rocAuc')::float8 as test_auc, (e.metrics ->> 'prAuc')::float8 as test_pr_auc,
           (e.metrics ->> 'logLoss')::float8 as test_log_loss, (e.metrics ->> 'brier')::float8 as test_brier,
           (e.metrics ->> 'ece')::float8 as test_ece,
           (e.metrics ->> 'rocAuc')::float8
             - lag((e.metrics ->> 'rocAuc')::float8) over (partition by r.model_name order by r.started_at) as test_auc_change
    from ml.evaluations e
    join ml.pipeline_runs r on r.run_id = e.run_id`.execute(db);
}

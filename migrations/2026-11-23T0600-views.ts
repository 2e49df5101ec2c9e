import { sql, type Kysely } from 'kysely';

// Views for analysts (README, "The ml schema"): stable names over the tables, so queries survive table changes.
// Frozen in time like every migration: a later change replaces a view in a new migration.
export async function up(db: Kysely<any>): Promise<void> {
  // one row per pipeline run: how long it took, how it ended, what it produced
  await sql`
    create view ml.run_summary as
    select r.run_id, r.workflow_id, r.model_name, r.status, r.trigger, r.cutoff, r.horizon_days,
           r.started_at, r.finished_at,
           extract(epoch from coalesce(r.finished_at, now()) - r.started_at)::float8 as duration_seconds,
           r.model_version, (r.metrics ->> 'testAuc')::float8 as test_auc, (r.metrics ->> 'testPrAuc')::float8 as test_pr_auc,
           (r.metrics ->> 'testLogLoss')::float8 as test_log_loss, e.blessed, r.error_type, r.error_message,
           (select count(*) from ml.trials t where t.run_id = r.run_id and t.trial_id not in ('final', 'baseline'))::int as trials,
           r.config_hash, r.code_version
    from ml.pipeline_runs r
    left join ml.evaluations e on e.run_id = r.run_id`.execute(db);

  // one row per run and step (trials summed): where the time went, and how many retries it took
  await sql`
    create view ml.step_timings as
    select s.run_id, r.model_name, s.step, count(*)::int as executions, min(s.started_at) as first_started_at,
           max(s.finished_at) as last_finished_at, sum(s.duration_ms)::float8 / 1000 as busy_seconds,
           extract(epoch from max(s.finished_at) - min(s.started_at))::float8 as wall_seconds,
           max(s.attempt) as max_attempt, count(*) filter (where s.status = 'failed')::int as failed
    from ml.run_steps s
    join ml.pipeline_runs r on r.run_id = s.run_id
    group by s.run_id, r.model_name, s.step`.execute(db);

  // search trials ranked within their run by validation log loss (the search metric's default), best first
  await sql`
    create view ml.trial_leaderboard as
    select t.run_id, r.model_name, t.trial_id,
           rank() over (partition by t.run_id order by t.val_log_loss asc nulls last) as rank,
           t.status, t.val_auc, t.val_pr_auc, t.val_log_loss, t.epochs_run, t.best_epoch, t.rung, t.budget_epochs,
           t.stop_reason, t.params, t.backend, t.attempt, t.duration_ms
    from ml.trials t
    join ml.pipeline_runs r on r.run_id = t.run_id
    where t.trial_id not in ('final', 'baseline')`.execute(db);

  // every move of every alias, with the test metrics of the versions on both sides
  await sql`
    create view ml.champion_history as
    select h.model_name, h.alias, h.changed_at, h.changed_by, h.reason, h.from_version, h.to_version,
           (vf.metrics ->> 'rocAuc')::float8 as from_test_auc, (vt.metrics ->> 'rocAuc')::float8 as to_test_auc,
           vt.run_id as to_run_id
    from ml.model_alias_history h
    left join ml.model_versions vf on vf.model_name = h.model_name and vf.version = h.from_version
    left join ml.model_versions vt on vt.model_name = h.model_name and vt.version = h.to_version`.execute(db);

  // evaluated runs in time order per model, with the change against the previous evaluated run
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

  // data quality per run: source events kept and quarantined, entity rows, the largest drift, label rate
  await sql`
    create view ml.data_quality_trend as
    select r.model_name, r.run_id, r.cutoff, r.started_at,
           ev.rows_in as events_in, ev.rows_out as events_valid,
           (ev.rows_in - ev.rows_out)::float8 / nullif(ev.rows_in, 0) as event_quarantine_rate,
           cl.rows_in as entities_in, cl.rows_out as entities_kept,
           (select max((f.value ->> 'psi')::float8) from jsonb_each(cl.features) f) as max_psi,
           (select f.key from jsonb_each(cl.features) f where f.value ->> 'psi' is not null
            order by (f.value ->> 'psi')::float8 desc limit 1) as max_psi_feature,
           (sp.features -> 'positiveRates' ->> 'train')::float8 as train_positive_rate
    from ml.pipeline_runs r
    left join ml.data_quality ev on ev.run_id = r.run_id and ev.stage = 'events'
    left join ml.data_quality cl on cl.run_id = r.run_id and cl.stage = 'clean'
    left join ml.data_quality sp on sp.run_id = r.run_id and sp.stage = 'split'
    where cl.run_id is not null or ev.run_id is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const v of ['data_quality_trend', 'metric_trends', 'champion_history', 'trial_leaderboard', 'step_timings', 'run_summary']) {
    await sql`drop view if exists ${sql.raw(`ml.${v}`)}`.execute(db);
  }
}

import { sql, type Kysely } from 'kysely';

// ml.run_steps keeps one row per execution — (run, step, trial, rung, attempt) — instead of one row per step that
// every retry and every successive-halving promotion overwrote; transient_faults counts the in-process re-runs of an
// attempt after a passing infrastructure fault. ml.trial_leaderboard ranks by the run's own selection metric.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table ml.run_steps add column rung integer not null default 0`.execute(db);
  await sql`alter table ml.run_steps add column transient_faults integer not null default 0`.execute(db);
  await sql`alter table ml.run_steps drop constraint run_steps_pk`.execute(db);
  await sql`alter table ml.run_steps add constraint run_steps_pk primary key (run_id, step, trial_id, rung, attempt)`.execute(db);

  await sql`drop view if exists ml.trial_leaderboard`.execute(db);
  await sql`
    create view ml.trial_leaderboard as
    select t.run_id, r.model_name, t.trial_id,
           rank() over (
             partition by t.run_id
             order by case coalesce(r.config -> 'search' ->> 'metric', 'valLogLoss')
                        when 'valAuc' then -t.val_auc when 'valPrAuc' then -t.val_pr_auc else t.val_log_loss end asc nulls last
           ) as rank,
           coalesce(r.config -> 'search' ->> 'metric', 'valLogLoss') as ranked_by,
           t.status, t.val_auc, t.val_pr_auc, t.val_log_loss, t.epochs_run, t.best_epoch, t.rung, t.budget_epochs,
           t.stop_reason, t.params, t.backend, t.attempt, t.duration_ms, t.family
    from ml.trials t
    join ml.pipeline_runs r on r.run_id = t.run_id
    where t.trial_id not in ('final', 'baseline')`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop view if exists ml.trial_leaderboard`.execute(db);
  await sql`
    create view ml.trial_leaderboard as
    select t.run_id, r.model_name, t.trial_id,
           rank() over (partition by t.run_id order by t.val_log_loss asc nulls last) as rank,
           t.status, t.val_auc, t.val_pr_auc, t.val_log_loss, t.epochs_run, t.best_epoch, t.rung, t.budget_epochs,
           t.stop_reason, t.params, t.backend, t.attempt, t.duration_ms
    from ml.trials t
    join ml.pipeline_runs r on r.run_id = t.run_id
    where t.trial_id not in ('final', 'baseline')`.execute(db);
  // keep each step's latest execution, then the old key
  await sql`
    delete from ml.run_steps s using ml.run_steps n
    where n.run_id = s.run_id and n.step = s.step and n.trial_id = s.trial_id
      and (n.rung, n.attempt) > (s.rung, s.attempt)`.execute(db);
  await sql`alter table ml.run_steps drop constraint run_steps_pk`.execute(db);
  await sql`alter table ml.run_steps add constraint run_steps_pk primary key (run_id, step, trial_id)`.execute(db);
  await sql`alter table ml.run_steps drop column transient_faults`.execute(db);
  await sql`alter table ml.run_steps drop column rung`.execute(db);
}

import type { ColumnType, Generated, JSONColumnType } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type Json<T extends object | null = object> = JSONColumnType<T, string, string>;
type GeneratedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface PipelineRunsTable {
  run_id: string;
  workflow_id: string;
  model_name: string;
  status: 'running' | 'awaiting_approval' | 'registered' | 'rejected' | 'failed' | 'cancelled';
  trigger: Generated<string>;
  cutoff: Timestamp | null;
  horizon_days: number | null;
  config: Json;
  config_hash: string;
  code_version: string;
  started_at: GeneratedTimestamp;
  finished_at: Timestamp | null;
  model_version: number | null;
  metrics: Json | null;
  error_type: string | null;
  error_message: string | null;
  /** `run resume`: the failed run whose completed steps this run reused, and which steps */
  resumed_from_run_id: ColumnType<string | null, string | null | undefined, string | null>;
  reused_steps: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
  /** `run resume`: trials taken one by one from a step the failed run did not complete: `t003@1` (a search trial through rung 1), `baseline`, `t010-s2` (a seed replica) */
  reused_trials: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
}

export interface RunStepsTable {
  run_id: string;
  step: string;
  trial_id: Generated<string>;
  status: 'running' | 'succeeded' | 'failed';
  attempt: number;
  worker: string | null;
  started_at: Timestamp;
  finished_at: Timestamp | null;
  duration_ms: number | null;
  detail: Json | null;
  error_type: string | null;
  error_message: string | null;
  /** successive-halving rung of a trial execution (0 otherwise) */
  rung: Generated<number>;
  /** in-process re-runs of this attempt after passing infrastructure faults */
  transient_faults: Generated<number>;
}

export interface DataQualityTable {
  run_id: string;
  stage: string;
  rows_in: ColumnType<string, number, number>;
  rows_out: ColumnType<string, number, number>;
  quarantined: Json<Record<string, number>>;
  features: Json;
  quarantine_uri: string | null;
  created_at: GeneratedTimestamp;
}

export interface TrialsTable {
  run_id: string;
  trial_id: string;
  status: 'running' | 'completed' | 'failed';
  params: Json;
  seed: ColumnType<string, number, number>;
  attempt: Generated<number>;
  resumed_from_epoch: Generated<number>;
  epochs_run: number | null;
  best_epoch: number | null;
  val_auc: number | null;
  val_pr_auc: number | null;
  val_log_loss: number | null;
  curve: Json;
  backend: string | null;
  model_uri: string | null;
  started_at: Timestamp;
  finished_at: Timestamp | null;
  duration_ms: number | null;
  error: string | null;
  rung: Generated<number>;
  budget_epochs: number | null;
  stop_reason: string | null;
  /** 'logistic' (the baseline) | 'mlp' */
  family: string | null;
  /** the training pool whose worker ran the latest attempt ('cpu', 'gpu', …) and that worker's host */
  pool: string | null;
  host: string | null;
}

export interface FeatureImportanceTable {
  run_id: string;
  feature: string;
  kind: string;
  method: Generated<string>;
  importance: number;
  rank: number;
}

export interface EvaluationsTable {
  run_id: string;
  model_name: string;
  split: Generated<string>;
  rows: number;
  metrics: Json<Record<string, number>>;
  blessed: boolean;
  checks: Json;
  reasons: Json<string[]>;
  report_uri: string;
  comparisons: Json;
  created_at: GeneratedTimestamp;
}

export interface ModelVersionsTable {
  model_name: string;
  version: number;
  run_id: string;
  workflow_id: string;
  uri: string;
  config_hash: string;
  code_version: string;
  data_sha256: string;
  params: Json;
  seed: ColumnType<string, number, number>;
  backend: string;
  metrics: Json<Record<string, number>>;
  /** 'logistic' | 'mlp' | 'ensemble' | 'sequence' (null only before the column existed) */
  family: string | null;
  /** an ensemble's member trial ids, in the order they were chosen; null for a single network */
  members: ColumnType<string[] | null, string | null | undefined, string | null>;
  created_at: GeneratedTimestamp;
  /** only approved versions can hold an alias; pending_approval waits for a reviewer */
  status: ColumnType<ModelVersionStatus, ModelVersionStatus | undefined, ModelVersionStatus>;
  decided_by: string | null;
  decided_at: Timestamp | null;
  decision_reason: string | null;
}

export type ModelVersionStatus = 'approved' | 'pending_approval' | 'rejected';

export interface ModelAliasesTable {
  model_name: string;
  alias: string;
  version: number;
  updated_at: GeneratedTimestamp;
  updated_by: string;
}

export interface ModelAliasHistoryTable {
  id: Generated<string>;
  model_name: string;
  alias: string;
  from_version: number | null;
  to_version: number;
  changed_at: GeneratedTimestamp;
  changed_by: string;
  reason: string | null;
  /** 'rollback' moves undo the move before them, so a second rollback goes one step further back */
  action: ColumnType<'move' | 'rollback', 'move' | 'rollback' | undefined, 'move' | 'rollback'>;
}

export interface ApprovalsTable {
  run_id: string;
  workflow_id: string;
  model_name: string;
  version: number;
  requested_at: Timestamp;
  timeout_at: Timestamp;
  decision: 'approved' | 'rejected' | 'timeout' | null;
  decided_by: string | null;
  decided_at: Timestamp | null;
  reason: string | null;
}

export interface ScoreRunsTable {
  /** the scoring workflow's id: rerunning the same id replaces the run's rows */
  score_run_id: string;
  temporal_run_id: string;
  model_name: string;
  model_version: number;
  /** the reference as asked (name@alias, name:version) */
  model_ref: string;
  mode: 'events' | 'table';
  /** event mode: the cutoff features are computed at; null in table mode */
  as_of: Timestamp | null;
  active_days: number | null;
  status: 'running' | 'succeeded' | 'failed' | 'cancelled';
  trigger: Generated<string>;
  rows: ColumnType<string | null, number | null | undefined, number | null>;
  chunks: number | null;
  deciles: Json<unknown[]> | null;
  started_at: GeneratedTimestamp;
  finished_at: Timestamp | null;
  error_type: string | null;
  error_message: string | null;
}

export interface ScoresTable {
  score_run_id: string;
  user_id: string;
  model_name: string;
  model_version: number;
  scored_at: Timestamp;
  probability: number;
  /** 1 = the highest tenth of the run's probabilities; NULL until the run is finalized */
  decile: number | null;
}

/** ml.latest_scores (a view): each user's latest score from the version `champion` points to, succeeded runs only. */
export interface LatestScoresView {
  model_name: string;
  user_id: string;
  model_version: number;
  score_run_id: string;
  scored_at: Date;
  probability: number;
  decile: number | null;
  as_of: Date | null;
}

export interface UserTruthTable {
  user_id: string;
  probability: number;
  label: boolean;
  is_bot: boolean;
}

export interface ShopsTable {
  id: Generated<number>;
  seed: number;
  users: number;
  days: number;
  start_at: Timestamp;
  end_at: Timestamp;
  cutoff_at: Timestamp;
  horizon_days: number;
  events: ColumnType<string, number, number>;
  dirty_rate: number;
  created_at: GeneratedTimestamp;
}

export interface Database {
  'ml.pipeline_runs': PipelineRunsTable;
  'ml.run_steps': RunStepsTable;
  'ml.data_quality': DataQualityTable;
  'ml.trials': TrialsTable;
  'ml.evaluations': EvaluationsTable;
  'ml.feature_importance': FeatureImportanceTable;
  'ml.model_versions': ModelVersionsTable;
  'ml.model_aliases': ModelAliasesTable;
  'ml.model_alias_history': ModelAliasHistoryTable;
  'ml.approvals': ApprovalsTable;
  'ml.score_runs': ScoreRunsTable;
  'ml.scores': ScoresTable;
  'ml.latest_scores': LatestScoresView;
  /** the same for every alias of a model (column alias) */
  'ml.latest_scores_by_alias': LatestScoresView & { alias: string };
  'bench.user_truth': UserTruthTable;
  'bench.shops': ShopsTable;
}

import type { ColumnType, Generated, JSONColumnType } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type Json<T extends object | null = object> = JSONColumnType<T, string, string>;
type GeneratedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface PipelineRunsTable {
  run_id: string;
  workflow_id: string;
  model_name: string;
  status: 'running' | 'registered' | 'rejected' | 'failed' | 'cancelled';
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
  created_at: GeneratedTimestamp;
}

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
  'bench.user_truth': UserTruthTable;
  'bench.shops': ShopsTable;
}

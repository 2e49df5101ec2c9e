import type { ArtifactRef, DatasetRef } from '../store/artifacts.js';

// What batch scoring's workflow and activities pass each other: references, counts and metrics, never rows.

export interface ScoringModel {
  modelName: string;
  version: number;
  /** the pipeline run that trained it: its config says how to build features */
  runId: string;
  mode: 'events' | 'table';
}

export interface StartScoreRunInput {
  /** the workflow id: rerunning the same id replaces the run's rows */
  scoreRunId: string;
  /** the Temporal run id of this execution (owner of the rows from now on) */
  temporalRunId: string;
  /** name, name@alias or name:version */
  model: string;
  /** ISO instant: features from valid events strictly before it */
  asOf: string;
  activeDays: number;
  chunkRows: number;
  trigger?: string;
}
export interface StartScoreRunOutput {
  model: ScoringModel;
  /** null for a table-mode model */
  asOf: string | null;
  activeDays: number | null;
}

export interface BuildScoringFeaturesInput {
  scoreRunId: string;
  temporalRunId: string;
  model: ScoringModel;
  asOf: string | null;
  activeDays: number | null;
}
export interface BuildScoringFeaturesOutput {
  /** Arrow shards of features, one row per entity to score (references only) */
  features: DatasetRef;
  rows: number;
}

export interface ScoreChunkInput {
  scoreRunId: string;
  temporalRunId: string;
  model: ScoringModel;
  chunk: number;
  shard: ArtifactRef;
  /** rows [start, end) of the shard */
  start: number;
  end: number;
  /** ISO instant written as ml.scores.scored_at (the same for every row of a run) */
  scoredAt: string;
}
export interface ScoreChunkOutput {
  chunk: number;
  rows: number;
  meanProbability: number;
}

export interface FinalizeScoreRunInput {
  scoreRunId: string;
  temporalRunId: string;
  expectedRows: number;
  chunks: number;
}
export interface DecileSummary {
  decile: number;
  rows: number;
  minProbability: number;
  maxProbability: number;
  meanProbability: number;
}
export interface FinalizeScoreRunOutput {
  rows: number;
  deciles: DecileSummary[];
}

export interface FailScoreRunInput {
  scoreRunId: string;
  temporalRunId: string;
  status: 'failed' | 'cancelled';
  error: { type: string; message: string };
}

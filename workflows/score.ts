import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { PipelineConfig } from '../pipeline/config.js';
import type { Activities } from '../activities/index.js';
import type { DecileSummary, ScoringModel } from '../activities/score.js';
import type { ArtifactRef } from '../store/artifacts.js';
import { activityOptions } from '../pipeline/retry.js';
import { TASK_QUEUES } from './constants.js';

import { SCORING_DEFAULTS } from '../pipeline/defaults.js';
export { SCORING_DEFAULTS };

export interface ScoreUsersInput {
  /** name, name@alias or name:version (a bare name means @champion) */
  model: string;
  /** ISO instant scored (features from valid events strictly before it); default: this workflow's start time */
  asOf?: string;
  /** active users have a valid event in [asOf - activeDays, asOf); default 30 */
  activeDays?: number;
  /** rows per scoring activity; default 50,000 */
  chunkRows?: number;
  /** chunks scored at once; default 2 */
  parallelism?: number;
  /** who started it (cli, pipeline:<workflow id>, test), recorded in ml.score_runs */
  trigger?: string;
  /** defaults to TASK_QUEUES.cpu; tests use a queue of their own */
  taskQueues?: { cpu: string };
}

export interface ScoreUsersOutput {
  /** = the workflow id; the key of the run's rows in ml.scores */
  scoreRunId: string;
  modelName: string;
  modelVersion: number;
  mode: 'events' | 'table';
  /** null for a table-mode model */
  asOf: string | null;
  activeDays: number | null;
  scoredAt: string;
  rows: number;
  chunks: number;
  deciles: DecileSummary[];
}

export interface ScoreProgress {
  stage: 'start' | 'features' | 'scoring' | 'finalize' | 'done' | 'failed';
  modelVersion: number | null;
  rows: number | null;
  chunks: number;
  chunksDone: number;
}

export const scoreProgressQuery = defineQuery<ScoreProgress>('scoreProgress');

export interface ScoreChunkPlan {
  chunk: number;
  shard: ArtifactRef;
  start: number;
  end: number;
}

/** Cuts every feature shard into chunks of at most chunkRows rows, in order. */
export function planChunks(shards: ArtifactRef[], chunkRows: number): ScoreChunkPlan[] {
  const out: ScoreChunkPlan[] = [];
  for (const shard of shards) {
    const rows = shard.rows ?? 0;
    for (let start = 0; start < rows; start += chunkRows) out.push({ chunk: out.length, shard, start, end: Math.min(start + chunkRows, rows) });
  }
  return out;
}

/**
 * What trainPipeline passes to executeChild/startChild(scoreUsers, …) after promoting `version`, or null when the
 * config's scoring.afterPromotion is off (or absent, as in histories recorded before the key existed). The exact
 * version is scored (not the alias, which may move meanwhile), as of the child's own start time.
 */
export function scoreAfterPromotion(
  parentWorkflowId: string,
  config: Pick<PipelineConfig, 'modelName'> & { scoring?: PipelineConfig['scoring'] },
  version: number,
  cpuQueue: string = TASK_QUEUES.cpu,
): { workflowId: string; taskQueue: string; args: [ScoreUsersInput] } | null {
  if (!config.scoring?.afterPromotion) return null;
  return {
    workflowId: `${parentWorkflowId}/score`,
    taskQueue: cpuQueue,
    args: [
      {
        model: `${config.modelName}:${version}`,
        activeDays: config.scoring.activeDays,
        chunkRows: config.scoring.chunkRows,
        trigger: `pipeline:${parentWorkflowId}`,
        taskQueues: { cpu: cpuQueue },
      },
    ],
  };
}

function activities(cpuQueue: string) {
  // pipeline/retry.ts: transient faults are retried in-process by the worker, typed errors are non-retryable
  const options = activityOptions('cpu', cpuQueue);
  return { quick: proxyActivities<Activities>(options), long: proxyActivities<Activities>(options) };
}

/**
 * Batch scoring: resolve the model, build the features of every active user at asOf (shards in S3), score them
 * chunk by chunk into ml.scores (COPY, one transaction per chunk), then rank the run into deciles. The workflow id
 * is the score run id: rerunning a finished id replaces its rows. The history holds references and counts only.
 */
export async function scoreUsers(input: ScoreUsersInput): Promise<ScoreUsersOutput> {
  const { workflowId, runId, startTime } = workflowInfo();
  const { quick, long } = activities(input.taskQueues?.cpu ?? TASK_QUEUES.cpu);
  const progress: ScoreProgress = { stage: 'start', modelVersion: null, rows: null, chunks: 0, chunksDone: 0 };
  setHandler(scoreProgressQuery, () => progress);
  const scoredAt = startTime.toISOString();
  const activeDays = input.activeDays ?? SCORING_DEFAULTS.activeDays;
  const chunkRows = input.chunkRows ?? SCORING_DEFAULTS.chunkRows;
  const ids = { scoreRunId: workflowId, temporalRunId: runId };

  let started = false;
  try {
    const start = await quick.startScoreRun({ ...ids, model: input.model, asOf: input.asOf ?? scoredAt, activeDays, chunkRows, trigger: input.trigger });
    started = true;
    const model: ScoringModel = start.model;
    progress.modelVersion = model.version;

    progress.stage = 'features';
    const built = await long.buildScoringFeatures({ ...ids, model, asOf: start.asOf, activeDays: start.activeDays });
    progress.rows = built.rows;

    progress.stage = 'scoring';
    const chunks = planChunks(built.features.shards, chunkRows);
    progress.chunks = chunks.length;
    let next = 0;
    const lane = async () => {
      while (next < chunks.length) {
        const c = chunks[next++];
        await long.scoreChunk({ ...ids, model, chunk: c.chunk, shard: c.shard, start: c.start, end: c.end, scoredAt });
        progress.chunksDone++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(input.parallelism ?? SCORING_DEFAULTS.parallelism, chunks.length) }, lane));

    progress.stage = 'finalize';
    const fin = await long.finalizeScoreRun({ ...ids, expectedRows: built.rows, chunks: chunks.length });
    progress.stage = 'done';
    return {
      scoreRunId: workflowId,
      modelName: model.modelName,
      modelVersion: model.version,
      mode: model.mode,
      asOf: start.asOf,
      activeDays: start.activeDays,
      scoredAt,
      rows: fin.rows,
      chunks: chunks.length,
      deciles: fin.deciles,
    };
  } catch (err) {
    progress.stage = 'failed';
    const cancelled = isCancellation(err);
    const cause = err instanceof ActivityFailure ? err.cause : err;
    const type = (cause as { type?: string } | undefined)?.type ?? (cause as Error | undefined)?.name ?? 'Error';
    const message = (cause as Error | undefined)?.message ?? String(err);
    // A run that never opened (bad input, unknown model) changes nothing, not even an earlier run's row.
    if (started) {
      await CancellationScope.nonCancellable(() =>
        quick.failScoreRun({ ...ids, status: cancelled ? 'cancelled' : 'failed', error: { type, message } }),
      );
    }
    // The activity's typed failure becomes the workflow's, so callers match on err.cause.type.
    if (!cancelled && cause instanceof ApplicationFailure) throw ApplicationFailure.create({ type, message, nonRetryable: true });
    throw err;
  }
}

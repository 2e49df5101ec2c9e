import type { PipelineConfig } from '../pipeline/config.js';
import type { CleanInput } from '../activities/clean.js';
import type { IngestOutput } from '../activities/ingest.js';
import type { EnsembleMember } from '../activities/ensemble.js';
import type { BackendChoice, TrainTrialOutput } from '../activities/train.js';
import type { ArtifactRef } from '../store/artifacts.js';
import type { HyperparameterSearchInput } from './search.js';

// Pure builders of the pipeline's activity and child-workflow inputs from its config: the workflow and the
// benchmarks call the same stages with exactly the same arguments. Workflow-safe: plain data in, plain data out.

export function cleanInput(runId: string, config: PipelineConfig, ingest: IngestOutput): CleanInput {
  const events = ingest.events;
  return {
    runId,
    modelName: config.modelName,
    mode: ingest.mode,
    raw: ingest.raw,
    quality: config.quality,
    eventQuarantineRate: events && events.total ? (events.total - events.valid) / events.total : 0,
  };
}

export function searchInput(
  runId: string,
  config: PipelineConfig,
  data: HyperparameterSearchInput['data'],
  trainQueue: string,
): HyperparameterSearchInput {
  return {
    runId,
    trainQueue,
    trials: config.search.trials,
    parallelism: config.search.parallelism,
    seed: config.search.seed,
    space: searchSpace(config),
    halving: config.search.halving,
    metric: config.search.metric,
    heartbeatTimeoutSeconds: config.training.heartbeatTimeoutSeconds,
    data,
    backend: config.training.backend,
    ...gpuRequirement(config),
  };
}

/**
 * Pool 'gpu' trains on a GPU unless training.allowCpuFallback says a CPU will do: the trial inputs carry
 * `requireGpu` only then, so other runs' inputs are as before.
 */
export const gpuRequirement = (config: PipelineConfig): { requireGpu?: true } =>
  config.training.pool === 'gpu' && !config.training.allowCpuFallback ? { requireGpu: true } : {};

/** The search space with the search's epoch budget and patience, as the sampler takes it. */
export const searchSpace = (config: PipelineConfig) => ({
  ...config.search.space,
  epochs: config.search.epochs,
  patience: config.search.patience,
});

/** The trial id of the best trial's replica trained with the n-th seed of the ensemble (n ≥ 2): `t010-s2`. */
export const replicaId = (bestTrialId: string, n: number): string => `${bestTrialId}-s${n}`;
/** What ends a replica's trial id, as a regular expression JavaScript and PostgreSQL (`~`) read alike. */
export const REPLICA_ID_SUFFIX = '-s[0-9]+$';
const REPLICA_ID = new RegExp(REPLICA_ID_SUFFIX);
export const isReplicaId = (trialId: string): boolean => REPLICA_ID.test(trialId);

/**
 * A trial whose activity failed for good (`err`: the ActivityFailure, whose cause is the activity's own error): it
 * ranks last and ships nothing. The search's trials and the ensemble's replicas record it so (trainOrFail), and
 * `run resume` rebuilds it the same way from the failure in a history's ActivityTaskFailed event.
 */
export function failedTrial(t: { trialId: string; params: TrainTrialOutput['params']; seed: number; backend: BackendChoice }, err: unknown): TrainTrialOutput {
  const cause = (err as { cause?: { type?: string; message?: string } }).cause;
  return {
    trialId: t.trialId, status: 'failed', error: `${cause?.type ?? 'Error'}: ${cause?.message ?? (err as Error).message}`,
    params: t.params, seed: t.seed, valAuc: null, valPrAuc: null, valLogLoss: null, bestEpoch: null,
    epochs: 0, resumedFromEpoch: 0, seconds: 0, backend: t.backend,
  };
}

/** The random stream (deriveSeed part) of the replicas' seeds, apart from the search's trial seeds. */
export const REPLICA_STREAM = 7;

/** The completed trials a run's ensemble may draw from, best first by the search's rule (ties: trial id). */
export function ensembleCandidates(
  trials: TrainTrialOutput[],
  splitPreprocessing: ArtifactRef,
  rank: (a: TrainTrialOutput, b: TrainTrialOutput) => number,
): EnsembleMember[] {
  return trials
    .filter((t) => t.status === 'completed' && t.model)
    .sort((a, b) => rank(a, b) || (a.trialId < b.trialId ? -1 : 1))
    .map((t) => ({ trialId: t.trialId, model: t.model!, preprocessing: t.preprocessing ?? splitPreprocessing }));
}

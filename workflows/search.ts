import { defineQuery, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { BackendChoice, TrainTrialOutput } from '../activities/train.js';
import type { ArtifactRef } from '../store/artifacts.js';
import { deriveSeed } from '../ml/random.js';
import { sampleTrials } from '../ml/search.js';
import type { SearchSpace } from '../ml/types.js';
import { TASK_QUEUES } from './constants.js';

export interface HyperparameterSearchInput {
  runId: string;
  trials: number;
  parallelism: number;
  seed: number;
  space: SearchSpace;
  data: { train: ArtifactRef; val: ArtifactRef; preprocessing: ArtifactRef };
  backend: BackendChoice;
  trainQueue?: string;
}

export interface HyperparameterSearchOutput {
  trials: TrainTrialOutput[];
  best: TrainTrialOutput;
  failed: number;
}

export interface SearchProgress {
  total: number;
  running: string[];
  done: number;
  failed: number;
  bestValAuc: number | null;
}

export const searchProgressQuery = defineQuery<SearchProgress>('searchProgress');

const trainActivities = (taskQueue: string) =>
  proxyActivities<Activities>({
  taskQueue,
  startToCloseTimeout: '2 hours',
  // A trial heartbeats every epoch; silence this long means its worker died, so retry from the checkpoint.
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3, initialInterval: '2s', nonRetryableErrorTypes: ['InvalidConfig', 'InvalidData'] },
  });

/** Random search: trials sampled deterministically from the seed (a replay picks the same ones), run as a sliding window. */
export async function hyperparameterSearch(input: HyperparameterSearchInput): Promise<HyperparameterSearchOutput> {
  const { trainTrial } = trainActivities(input.trainQueue ?? TASK_QUEUES.train);
  const candidates = sampleTrials(input.space, input.trials, input.seed);
  const results: TrainTrialOutput[] = new Array(candidates.length);
  const progress: SearchProgress = { total: candidates.length, running: [], done: 0, failed: 0, bestValAuc: null };
  setHandler(searchProgressQuery, () => progress);

  let next = 0;
  const lane = async () => {
    while (next < candidates.length) {
      const i = next++;
      const trialId = `t${String(i + 1).padStart(3, '0')}`;
      progress.running.push(trialId);
      const result = await trainTrial({
        runId: input.runId,
        trialId,
        params: candidates[i],
        seed: deriveSeed(input.seed, i + 1),
        ...input.data,
        backend: input.backend,
      });
      progress.running = progress.running.filter((t) => t !== trialId);
      results[i] = result;
      progress.done++;
      if (result.status === 'failed') progress.failed++;
      else if (result.valAuc !== null && (progress.bestValAuc === null || result.valAuc > progress.bestValAuc)) {
        progress.bestValAuc = result.valAuc;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(input.parallelism, candidates.length) }, lane));

  const completed = results.filter((r) => r.status === 'completed');
  if (completed.length === 0) {
    throw new Error(`all ${results.length} trials failed: ${results.map((r) => `${r.trialId}: ${r.error}`).join('; ')}`);
  }
  // Rank on validation log loss (proper scoring), ties broken by AUC: both are measured on val, never test.
  const best = completed.reduce((a, b) =>
    b.valLogLoss! < a.valLogLoss! - 1e-12 || (Math.abs(b.valLogLoss! - a.valLogLoss!) <= 1e-12 && b.valAuc! > a.valAuc!)
      ? b
      : a,
  );
  return { trials: results, best, failed: results.length - completed.length };
}

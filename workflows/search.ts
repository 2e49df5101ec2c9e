import { ApplicationFailure, defineQuery, isCancellation, patched, proxyActivities, setCurrentDetails, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { BackendChoice, ModelRef, TrainTrialInput, TrainTrialOutput } from '../activities/train.js';
import type { ArtifactRef } from '../store/artifacts.js';
import { deriveSeed } from '../ml/random.js';
import { expectedSeconds, longestFirst, sampleTrials, type SelectionMetric } from '../ml/search.js';
import type { SearchSpace } from '../ml/types.js';
import { activityOptions } from '../pipeline/retry.js';
import { TASK_QUEUES } from './constants.js';
import { failedTrial } from './inputs.js';

export type TrialMetric = SelectionMetric;

export interface HyperparameterSearchInput {
  runId: string;
  trials: number;
  parallelism: number;
  seed: number;
  /** space.epochs is the largest budget a trial can reach */
  space: SearchSpace;
  /** successive halving: rung budgets minEpochs·eta^k up to space.epochs; the best 1/eta of each rung go on */
  halving: { eta: number; minEpochs: number };
  metric: TrialMetric;
  heartbeatTimeoutSeconds?: number;
  data: { train: ArtifactRef; val: ArtifactRef; preprocessing: ArtifactRef };
  backend: BackendChoice;
  trainQueue?: string;
  /** the trials must train on a GPU (pool 'gpu' without training.allowCpuFallback) */
  requireGpu?: true;
  /**
   * `run resume` of a run whose search did not complete: the trial results (each at its rung) that run completed,
   * taken instead of training them again; a promoted trial continues from its reused result's checkpoint. Sampling
   * and promotion are deterministic, so the search reaches the same trials at the same rungs. Only new resumes
   * carry the key.
   */
  reused?: SearchTrialResult[];
  /**
   * `run resume` of a run whose search was training these trials when it stopped: each continues in its rung from
   * that run's last checkpoint instead of from the rung's start (a first rung from epoch 1). Only new resumes carry
   * the key.
   */
  interrupted?: InterruptedSearchTrial[];
}

/** A trial a failed run's search was training when it stopped, and the checkpoint a resume continues it from. */
export interface InterruptedSearchTrial {
  trialId: string;
  rung: number;
  from: { ref: ModelRef; epoch: number };
}

/** One trial's result at one rung of a search. */
export interface SearchTrialResult {
  rung: number;
  result: TrainTrialOutput;
}

export interface HyperparameterSearchOutput {
  /** each trial's result at the last rung it reached */
  trials: TrainTrialOutput[];
  best: TrainTrialOutput;
  failed: number;
  rungs: { budget: number; trials: number }[];
}

export interface SearchProgress {
  total: number;
  /** 0-based index of the rung being trained, and each rung's epoch budget */
  rung: number;
  rungs: number[];
  /** trials in the current rung, and how many of them have finished */
  rungTrials: number;
  rungDone: number;
  running: string[];
  /** trials that finished their first rung (and of those, failed) */
  done: number;
  failed: number;
  /** the rule that ranks trials, and the best trial by it so far */
  metric: TrialMetric;
  best: { trialId: string; value: number; valAuc: number | null } | null;
  /** best validation ROC-AUC of any finished trial (informational; the rule above decides) */
  bestValAuc: number | null;
}

export const searchProgressQuery = defineQuery<SearchProgress>('searchProgress');

const trainActivities = (taskQueue: string, heartbeatTimeoutSeconds = 120) =>
  // A trial heartbeats every epoch; silence this long means its worker died, so retry from the checkpoint.
  proxyActivities<Activities>(activityOptions('train', taskQueue, heartbeatTimeoutSeconds));

/**
 * Trains one trial; an activity that failed for good (its attempts spent) is a failed trial, not a failed caller:
 * it ranks last and ships nothing. A cancellation still ends the caller. The search's trials and the pipeline's
 * ensemble replicas both train this way.
 */
export function trainOrFail(
  trainTrial: ReturnType<typeof trainActivities>['trainTrial'],
  summary: string,
  trial: TrainTrialInput,
): Promise<TrainTrialOutput> {
  return trainTrial.executeWithOptions({ summary }, [trial]).catch((err: unknown) => {
    if (isCancellation(err)) throw err;
    return failedTrial(trial, err);
  });
}

/** Epoch budgets of the rungs: minEpochs, minEpochs·eta, … capped by (and ending at) maxEpochs. */
export function rungBudgets(minEpochs: number, eta: number, maxEpochs: number): number[] {
  if (eta <= 1 || minEpochs >= maxEpochs) return [maxEpochs];
  const out: number[] = [];
  for (let b = minEpochs; b < maxEpochs; b = Math.ceil(b * eta)) out.push(b);
  out.push(maxEpochs);
  return out;
}

/** Lower is better for log loss, higher for the ranking metrics; failed trials rank last. */
export function better(metric: TrialMetric) {
  const value = (r: TrainTrialOutput) => (r.status === 'completed' ? r[metric] : null);
  return (a: TrainTrialOutput, b: TrainTrialOutput): number => {
    const va = value(a);
    const vb = value(b);
    if (va === null || vb === null) return va === null ? (vb === null ? 0 : 1) : -1;
    return metric === 'valLogLoss' ? va - vb : vb - va;
  };
}

/**
 * Random search with successive halving: every sampled configuration trains for a cheap budget, the best 1/eta
 * resume from their checkpoints for a larger one, and so on. Sampling is deterministic from the seed, so a replay
 * chooses the same trials; each rung runs as a sliding window of `parallelism` activities, a promoted rung its
 * longest trials first.
 */
export async function hyperparameterSearch(input: HyperparameterSearchInput): Promise<HyperparameterSearchOutput> {
  const { trainTrial } = trainActivities(input.trainQueue ?? TASK_QUEUES.train, input.heartbeatTimeoutSeconds);
  const candidates = sampleTrials(input.space, input.trials, input.seed);
  const budgets = rungBudgets(input.halving.minEpochs, input.halving.eta, input.space.epochs);
  const latest: TrainTrialOutput[] = new Array(candidates.length);
  const progress: SearchProgress = {
    total: candidates.length, rung: 0, rungs: budgets, rungTrials: candidates.length, rungDone: 0, running: [], done: 0, failed: 0,
    metric: input.metric, best: null, bestValAuc: null,
  };
  setHandler(searchProgressQuery, () => progress);
  const rungs: { budget: number; trials: number }[] = [];
  const trialId = (i: number) => `t${String(i + 1).padStart(3, '0')}`;
  const reused = new Map((input.reused ?? []).map((r) => [`${r.result.trialId}@${r.rung}`, r.result]));
  const interrupted = new Map((input.interrupted ?? []).map((t) => [`${t.trialId}@${t.rung}`, t.from]));

  let active = candidates.map((_, i) => i);
  for (let k = 0; k < budgets.length; k++) {
    progress.rung = k;
    progress.rungTrials = active.length;
    progress.rungDone = 0;
    rungs.push({ budget: budgets[k], trials: active.length });
    // A promoted rung starts its longest trials first (by the seconds per epoch each took in the rung before), so
    // the slowest does not run alone at the end while the other lanes idle. Histories from before dispatched in
    // rank order.
    const order = k > 0 && patched('search-longest-first') ? longestFirst(active, (i) => expectedSeconds(latest[i], budgets[k])) : active;
    let next = 0;
    const lane = async () => {
      while (next < order.length) {
        const i = order[next++];
        const id = trialId(i);
        progress.running.push(id);
        const previous = latest[i];
        const resumeFrom: { ref: ModelRef; epoch: number } | undefined = interrupted.get(`${id}@${k}`) ?? previous?.checkpoint;
        const trial = {
          runId: input.runId,
          trialId: id,
          params: { ...candidates[i], epochs: budgets[k] },
          seed: deriveSeed(input.seed, i + 1),
          ...input.data,
          backend: input.backend,
          ...(input.requireGpu && { requireGpu: input.requireGpu }),
          rung: k,
          resumeFrom,
        };
        // A trial whose activity failed for good (its attempts spent) is a failed trial, not a failed search:
        // the other lanes go on, and the search fails only when every trial did.
        // the Web UI's timeline names each bar (not recorded as a command, so old histories replay unchanged)
        const summary = `trial ${id}, rung ${k + 1}/${budgets.length}, ${budgets[k]} epochs` + (resumeFrom ? ` (from epoch ${resumeFrom.epoch})` : '');
        const result = reused.get(`${id}@${k}`) ?? (await trainOrFail(trainTrial, summary, trial));
        progress.running = progress.running.filter((t) => t !== id);
        latest[i] = result;
        if (k === 0) progress.done++;
        if (result.status === 'failed' && k === 0) progress.failed++;
        progress.rungDone++;
        if (result.valAuc !== null && (progress.bestValAuc === null || result.valAuc > progress.bestValAuc)) progress.bestValAuc = result.valAuc;
        // the best of each trial's latest result: the same ranking that makes the final choice below
        const leader = latest.filter((r) => r?.status === 'completed').sort(better(input.metric))[0];
        if (leader) progress.best = { trialId: leader.trialId, value: leader[input.metric]!, valAuc: leader.valAuc };
        setCurrentDetails(
          `rung ${k + 1}/${budgets.length} (${budgets[k]} epochs): ${progress.rungDone}/${progress.rungTrials} trials done` +
            (progress.best ? `; best ${progress.best.trialId}, val ROC-AUC ${progress.best.valAuc?.toFixed(4) ?? '-'}` : ''),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(input.parallelism, active.length) }, lane));
    if (k === budgets.length - 1) break;
    const survivors = active
      .filter((i) => latest[i].status === 'completed')
      .sort((a, b) => better(input.metric)(latest[a], latest[b]) || a - b);
    active = survivors.slice(0, Math.max(1, Math.ceil(active.length / input.halving.eta)));
    if (active.length === 0) break;
  }

  const completed = latest.filter((r) => r.status === 'completed');
  if (completed.length === 0) {
    // an ApplicationFailure fails the workflow (and so the run, with this cause); a plain Error would only fail the
    // workflow task, again and again
    throw ApplicationFailure.create({
      type: 'AllTrialsFailed',
      nonRetryable: true,
      message: `all ${latest.length} trials failed: ${latest.map((r) => `${r.trialId}: ${r.error}`).join('; ')}`.slice(0, 4000),
    });
  }
  const best = [...completed].sort(better(input.metric))[0];
  return { trials: latest, best, failed: latest.length - completed.length, rungs };
}

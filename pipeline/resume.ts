import type { PipelineConfig } from './config.js';

// What `propensity run resume` and the run's first activity agree on: which steps a resumed run may reuse and which
// config sections each of them read. Pure data, so the CLI (before it starts anything) and startRun (inside the run)
// apply the same rule.

/** The steps a resumed run can take from the failed run, in pipeline order; a resume reuses a prefix of them. */
export const REUSABLE_STEPS = ['ingest', 'clean', 'split', 'search', 'final', 'ensemble'] as const;
export type ReusableStep = (typeof REUSABLE_STEPS)[number];

/**
 * The config sections each reusable step reads. A section read by a reused step must be unchanged, or the reused
 * artifact would not be what the new config asks for; the sections after them (gate, evaluation, approval,
 * scoring) are read only by evaluate and later, which a resumed run always executes again.
 */
export const STEP_SECTIONS: Record<ReusableStep, readonly (keyof PipelineConfig)[]> = {
  // the source and its as-of cutoff
  ingest: ['source'],
  // the quality limits, and the drift baseline is the model's last registered run
  clean: ['quality', 'modelName'],
  split: ['split'],
  // the trials and the logistic baseline (training.finalEpochs, patience, seed, backend)
  search: ['search', 'training'],
  final: ['search', 'training'],
  // the seed replicas (training.ensemble.seeds) and the greedy selection over the search's networks
  ensemble: ['search', 'training'],
};

/**
 * What a resumed run reuses: the longest prefix of REUSABLE_STEPS the failed run completed (a step's output is only
 * as good as the steps before it). `found` holds the outputs read from the failed run's history. The final step has
 * no output of its own when the failed run reused the best trial's weights (training.final 'reuse': nothing was
 * trained), so it does not end the prefix when the ensemble step after it completed.
 */
export function reusablePrefix<T extends Partial<Record<ReusableStep, unknown>>>(found: T): T {
  const out: Partial<Record<ReusableStep, unknown>> = {};
  for (const step of REUSABLE_STEPS) {
    if (found[step] !== undefined) out[step] = found[step];
    else if (!(step === 'final' && found.search !== undefined && found.ensemble !== undefined)) break;
  }
  return out as T;
}

/**
 * The seed replicas a resumed run takes one by one from a failed run whose ensemble step did not complete (it failed
 * or was cancelled while replicas trained, or in buildEnsemble): those that completed, once the search they replicate
 * is reused (the same best trial, so the same parameters and seeds). A replica that failed for good trains again.
 * None when the whole ensemble step is reused, or when the search is not.
 */
export function reusableReplicas<R extends { status: string }>(prefix: Partial<Record<ReusableStep, unknown>>, replicas: readonly R[]): R[] {
  if (prefix.search === undefined || prefix.ensemble !== undefined) return [];
  return replicas.filter((r) => r.status === 'completed');
}

/**
 * The search results a resumed run takes one by one from a failed run whose search did not complete (it failed or
 * was cancelled while trials trained): every completed trial result, each at its rung, once the split the search
 * reads is reused. A trial that failed for good, or was interrupted, trains again (a promoted one from its reused
 * rung's checkpoint). A trial that failed at rung k may now succeed and be promoted out of rung k where the failed
 * run promoted another, so results above the lowest rung with a failure are not taken either: the new search reaches
 * the same trials at the same rungs as far as it takes results. None when the whole search is reused, or when the
 * split is not. `results` holds the failed trials too (status 'failed', at their rung).
 */
export function reusableSearchResults<R extends { status: string }>(prefix: Partial<Record<ReusableStep, unknown>>, results: readonly { rung: number; result: R }[]): { rung: number; result: R }[] {
  if (prefix.split === undefined || prefix.search !== undefined) return [];
  const failedAt = Math.min(...results.filter((r) => r.result.status !== 'completed').map((r) => r.rung));
  return results.filter((r) => r.result.status === 'completed' && r.rung <= failedAt);
}

/** A trial a failed run's search was training when the run stopped: in rung `rung`, checkpointed through `epoch`. */
export interface InterruptedTrial {
  trialId: string;
  rung: number;
  /** the last epoch whose checkpoint the failed run wrote in that rung (epochs count from the trial's start) */
  epoch: number;
}

/**
 * The interrupted trials a resumed run continues from their last checkpoint instead of from their rung's start (a
 * first rung from epoch 1): those whose rung the new search reaches with the same trials, as the taken results do
 * (at or below the lowest rung with a failure; a promoted rung only when the rung before was taken for that trial),
 * and whose checkpoint is past where the rung starts. A checkpoint carries the full training state, so the trial
 * ends as it would have without the interruption.
 */
export function reusableInterrupted<R extends { status: string; trialId: string; checkpoint?: { epoch: number } }>(
  prefix: Partial<Record<ReusableStep, unknown>>,
  results: readonly { rung: number; result: R }[],
  interrupted: readonly InterruptedTrial[],
): InterruptedTrial[] {
  if (prefix.split === undefined || prefix.search !== undefined) return [];
  const failedAt = Math.min(...results.filter((r) => r.result.status !== 'completed').map((r) => r.rung));
  const taken = reusableSearchResults(prefix, results);
  return interrupted.filter((t) => {
    if (t.rung > failedAt || taken.some((r) => r.rung === t.rung && r.result.trialId === t.trialId)) return false;
    if (t.rung === 0) return t.epoch > 0;
    const before = taken.find((r) => r.rung === t.rung - 1 && r.result.trialId === t.trialId);
    return before !== undefined && t.epoch > (before.result.checkpoint?.epoch ?? Infinity);
  });
}

/**
 * The seed replicas a resumed run continues from their last checkpoint instead of from epoch 1: those the failed run
 * was training when it stopped, once the new run takes the search whole and trains the ensemble step again (the
 * condition of `reusableReplicas`: the same best trial, so the same replica ids, parameters and seeds), and whose
 * checkpoint is past epoch 0.
 */
export function reusableInterruptedReplicas(prefix: Partial<Record<ReusableStep, unknown>>, interrupted: readonly InterruptedTrial[]): InterruptedTrial[] {
  if (prefix.search === undefined || prefix.ensemble !== undefined) return [];
  return interrupted.filter((t) => t.epoch > 0);
}

/**
 * The trials a failed run leaves interrupted: those it was still training when it stopped (`open`), then those the run
 * it had resumed left interrupted (`earlier`) that it never started (`started`: each training it scheduled), because
 * it stopped first. Their checkpoints carry over, so a resume of a resume that stopped early does
 * not start them over.
 */
export function carriedInterrupted(
  open: readonly { trialId: string; rung: number }[],
  earlier: readonly { trialId: string; rung: number }[],
  started: readonly { trialId: string; rung: number }[],
): { trialId: string; rung: number }[] {
  const key = (t: { trialId: string; rung: number }) => `${t.trialId}@${t.rung}`;
  const seen = new Set([...open, ...started].map(key));
  return [...open.map(({ trialId, rung }) => ({ trialId, rung })), ...earlier.filter((e) => !seen.has(key(e))).map(({ trialId, rung }) => ({ trialId, rung }))];
}

/** The baseline a resumed run takes from a search that did not complete: the one the failed run trained (or took), if completed. */
export function reusableBaseline<B extends { status: string }>(prefix: Partial<Record<ReusableStep, unknown>>, baseline: B | undefined): B | undefined {
  return prefix.split !== undefined && prefix.search === undefined && baseline?.status === 'completed' ? baseline : undefined;
}

/**
 * What a failed run's history says of its search. The whole step when the search child completed and the baseline is
 * known: trained by this run, or taken from the run it resumed (whose history then has no baseline training). Else
 * the trial results its search child completed or failed, each at its rung, after those it had itself taken from the
 * run it resumed, with the baseline if known: also when the child completed but the baseline beside it failed or was
 * interrupted, so that a resume trains the baseline and none of the search's trials again.
 */
export function searchFromHistory<S, B, R>(h: {
  search?: S;
  baseline?: B;
  /** what this run had taken one by one from the run it resumed */
  earlier?: { results: readonly R[]; baseline?: B };
  /** the results in its search child's history (needed unless the child completed and the baseline is known) */
  results: readonly R[];
}): { search?: { search: S; baseline: B }; trials: { results: R[]; baseline?: B } } {
  const baseline = h.baseline ?? h.earlier?.baseline;
  const whole = h.search !== undefined && baseline !== undefined;
  return {
    ...(whole && { search: { search: h.search as S, baseline: baseline as B } }),
    trials: { results: [...(h.earlier?.results ?? []), ...(whole ? [] : h.results)], ...(baseline !== undefined && { baseline }) },
  };
}

/**
 * Every trial a resumed run takes one by one, as ml.pipeline_runs.reused_trials, the CLI and the lineage name them:
 * search trials (each through its last reused rung, or into the rung it was interrupted in), the baseline, seed
 * replicas.
 */
export function reusedTrials(steps: {
  searchTrials?: { results: readonly { rung: number; result: TrialResult }[]; baseline?: unknown; interrupted?: readonly { trialId: string; rung: number; from: { epoch: number } }[] };
  replicas?: readonly { trialId: string }[];
  interruptedReplicas?: readonly { trialId: string; from: { epoch: number } }[];
}): ReusedTrial[] {
  const interrupted = steps.searchTrials?.interrupted ?? [];
  const byId = (a: ReusedTrial, b: ReusedTrial) => a.trialId.localeCompare(b.trialId, 'en', { numeric: true });
  const search: ReusedTrial[] = [
    ...lastReusedRungs(steps.searchTrials?.results ?? []).filter((t) => !interrupted.some((i) => i.trialId === t.trialId)),
    ...interrupted.map((i) => ({ trialId: i.trialId, rung: i.rung, through: i.from.epoch })),
  ].sort(byId);
  const replicas: ReusedTrial[] = [
    ...(steps.replicas ?? []).map((r) => ({ trialId: r.trialId })),
    ...(steps.interruptedReplicas ?? []).map((r) => ({ trialId: r.trialId, through: r.from.epoch })),
  ].sort(byId);
  return [...search, ...(steps.searchTrials?.baseline ? [{ trialId: 'baseline' }] : []), ...replicas];
}

/** A trial a resumed run took one by one from an unfinished step: a search trial through a rung, the baseline, a replica. */
export interface ReusedTrial {
  trialId: string;
  /** a search trial: the last rung taken (0-based, as ml.trials.rung) */
  rung?: number;
  /** and its result there, which its ml.trials row shows in the new run */
  result?: RungState;
  /** a search trial interrupted in rung `rung`, or a seed replica: the epoch it continues from (its row shows the curve up to it) */
  through?: number;
}

/** What a search trial's ml.trials row holds after a rung. */
export interface RungState {
  budget: number;
  epochs: number;
  valAuc: number | null;
  valPrAuc: number | null;
  valLogLoss: number | null;
  bestEpoch: number | null;
  stopReason: string | null;
  /** that rung's model (its model.json), the epoch the rung continued from and the seconds it trained (absent in runs started before 2026-12-02) */
  model?: { bucket: string; key: string } | null;
  resumedFromEpoch?: number;
  seconds?: number;
}

/**
 * How ml.pipeline_runs.reused_trials and the CLI name a reused trial: `t003@1` (a search trial through rung 1, counted
 * from 0), `t003@2:7` (interrupted in rung 2, continued from its checkpoint at epoch 7), `baseline`, `t010-s2`.
 */
export const reusedTrialLabel = (t: ReusedTrial): string =>
  `${t.trialId}${t.rung === undefined ? '' : `@${t.rung}`}${t.through === undefined ? '' : `:${t.through}`}`;

interface TrialResult {
  trialId: string;
  epochs: number;
  params: { epochs: number };
  valAuc: number | null;
  valPrAuc: number | null;
  valLogLoss: number | null;
  bestEpoch: number | null;
  stopReason?: string;
  model?: { modelJson: { bucket: string; key: string } };
  resumedFromEpoch: number;
  seconds: number;
}

/** Each trial's result at the highest rung among `results`, by trial id. */
export function lastRungs<R extends { rung: number; result: { trialId: string } }>(results: readonly R[]): R[] {
  const last = new Map<string, R>();
  for (const r of results) if ((last.get(r.result.trialId)?.rung ?? -1) < r.rung) last.set(r.result.trialId, r);
  return [...last.values()].sort((a, b) => a.result.trialId.localeCompare(b.result.trialId, 'en', { numeric: true }));
}

/** Each search trial's last reused rung, with its result there: the state its ml.trials row takes in the new run. */
export function lastReusedRungs(results: readonly { rung: number; result: TrialResult }[]): ReusedTrial[] {
  return lastRungs(results).map(({ rung, result: t }) => ({
      trialId: t.trialId,
      rung,
      result: {
        budget: t.params.epochs, epochs: t.epochs, valAuc: t.valAuc, valPrAuc: t.valPrAuc, valLogLoss: t.valLogLoss,
        bestEpoch: t.bestEpoch, stopReason: t.stopReason ?? null,
        model: t.model ? { bucket: t.model.modelJson.bucket, key: t.model.modelJson.key } : null, resumedFromEpoch: t.resumedFromEpoch, seconds: t.seconds,
      },
    }));
}

/**
 * The first step a resumed run executes, after the reused ones. Final training comes after the search (or reuses
 * the best trial's weights there), the ensemble step after it when the config builds one, then evaluate.
 */
export function firstExecutedStep(reused: readonly ReusableStep[], buildsEnsemble: boolean): string {
  const last = reused.at(-1);
  if (last === undefined) return REUSABLE_STEPS[0];
  if (last === 'ensemble' || (last === 'final' && !buildsEnsemble)) return 'evaluate';
  return REUSABLE_STEPS[REUSABLE_STEPS.indexOf(last) + 1];
}

const canonical = (v: unknown): string =>
  Array.isArray(v)
    ? `[${v.map(canonical).join(',')}]`
    : v && typeof v === 'object'
      ? `{${Object.keys(v)
          .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
          .sort()
          .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
          .join(',')}}`
      : JSON.stringify(v ?? null);

/**
 * The steps whose config sections a resumed run's reused outputs read: the reused steps, and the search's when it
 * takes trials one by one (search trials, the baseline and seed replicas all read the search and training sections).
 */
export const stepsRead = (steps: readonly ReusableStep[], trials: readonly unknown[]): ReusableStep[] =>
  trials.length && !steps.includes('search') ? [...steps, 'search'] : [...steps];

/** The top-level config sections whose values differ (key order aside), sorted. */
export function changedSections(before: Record<string, unknown>, after: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((k) => canonical(before[k]) !== canonical(after[k])).sort();
}

/** Each changed section a reused step reads, with the first reused step that reads it. */
export function upstreamChanges(reused: readonly ReusableStep[], changed: readonly string[]): { section: string; step: ReusableStep }[] {
  return changed.flatMap((section) => {
    const step = reused.find((s) => (STEP_SECTIONS[s] as readonly string[]).includes(section));
    return step ? [{ section, step }] : [];
  });
}

/** One line naming each upstream change, for the InputsChanged message. */
export const describeUpstreamChanges = (changes: { section: string; step: ReusableStep }[]): string =>
  changes.map((c) => `config section "${c.section}" changed but step ${c.step}, which reads it, would be reused`).join('; ');

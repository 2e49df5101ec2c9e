/**
 * How many seed replicas of the best trial an ensemble step trains (training.ensemble.seeds,
 * replicaBudgetSeconds). Imported by workflow code, so it must stay deterministic and dependency-free: its inputs
 * are the config and the best trial's recorded result, both in the workflow's history.
 */

export interface ReplicaPlanInput {
  /** training.ensemble.seeds: the best trial plus at most seeds - 1 replicas */
  seeds: number;
  /** training.ensemble.replicaBudgetSeconds: the wall time the replicas may add; absent: no limit */
  budgetSeconds?: number;
  /** replicas that train side by side (search.parallelism: the train pool's slots the run uses) */
  slots: number;
  /**
   * the best trial's result: `trainSeconds` its epochs took over every rung (absent in older results); else its
   * last attempt trained epochs resumedFromEpoch + 1 … epochs in `seconds`
   */
  best: { seconds: number; epochs: number; resumedFromEpoch: number; trainSeconds?: number; params: { epochs: number } };
}

export interface ReplicaPlan {
  /** replicas to train */
  count: number;
  /** replicas the seeds ask for (seeds - 1) */
  wanted: number;
  /**
   * a replica's expected wall time at most (the best trial's seconds per epoch × the epoch budget); absent without a
   * budget, or when the best trial's result does not tell (then none trains)
   */
  estimateSeconds?: number;
}

/**
 * The replicas that fit: all seeds - 1 without a budget; with one, as many waves of `slots` replicas as fit in it,
 * each expected to take the best trial's seconds per epoch (`trainSeconds` over its epochs; in results recorded
 * before it, its last attempt's) times the epoch budget a replica may use (`params.epochs`): early stopping may end
 * a replica sooner, never later, so the replicas stay within the budget. When a result does not tell — a promoted
 * trial that had stopped early trains no epoch in its last attempt — none trains. Deterministic.
 */
export function replicaPlan({ seeds, budgetSeconds, slots, best }: ReplicaPlanInput): ReplicaPlan {
  const wanted = Math.max(0, Math.floor(seeds) - 1);
  if (budgetSeconds === undefined || wanted === 0) return { count: wanted, wanted };
  const trained = best.epochs - best.resumedFromEpoch;
  const perEpoch =
    best.trainSeconds !== undefined && best.trainSeconds > 0 && best.epochs > 0
      ? best.trainSeconds / best.epochs
      : trained > 0 && best.seconds > 0
        ? best.seconds / trained
        : undefined;
  const estimate = perEpoch === undefined ? undefined : perEpoch * Math.max(best.epochs, best.params.epochs);
  if (estimate === undefined || !Number.isFinite(estimate)) return { count: 0, wanted };
  const waves = Math.floor(budgetSeconds / estimate);
  return { count: Math.min(wanted, waves * Math.max(1, Math.floor(slots))), wanted, estimateSeconds: estimate };
}

/**
 * Why a budget trained fewer replicas than the seeds asked for, for the stage line, e.g. "the 120 s replica budget
 * fits 3 of the 7 asked for, at about 31 s each"; empty when it trained them all.
 */
export function formatReplicaPlan(plan: ReplicaPlan, budgetSeconds: number | undefined): string {
  if (plan.count >= plan.wanted || budgetSeconds === undefined) return '';
  const fits = `the ${budgetSeconds} s replica budget fits ${plan.count === 0 ? 'none' : plan.count} of the ${plan.wanted} asked for`;
  if (plan.estimateSeconds === undefined) return `${fits}: the best trial's result does not say how long its training took`;
  const each = plan.estimateSeconds;
  return `${fits}, at about ${each < 10 ? each.toFixed(1) : Math.round(each)} s each`;
}

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
  /** the best trial's result: its last attempt trained epochs resumedFromEpoch + 1 … epochs in `seconds` */
  best: { seconds: number; epochs: number; resumedFromEpoch: number };
}

export interface ReplicaPlan {
  /** replicas to train */
  count: number;
  /** replicas the seeds ask for (seeds - 1) */
  wanted: number;
  /** a replica's expected wall time (the best trial's seconds per epoch × its epochs); absent without a budget */
  estimateSeconds?: number;
}

/**
 * The replicas that fit: all seeds - 1 without a budget; with one, as many waves of `slots` replicas as fit in it,
 * each expected to take as long as the best trial took to train from scratch (its seconds per epoch in its last
 * attempt times its epochs: a replica has the same parameters and budget). A best trial with no timing (0 epochs
 * trained in its last attempt) counts as free. Deterministic.
 */
export function replicaPlan({ seeds, budgetSeconds, slots, best }: ReplicaPlanInput): ReplicaPlan {
  const wanted = Math.max(0, Math.floor(seeds) - 1);
  if (budgetSeconds === undefined || wanted === 0) return { count: wanted, wanted };
  const trained = best.epochs - best.resumedFromEpoch;
  const estimateSeconds = trained > 0 && best.seconds > 0 ? (best.seconds / trained) * best.epochs : 0;
  const waves = estimateSeconds > 0 ? Math.floor(budgetSeconds / estimateSeconds) : Infinity;
  return { count: Math.min(wanted, waves * Math.max(1, Math.floor(slots))), wanted, estimateSeconds };
}

/**
 * Why a budget trained fewer replicas than the seeds asked for, for the stage line, e.g. "the 120 s replica budget
 * fits 3 of the 7 asked for, at about 31 s each"; empty when it trained them all.
 */
export function formatReplicaPlan(plan: ReplicaPlan, budgetSeconds: number | undefined): string {
  if (plan.count >= plan.wanted || budgetSeconds === undefined) return '';
  return `the ${budgetSeconds} s replica budget fits ${plan.count === 0 ? 'none' : plan.count} of the ${plan.wanted} asked for, at about ${Math.round(plan.estimateSeconds ?? 0)} s each`;
}

/**
 * An ensemble's gain over the single model on validation, with its noise: a file of its own, free of tfjs, because the
 * pipeline workflow formats it into its records (ml/ensemble.ts selects and builds ensembles).
 */
import { DELONG_MIN_PER_CLASS, delongPairedTest, formatAucDiff, formatPValue } from './delong.js';

/** At or above this p, a gain is reported as within the noise (two-sided paired DeLong test). */
export const NOISE_ALPHA = 0.05;

/**
 * How much the ensemble's ROC-AUC exceeds the single model's on the same rows (whatever the selection metric), with
 * the paired DeLong standard error of that difference. On validation the members were chosen on those rows, so
 * `diff` is optimistic; the ensemble contains the single model, a nested comparison for which DeLong's test is
 * conservative. `withinNoise` (p >= NOISE_ALPHA) says the gain is not told apart from zero: such an ensemble is kept
 * for its expected variance reduction, not for a measured gain.
 */
export interface EnsembleGain {
  /** the single model it is compared with (the first candidate) */
  over: string;
  diff: number;
  se: number;
  p: number;
  withinNoise: boolean;
}

/**
 * The paired DeLong comparison of an ensemble's predictions with the single model's; undefined when the rows hold
 * fewer than two positives or two negatives, where the test is not defined (a diagnostic never fails a run).
 */
export function ensembleGain(y: ArrayLike<number>, ensemble: ArrayLike<number>, single: { id: string; val: ArrayLike<number> }): EnsembleGain | undefined {
  let positives = 0;
  for (let i = 0; i < y.length; i++) positives += y[i] === 1 ? 1 : 0;
  if (positives < DELONG_MIN_PER_CLASS || y.length - positives < DELONG_MIN_PER_CLASS) return undefined;
  const t = delongPairedTest(y, ensemble, single.val);
  return { over: single.id, diff: t.diff, se: t.se, p: t.pValue, withinNoise: !(t.pValue < NOISE_ALPHA) };
}

/** "+0.0003 over t010 (SE 0.0008, p 0.73: within the noise)": how a run's records say it. */
export function formatEnsembleGain(g: EnsembleGain): string {
  return `${formatAucDiff(g.diff)} over ${g.over} (SE ${g.se.toFixed(4)}, p ${formatPValue(g.p, NOISE_ALPHA)}${g.withinNoise ? ': within the noise' : ''})`;
}

/**
 * An ensemble's gain over the single model on validation, with its noise: a file of its own, free of tfjs, because the
 * pipeline workflow formats it into its records (ml/ensemble.ts selects and builds ensembles).
 */
import { delongPairedTest } from './delong.js';

/**
 * How much the ensemble beats the single model on the validation rows, in ROC-AUC whatever the selection metric, with
 * the paired DeLong standard error of that difference. The members were chosen on these rows, so `diff` is optimistic;
 * `withinNoise` (p >= 0.05) says that even so it is not told apart from zero, and whoever reads the run should know
 * the ensemble was kept for its expected variance reduction, not for a measured gain.
 */
export interface EnsembleGain {
  /** the single model it is compared with (the first candidate) */
  over: string;
  diff: number;
  se: number;
  p: number;
  withinNoise: boolean;
}

/** The paired DeLong comparison of an ensemble's validation predictions with the single model's. */
export function ensembleGain(y: ArrayLike<number>, ensemble: Float32Array, single: { id: string; val: Float32Array }): EnsembleGain {
  const t = delongPairedTest(y, ensemble, single.val);
  return { over: single.id, diff: t.diff, se: t.se, p: t.pValue, withinNoise: !(t.pValue < 0.05) };
}

/** "+0.0004 over t010 (SE 0.0006, p 0.52: within the noise)": how a run's records say it. */
export function formatEnsembleGain(g: EnsembleGain): string {
  const sign = g.diff >= 0 ? '+' : '−';
  return `${sign}${Math.abs(g.diff).toFixed(4)} over ${g.over} (SE ${g.se.toFixed(4)}, p ${g.p < 0.001 ? '< 0.001' : g.p.toFixed(2)}${g.withinNoise ? ': within the noise' : ''})`;
}

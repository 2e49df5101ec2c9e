/**
 * One difference pooled over independent data sets: the mean of per-set differences (each with its own standard
 * error, e.g. a paired DeLong test of two models on one data set's test rows) and the standard error of that mean.
 * The data sets share no rows, so their differences are independent and Var(mean) = Σ se_i² / n².
 *
 * This is what "ours minus theirs, averaged over the data sets" means as a statistic: the mean alone says nothing
 * until its interval says whether zero is inside it.
 */
import { MlError, ML_ERROR } from './errors.js';
import { twoSidedNormalP, Z_975 } from './delong.js';

export interface SetDifference {
  /** the data set, for error messages and reports */
  name: string;
  diff: number;
  /** standard error of diff (> 0, or 0 when the two models ranked the rows identically) */
  se: number;
}

export interface PooledDifference {
  sets: number;
  /** mean of the per-set differences (each set weighs the same, whatever its size) */
  mean: number;
  /** sqrt(Σ se_i²) / n */
  se: number;
  /** mean ± Φ⁻¹(0.975)·se */
  ci95: [lo: number, hi: number];
  z: number;
  /** two-sided p-value of mean = 0 */
  pValue: number;
  /** zero lies inside the 95 % interval: the data do not tell the sign of the mean */
  withinNoise: boolean;
}

/** Pools per-set differences into their mean with its standard error, 95 % interval and two-sided p-value. */
export function poolDifferences(items: readonly SetDifference[]): PooledDifference {
  if (items.length === 0) throw new MlError(ML_ERROR.InvalidData, 'poolDifferences: no data sets to pool; give at least one difference');
  for (const it of items) {
    if (!Number.isFinite(it.diff)) throw new MlError(ML_ERROR.InvalidData, `poolDifferences: data set "${it.name}" has a non-finite difference (${it.diff})`);
    if (!(Number.isFinite(it.se) && it.se >= 0)) {
      throw new MlError(ML_ERROR.InvalidData, `poolDifferences: data set "${it.name}" has standard error ${it.se}; expected a finite number >= 0`);
    }
  }
  const n = items.length;
  const mean = items.reduce((a, it) => a + it.diff, 0) / n;
  const se = Math.sqrt(items.reduce((a, it) => a + it.se * it.se, 0)) / n;
  const z = se > 0 ? mean / se : mean === 0 ? 0 : Math.sign(mean) * Infinity;
  const pValue = twoSidedNormalP(z);
  const ci95: [number, number] = [mean - Z_975 * se, mean + Z_975 * se];
  return { sets: n, mean, se, ci95, z, pValue, withinNoise: ci95[0] <= 0 && ci95[1] >= 0 };
}

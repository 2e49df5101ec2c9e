/**
 * DeLong's method for the variance of ROC AUC and the paired comparison of two models scored on the same rows,
 * using the O(n log n) midrank algorithm of Sun & Xu (2014), "Fast Implementation of DeLong's Algorithm for
 * Comparing the Areas Under Correlated Receiver Operating Characteristic Curves", IEEE SPL 21(11).
 *
 * With m positives X and n negatives Y, midranks T_X (within positives), T_Y (within negatives) and T_Z (within all
 * rows), the structural components are
 *   V10_i = (T_Z(x_i) − T_X(x_i)) / n        (share of negatives a positive beats, ties counting half)
 *   V01_j = 1 − (T_Z(y_j) − T_Y(y_j)) / m    (share of positives that beat a negative)
 * AUC = mean(V10) = mean(V01), and Cov(AUC_a, AUC_b) = S10_ab / m + S01_ab / n with S the sample covariances
 * (denominator m − 1, n − 1) of the components. Ties are handled exactly (AUC equals the Mann–Whitney / sklearn value).
 */
import { MlError, ML_ERROR } from './errors.js';

export interface DelongAuc {
  auc: number;
  variance: number;
}

export interface DelongPairedTest {
  aucA: number;
  aucB: number;
  /** aucA − aucB */
  diff: number;
  /** standard error of diff: sqrt(Var A + Var B − 2 Cov AB) */
  se: number;
  /** diff / se; 0 when diff = se = 0 (identical rankings), ±Infinity when se = 0 but diff ≠ 0 */
  z: number;
  /** two-sided p-value, 2·(1 − Φ(|z|)) */
  pValue: number;
}

/** Two-sided 95% normal quantile, Φ⁻¹(0.975). */
export const Z_975 = 1.959963984540054;

/** 1-based midranks of values (average rank for ties), like scipy.stats.rankdata(method='average'). */
export function midranks(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => values[a] - values[b]);
  const ranks = new Float64Array(n);
  for (let i = 0; i < n; ) {
    let j = i;
    while (j < n && values[order[j]] === values[order[i]]) j++;
    const r = (i + j + 1) / 2; // mean of 1-based positions i+1 .. j
    for (let k = i; k < j; k++) ranks[order[k]] = r;
    i = j;
  }
  return ranks;
}

interface Components {
  auc: number;
  /** per positive, per negative */
  v10: Float64Array;
  v01: Float64Array;
}

/** DeLong's variance needs at least this many rows of each class. */
export const DELONG_MIN_PER_CLASS = 2;

function classIndices(labels: ArrayLike<number>, scoreSets: ArrayLike<number>[], what: string): { pos: Uint32Array; neg: Uint32Array } {
  for (const s of scoreSets) {
    if (s.length !== labels.length) {
      throw new MlError(ML_ERROR.InvalidData, `${what}: ${labels.length} labels but ${s.length} scores`);
    }
  }
  if (labels.length === 0) throw new MlError(ML_ERROR.EmptyDataset, `${what}: no rows`);
  let m = 0;
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (y !== 0 && y !== 1) throw new MlError(ML_ERROR.InvalidData, `${what}: label at row ${i} is ${y}, expected 0 or 1`);
    for (const s of scoreSets) {
      if (!Number.isFinite(s[i])) throw new MlError(ML_ERROR.InvalidData, `${what}: score at row ${i} is ${s[i]}`);
    }
    m += y;
  }
  const n = labels.length - m;
  if (m === 0 || n === 0) {
    throw new MlError(ML_ERROR.SingleClassLabel, `${what} is undefined when only one class is present (${m} positives, ${n} negatives)`);
  }
  if (m < DELONG_MIN_PER_CLASS || n < DELONG_MIN_PER_CLASS) {
    throw new MlError(ML_ERROR.InvalidData, `${what} needs at least ${DELONG_MIN_PER_CLASS} positives and ${DELONG_MIN_PER_CLASS} negatives for a variance (${m} positives, ${n} negatives)`);
  }
  const pos = new Uint32Array(m);
  const neg = new Uint32Array(n);
  let a = 0;
  let b = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === 1) pos[a++] = i;
    else neg[b++] = i;
  }
  return { pos, neg };
}

function components(scores: ArrayLike<number>, pos: Uint32Array, neg: Uint32Array): Components {
  const m = pos.length;
  const n = neg.length;
  const x = new Float64Array(m);
  const y = new Float64Array(n);
  const z = new Float64Array(m + n);
  for (let i = 0; i < m; i++) z[i] = x[i] = scores[pos[i]];
  for (let j = 0; j < n; j++) z[m + j] = y[j] = scores[neg[j]];
  const tx = midranks(x);
  const ty = midranks(y);
  const tz = midranks(z);
  const v10 = new Float64Array(m);
  const v01 = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < m; i++) {
    v10[i] = (tz[i] - tx[i]) / n;
    sum += tz[i];
  }
  for (let j = 0; j < n; j++) v01[j] = 1 - (tz[m + j] - ty[j]) / m;
  return { auc: sum / (m * n) - (m + 1) / (2 * n), v10, v01 };
}

/** Sample covariance (denominator len − 1). */
function cov(a: Float64Array, b: Float64Array): number {
  const len = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < len; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= len;
  mb /= len;
  let s = 0;
  for (let i = 0; i < len; i++) s += (a[i] - ma) * (b[i] - mb);
  return s / (len - 1);
}

const covAuc = (a: Components, b: Components): number => cov(a.v10, b.v10) / a.v10.length + cov(a.v01, b.v01) / a.v01.length;

/**
 * ROC AUC and its DeLong variance. Throws SingleClassLabel with one class and InvalidData with fewer than 2 rows of
 * either class (the sample covariance is undefined).
 */
export function delongAuc(labels: ArrayLike<number>, scores: ArrayLike<number>): DelongAuc {
  const { pos, neg } = classIndices(labels, [scores], 'DeLong AUC');
  const c = components(scores, pos, neg);
  return { auc: c.auc, variance: Math.max(0, covAuc(c, c)) };
}

/** DeLong 95% CI for AUC: auc ± z·sqrt(variance), clipped to [0, 1] (as pROC does by default). */
export function delongAucCi(labels: ArrayLike<number>, scores: ArrayLike<number>): [number, number] {
  const { auc, variance } = delongAuc(labels, scores);
  const half = Z_975 * Math.sqrt(variance);
  return [Math.max(0, auc - half), Math.min(1, auc + half)];
}

/**
 * Paired DeLong test of H0: AUC_A = AUC_B for two models scored on the SAME rows (correlated ROC curves).
 * Two-sided p-value from the normal distribution. Identical rankings give z = 0, p = 1.
 */
export function delongPairedTest(labels: ArrayLike<number>, scoresA: ArrayLike<number>, scoresB: ArrayLike<number>): DelongPairedTest {
  const { pos, neg } = classIndices(labels, [scoresA, scoresB], 'DeLong paired test');
  const a = components(scoresA, pos, neg);
  const b = components(scoresB, pos, neg);
  const diff = a.auc - b.auc;
  const varDiff = Math.max(0, covAuc(a, a) + covAuc(b, b) - 2 * covAuc(a, b));
  const se = Math.sqrt(varDiff);
  // Rankings that agree on every positive/negative pair have identical components, hence exactly 0 diff and 0 se.
  const z = se === 0 ? (diff === 0 ? 0 : diff > 0 ? Infinity : -Infinity) : diff / se;
  return { aucA: a.auc, aucB: b.auc, diff, se, z, pValue: twoSidedNormalP(z) };
}

/** 2·(1 − Φ(|z|)) = erfc(|z| / √2), accurate to ~1e-15 absolute. */
export function twoSidedNormalP(z: number): number {
  if (Number.isNaN(z)) return NaN;
  return Math.min(1, erfc(Math.abs(z) / Math.SQRT2));
}

/**
 * A p-value as records print it: two significant digits ("0.73", "0.018", "0.40"), "< 0.001" below that, "n/a"
 * when there is none. Where two digits would round across `alpha` (0.0499 as "0.050" against 0.05), more are shown
 * until the text is on the same side of alpha as the value, so a printed p never contradicts the decision taken on it.
 * One formatter for the gate's details, the model card, the ensemble-gain line and the accuracy bench.
 */
export function formatPValue(p: number | null | undefined, alpha = 0.05): string {
  if (typeof p !== 'number' || !Number.isFinite(p)) return 'n/a';
  if (p < 0.001 && alpha >= 0.001) return '< 0.001';
  let text = p.toPrecision(2);
  for (let digits = 3; digits <= 16 && Number(text) < alpha !== p < alpha; digits++) text = p.toPrecision(digits);
  return text;
}

/** A difference of two AUCs as the records print it: sign always shown, four decimals ("+0.0006", "-0.0018"). */
export const formatAucDiff = (diff: number): string => `${diff >= 0 ? '+' : ''}${diff.toFixed(4)}`;

/** Upper-tail standard normal probability 1 − Φ(z). */
export function normalSf(z: number): number {
  return z >= 0 ? erfc(z / Math.SQRT2) / 2 : 1 - erfc(-z / Math.SQRT2) / 2;
}

/**
 * Complementary error function for x ≥ 0: the all-positive series
 *   erf(x) = (2/√π) e^{−x²} Σ_k 2^k x^{2k+1} / (1·3·…·(2k+1))
 * below 2.5 (no cancellation), and the Laplace continued fraction (modified Lentz) above.
 */
function erfc(x: number): number {
  if (x === Infinity) return 0;
  if (x < 2.5) {
    let term = x;
    let sum = x;
    for (let k = 1; k < 200; k++) {
      term *= (2 * x * x) / (2 * k + 1);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
  }
  // erfc(x) = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let k = 1; k < 500; k++) {
    const a = k / 2;
    d = x + a * d;
    d = d === 0 ? tiny : 1 / d;
    c = x + a / c;
    if (c === 0) c = tiny;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

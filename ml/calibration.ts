/**
 * Calibration of predicted probabilities: reliability-curve points and expected calibration error (ECE).
 *
 * Binning follows scikit-learn's `calibration_curve(y, p, n_bins, strategy='uniform')` exactly: edges are
 * `numpy.linspace(0, 1, nBins + 1)` and a probability goes to bin `searchsorted(edges[1:-1], p)` (side 'left'), so
 * bin 0 is [0, e1] and bin b > 0 is (e_b, e_{b+1}]: a probability lying exactly on an inner edge belongs to the lower bin.
 * Empty bins are left out of the curve, as sklearn does.
 *
 * ECE (scikit-learn has no ECE function; this is the usual definition on sklearn's bins):
 *   ECE = Σ_b (n_b / N) · |meanPredicted_b − observedRate_b|
 * i.e. `sum(bin_total * |prob_true - prob_pred|) / N` over calibration_curve's non-empty bins.
 */
import { lowerBound } from './sorted.js';
import { MlError, ML_ERROR } from './errors.js';

export const DEFAULT_CALIBRATION_BINS = 10;

export interface ReliabilityPoint {
  /** 0-based bin index */
  bin: number;
  /** bin edges: the bin holds probabilities in (lower, upper] ([0, upper] for bin 0) */
  lower: number;
  upper: number;
  /** mean predicted probability of the rows in the bin (sklearn's prob_pred) */
  meanPredicted: number;
  /** share of positive labels in the bin (sklearn's prob_true) */
  observedRate: number;
  count: number;
}

/** numpy.linspace(0, 1, nBins + 1), bit for bit (i * step, last edge exactly 1). */
export function uniformBinEdges(nBins: number): number[] {
  if (!Number.isInteger(nBins) || nBins < 1) {
    throw new MlError(ML_ERROR.InvalidConfig, `calibration needs an integer number of bins >= 1, got ${nBins}`);
  }
  const step = 1 / nBins;
  const edges = Array.from({ length: nBins + 1 }, (_, i) => i * step);
  edges[nBins] = 1;
  return edges;
}

function checkProbs(labels: ArrayLike<number>, probs: ArrayLike<number>, what: string): void {
  if (labels.length !== probs.length) {
    throw new MlError(ML_ERROR.InvalidData, `${what}: ${labels.length} labels but ${probs.length} probabilities`);
  }
  if (labels.length === 0) throw new MlError(ML_ERROR.EmptyDataset, `${what}: no rows`);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (y !== 0 && y !== 1) throw new MlError(ML_ERROR.InvalidData, `${what}: label at row ${i} is ${y}, expected 0 or 1`);
    const p = probs[i];
    if (!(p >= 0 && p <= 1)) {
      throw new MlError(ML_ERROR.InvalidData, `${what}: probability at row ${i} is ${p}, expected a number in [0, 1]`);
    }
  }
}

/** Bin index of p given the inner edges (sklearn searchsorted side='left': the number of inner edges < p). */
const binOf = (p: number, inner: readonly number[]): number => lowerBound(inner, p);

/** Reliability-curve points (non-empty bins only, in increasing probability), for a calibration plot. */
export function reliabilityCurve(
  labels: ArrayLike<number>,
  probs: ArrayLike<number>,
  nBins: number = DEFAULT_CALIBRATION_BINS,
): ReliabilityPoint[] {
  const edges = uniformBinEdges(nBins);
  checkProbs(labels, probs, 'reliability curve');
  const inner = edges.slice(1, -1);
  const sums = new Float64Array(nBins);
  const trues = new Float64Array(nBins);
  const counts = new Float64Array(nBins);
  for (let i = 0; i < labels.length; i++) {
    const b = binOf(probs[i], inner);
    sums[b] += probs[i];
    trues[b] += labels[i];
    counts[b]++;
  }
  const points: ReliabilityPoint[] = [];
  for (let b = 0; b < nBins; b++) {
    if (counts[b] === 0) continue;
    points.push({
      bin: b,
      lower: edges[b],
      upper: edges[b + 1],
      meanPredicted: sums[b] / counts[b],
      observedRate: trues[b] / counts[b],
      count: counts[b],
    });
  }
  return points;
}

/** Expected calibration error on equal-width bins (default 10); defined for one-class labels too. */
export function expectedCalibrationError(
  labels: ArrayLike<number>,
  probs: ArrayLike<number>,
  nBins: number = DEFAULT_CALIBRATION_BINS,
): number {
  return eceFromCurve(reliabilityCurve(labels, probs, nBins), labels.length);
}

/** ECE from already computed reliability points over `rows` rows. */
export function eceFromCurve(points: readonly ReliabilityPoint[], rows: number): number {
  let sum = 0;
  for (const pt of points) sum += pt.count * Math.abs(pt.meanPredicted - pt.observedRate);
  return sum / rows;
}

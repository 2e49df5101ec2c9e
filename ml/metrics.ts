/** Binary-classification metrics, numerically equal to scikit-learn's on the same inputs. */
import { MlError, ML_ERROR } from './errors.js';

type Labels = ArrayLike<number>;
type Scores = ArrayLike<number>;

function check(labels: Labels, scores: Scores, what: string): { pos: number; neg: number } {
  if (labels.length !== scores.length) {
    throw new MlError(ML_ERROR.InvalidData, `${what}: ${labels.length} labels but ${scores.length} scores`);
  }
  if (labels.length === 0) throw new MlError(ML_ERROR.EmptyDataset, `${what}: no rows`);
  let pos = 0;
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (y !== 0 && y !== 1) throw new MlError(ML_ERROR.InvalidData, `${what}: label at row ${i} is ${y}, expected 0 or 1`);
    if (!Number.isFinite(scores[i])) throw new MlError(ML_ERROR.InvalidData, `${what}: score at row ${i} is ${scores[i]}`);
    pos += y;
  }
  return { pos, neg: labels.length - pos };
}

function requireBothClasses(pos: number, neg: number, what: string): void {
  if (pos === 0 || neg === 0) {
    throw new MlError(
      ML_ERROR.SingleClassLabel,
      `${what} is undefined when only one class is present (${pos} positives, ${neg} negatives in ${pos + neg} rows)`,
    );
  }
}

/** Row indices sorted by score descending (stable). */
function orderDesc(scores: Scores): Uint32Array {
  const idx = new Uint32Array(scores.length);
  for (let i = 0; i < idx.length; i++) idx[i] = i;
  return idx.sort((a, b) => scores[b] - scores[a] || a - b);
}

/** ROC AUC via the Mann–Whitney statistic with midranks for ties (= sklearn roc_auc_score). */
export function rocAuc(labels: Labels, scores: Scores): number {
  const { pos, neg } = check(labels, scores, 'ROC AUC');
  requireBothClasses(pos, neg, 'ROC AUC');
  const idx = orderDesc(scores);
  // Walk tie groups from the top: each positive beats every negative below it and half-beats tied negatives.
  let negBelowOrTied = neg;
  let wins = 0;
  for (let i = 0; i < idx.length; ) {
    let j = i;
    let p = 0;
    let n = 0;
    while (j < idx.length && scores[idx[j]] === scores[idx[i]]) {
      if (labels[idx[j]] === 1) p++;
      else n++;
      j++;
    }
    negBelowOrTied -= n;
    wins += p * (negBelowOrTied + n / 2);
    i = j;
  }
  return wins / (pos * neg);
}

/** Average precision, step-wise with tied scores grouped into one threshold (= sklearn average_precision_score). */
export function prAuc(labels: Labels, scores: Scores): number {
  const { pos, neg } = check(labels, scores, 'average precision');
  requireBothClasses(pos, neg, 'average precision');
  const idx = orderDesc(scores);
  let tp = 0;
  let fp = 0;
  let ap = 0;
  let prevRecall = 0;
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j < idx.length && scores[idx[j]] === scores[idx[i]]) {
      if (labels[idx[j]] === 1) tp++;
      else fp++;
      j++;
    }
    const recall = tp / pos;
    ap += (recall - prevRecall) * (tp / (tp + fp));
    prevRecall = recall;
    i = j;
  }
  return ap;
}

// scikit-learn >= 1.5 clips at the float64 machine epsilon (older releases used 1e-15).
const LOG_LOSS_EPS = Number.EPSILON;

/** Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps] (= sklearn log_loss). Defined for one class too. */
export function logLoss(labels: Labels, probs: Scores): number {
  check(labels, probs, 'log loss');
  let sum = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = Math.min(Math.max(probs[i], LOG_LOSS_EPS), 1 - LOG_LOSS_EPS);
    sum -= labels[i] === 1 ? Math.log(p) : Math.log(1 - p);
  }
  return sum / labels.length;
}

/** Brier score: mean squared error of the probabilities. */
export function brier(labels: Labels, probs: Scores): number {
  check(labels, probs, 'Brier score');
  let sum = 0;
  for (let i = 0; i < labels.length; i++) sum += (probs[i] - labels[i]) ** 2;
  return sum / labels.length;
}

export interface BinaryMetrics {
  rows: number;
  positives: number;
  positiveRate: number;
  auc: number;
  prAuc: number;
  logLoss: number;
  brier: number;
}

/** All metrics at once, for evaluation reports. Throws SingleClassLabel if only one class is present. */
export function binaryMetrics(labels: Labels, probs: Scores): BinaryMetrics {
  const { pos } = check(labels, probs, 'metrics');
  return {
    rows: labels.length,
    positives: pos,
    positiveRate: pos / labels.length,
    auc: rocAuc(labels, probs),
    prAuc: prAuc(labels, probs),
    logLoss: logLoss(labels, probs),
    brier: brier(labels, probs),
  };
}

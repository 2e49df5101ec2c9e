/**
 * Held-out evaluation of a binary propensity model: point metrics, bootstrap and DeLong confidence intervals, a lift
 * table, downsampled ROC/PR/reliability curves and per-segment metrics, as one JSON-serializable report.
 *
 * Pure: arrays in, plain objects out (no tfjs, no I/O). The scores are sorted once; ROC AUC, average precision, the
 * curves, the max-F1 threshold and every bootstrap replicate are computed from the distinct-score groups of that one
 * sort (a replicate only re-weights the groups), so the bootstrap costs O(B·n) after the O(n log n) sort.
 */
import { eceFromCurve, reliabilityCurve, type ReliabilityPoint } from './calibration.js';
import { delongAuc, Z_975 } from './delong.js';
import { MlError, ML_ERROR } from './errors.js';
import { brier, logLoss, prAuc, rocAuc } from './metrics.js';
import { createRng } from './random.js';

export interface BootstrapOptions {
  /** number of replicates (default 200) */
  samples: number;
  seed: number;
}

export interface EvaluateOptions {
  /**
   * Decision threshold for F1/precision/recall: a row is predicted positive when prob >= threshold (default 0.5).
   * 'maxF1' picks the score maximizing F1 on THESE rows: use it on validation data, then pass the resulting
   * `metrics.threshold` as a number when evaluating the test split.
   */
  threshold?: number | 'maxF1';
  /** segment name → per-row value (null = missing, reported under SEGMENT_NULL_KEY) */
  segments?: Record<string, ArrayLike<string | null>>;
  /** stratified percentile bootstrap for ci95.rocAuc / ci95.prAuc; default { samples: 200, seed: 0 }; false to skip */
  bootstrap?: BootstrapOptions | false;
  /** at most this many points per ROC/PR curve (default 101, minimum 2) */
  curvePoints?: number;
}

export interface EvaluationMetrics {
  rocAuc: number;
  prAuc: number;
  logLoss: number;
  brier: number;
  /** expected calibration error, 10 equal-width bins (see calibration.ts) */
  ece: number;
  /** the threshold F1/precision/recall were computed at (the chosen one when 'maxF1') */
  threshold: number;
  f1: number;
  precision: number;
  recall: number;
  /** share of positive labels (base rate) */
  positiveRate: number;
  /** share of rows predicted positive at the threshold */
  predictedPositiveRate: number;
  rows: number;
  positives: number;
}

export interface DecileRow {
  /** 1 = highest scores */
  decile: number;
  rows: number;
  positives: number;
  rate: number;
  /** rate / overall positive rate */
  lift: number;
  /** share of all positives in deciles 1..decile */
  cumulativeCapture: number;
}

export interface SegmentMetrics {
  rows: number;
  positives: number;
  /** null when the segment has one class (or fewer than 2 rows) */
  rocAuc: number | null;
  prAuc: number | null;
  logLoss: number;
  brier: number;
}

export interface EvaluationReport {
  metrics: EvaluationMetrics;
  ci95: {
    /** stratified percentile bootstrap; null when the bootstrap is off */
    rocAuc: [number, number] | null;
    prAuc: [number, number] | null;
    /** DeLong analytic CI, auc ± 1.96·se clipped to [0, 1]; null with fewer than 2 rows of a class */
    rocAucDeLong: [number, number] | null;
  };
  bootstrap: BootstrapOptions | null;
  deciles: DecileRow[];
  curves: {
    /** [fpr, tpr] from (0, 0) to (1, 1), one point per distinct score before downsampling (= sklearn roc_curve drop_intermediate=False) */
    roc: [number, number][];
    /** [recall, precision] from (0, 1) then one point per distinct score, highest first (= sklearn precision_recall_curve reversed) */
    pr: [number, number][];
    calibration: ReliabilityPoint[];
  };
  segments: Record<string, Record<string, SegmentMetrics>>;
}

export const DEFAULT_THRESHOLD = 0.5;
export const DEFAULT_BOOTSTRAP: Readonly<BootstrapOptions> = Object.freeze({ samples: 200, seed: 0 });
export const DEFAULT_CURVE_POINTS = 101;
export const SEGMENT_NULL_KEY = '(null)';

/**
 * Distinct scores in descending order with per-group class counts; each row's group index.
 * This is the one sort every rank metric below reuses.
 */
export interface ScoreGroups {
  /** distinct scores, descending */
  scores: Float64Array;
  pos: Float64Array;
  neg: Float64Array;
  /** group index of each row */
  groupOf: Uint32Array;
  /** row indices by descending score, ties by row index */
  order: Uint32Array;
}

export function scoreGroups(labels: ArrayLike<number>, scores: ArrayLike<number>): ScoreGroups {
  const n = scores.length;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => scores[b] - scores[a] || a - b);
  const groupOf = new Uint32Array(n);
  const distinct: number[] = [];
  const pos: number[] = [];
  const neg: number[] = [];
  for (let r = 0; r < n; r++) {
    const i = order[r];
    if (r === 0 || scores[i] !== distinct[distinct.length - 1]) {
      distinct.push(scores[i]);
      pos.push(0);
      neg.push(0);
    }
    const g = distinct.length - 1;
    groupOf[i] = g;
    if (labels[i] === 1) pos[g]++;
    else neg[g]++;
  }
  return { scores: Float64Array.from(distinct), pos: Float64Array.from(pos), neg: Float64Array.from(neg), groupOf, order };
}

/** ROC AUC from (weighted) group counts, ties counting half (Mann–Whitney). */
export function groupedRocAuc(pos: ArrayLike<number>, neg: ArrayLike<number>): number {
  let totalPos = 0;
  let totalNeg = 0;
  for (let g = 0; g < pos.length; g++) {
    totalPos += pos[g];
    totalNeg += neg[g];
  }
  let negBelowOrTied = totalNeg;
  let wins = 0;
  for (let g = 0; g < pos.length; g++) {
    negBelowOrTied -= neg[g];
    wins += pos[g] * (negBelowOrTied + neg[g] / 2);
  }
  return wins / (totalPos * totalNeg);
}

/** Average precision (sklearn's step-wise sum) from (weighted) group counts; empty groups are skipped. */
export function groupedAveragePrecision(pos: ArrayLike<number>, neg: ArrayLike<number>): number {
  let totalPos = 0;
  for (let g = 0; g < pos.length; g++) totalPos += pos[g];
  let tp = 0;
  let fp = 0;
  let ap = 0;
  let prevRecall = 0;
  for (let g = 0; g < pos.length; g++) {
    if (pos[g] === 0 && neg[g] === 0) continue;
    tp += pos[g];
    fp += neg[g];
    const recall = tp / totalPos;
    ap += (recall - prevRecall) * (tp / (tp + fp));
    prevRecall = recall;
  }
  return ap;
}

/** numpy.percentile(values, q) with the default 'linear' interpolation; sorts `values` in place. */
export function percentileLinear(values: Float64Array, q: number): number {
  values.sort();
  const h = (values.length - 1) * (q / 100);
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, values.length - 1);
  return values[lo] + (h - lo) * (values[hi] - values[lo]);
}

/** Indices 0..len-1 downsampled to at most max, evenly spaced, first and last kept. */
function downsample<T>(points: T[], max: number): T[] {
  if (points.length <= max) return points;
  const out: T[] = [];
  for (let k = 0; k < max; k++) out.push(points[Math.round((k * (points.length - 1)) / (max - 1))]);
  return out;
}

function validate(labels: ArrayLike<number>, probs: ArrayLike<number>): number {
  if (labels.length !== probs.length) {
    throw new MlError(ML_ERROR.InvalidData, `evaluation: ${labels.length} labels but ${probs.length} probabilities`);
  }
  if (labels.length === 0) throw new MlError(ML_ERROR.EmptyDataset, 'evaluation: no rows');
  let pos = 0;
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (y !== 0 && y !== 1) throw new MlError(ML_ERROR.InvalidData, `evaluation: label at row ${i} is ${y}, expected 0 or 1`);
    const p = probs[i];
    if (!(p >= 0 && p <= 1)) {
      throw new MlError(ML_ERROR.InvalidData, `evaluation: probability at row ${i} is ${p}, expected a number in [0, 1]`);
    }
    pos += y;
  }
  const neg = labels.length - pos;
  if (pos === 0 || neg === 0) {
    throw new MlError(
      ML_ERROR.SingleClassLabel,
      `evaluation needs both classes (${pos} positives, ${neg} negatives in ${labels.length} rows)`,
    );
  }
  return pos;
}

function validateOptions(opts: EvaluateOptions, rows: number): void {
  const t = opts.threshold;
  if (t !== undefined && t !== 'maxF1' && !(typeof t === 'number' && Number.isFinite(t))) {
    throw new MlError(ML_ERROR.InvalidConfig, `evaluation threshold must be a finite number or 'maxF1', got ${String(t)}`);
  }
  const b = opts.bootstrap;
  if (b) {
    if (!Number.isInteger(b.samples) || b.samples < 1) {
      throw new MlError(ML_ERROR.InvalidConfig, `bootstrap samples must be an integer >= 1, got ${b.samples}`);
    }
    if (!Number.isFinite(b.seed)) throw new MlError(ML_ERROR.InvalidConfig, `bootstrap seed must be a finite number, got ${b.seed}`);
  }
  const cp = opts.curvePoints;
  if (cp !== undefined && (!Number.isInteger(cp) || cp < 2)) {
    throw new MlError(ML_ERROR.InvalidConfig, `curvePoints must be an integer >= 2, got ${cp}`);
  }
  for (const [name, values] of Object.entries(opts.segments ?? {})) {
    if (values.length !== rows) {
      throw new MlError(ML_ERROR.InvalidData, `segment '${name}' has ${values.length} values for ${rows} rows`);
    }
  }
}

/** The threshold (a distinct score) maximizing F1 = 2TP / (2TP + FP + FN); the highest such score on ties. */
export function maxF1Threshold(groups: ScoreGroups): number {
  let totalPos = 0;
  for (let g = 0; g < groups.pos.length; g++) totalPos += groups.pos[g];
  let tp = 0;
  let fp = 0;
  let best = -1;
  let bestThreshold = groups.scores[0];
  for (let g = 0; g < groups.scores.length; g++) {
    tp += groups.pos[g];
    fp += groups.neg[g];
    const f1 = (2 * tp) / (tp + fp + totalPos);
    if (f1 > best) {
      best = f1;
      bestThreshold = groups.scores[g];
    }
  }
  return bestThreshold;
}

function atThreshold(labels: ArrayLike<number>, probs: ArrayLike<number>, threshold: number, positives: number) {
  let tp = 0;
  let predicted = 0;
  for (let i = 0; i < labels.length; i++) {
    if (probs[i] >= threshold) {
      predicted++;
      tp += labels[i];
    }
  }
  // sklearn's zero_division default: 0 when undefined.
  const precision = predicted === 0 ? 0 : tp / predicted;
  const recall = tp / positives;
  const f1 = predicted + positives === 0 ? 0 : (2 * tp) / (predicted + positives);
  return { f1, precision, recall, predictedPositiveRate: predicted / labels.length };
}

/** Stratified percentile bootstrap of ROC AUC and AP: positives and negatives are each resampled with replacement. */
export function bootstrapAucCi(
  groups: ScoreGroups,
  labels: ArrayLike<number>,
  opts: BootstrapOptions,
): { rocAuc: [number, number]; prAuc: [number, number] } {
  const posGroups: number[] = [];
  const negGroups: number[] = [];
  for (let i = 0; i < labels.length; i++) (labels[i] === 1 ? posGroups : negGroups).push(groups.groupOf[i]);
  const pg = Uint32Array.from(posGroups);
  const ng = Uint32Array.from(negGroups);
  const G = groups.scores.length;
  const wPos = new Float64Array(G);
  const wNeg = new Float64Array(G);
  const aucs = new Float64Array(opts.samples);
  const aps = new Float64Array(opts.samples);
  const rng = createRng(opts.seed);
  for (let b = 0; b < opts.samples; b++) {
    wPos.fill(0);
    wNeg.fill(0);
    for (let k = 0; k < pg.length; k++) wPos[pg[rng.int(pg.length)]]++;
    for (let k = 0; k < ng.length; k++) wNeg[ng[rng.int(ng.length)]]++;
    aucs[b] = groupedRocAuc(wPos, wNeg);
    aps[b] = groupedAveragePrecision(wPos, wNeg);
  }
  return {
    rocAuc: [percentileLinear(aucs, 2.5), percentileLinear(aucs, 97.5)],
    prAuc: [percentileLinear(aps, 2.5), percentileLinear(aps, 97.5)],
  };
}

/** Lift table: rows sorted by descending score (ties by row index) and cut into 10 near-equal deciles by position. */
export function decileTable(labels: ArrayLike<number>, order: ArrayLike<number>): DecileRow[] {
  const n = order.length;
  const rows = new Array<number>(10).fill(0);
  const positives = new Array<number>(10).fill(0);
  let totalPos = 0;
  for (let r = 0; r < n; r++) {
    const d = Math.floor((r * 10) / n);
    rows[d]++;
    positives[d] += labels[order[r]];
    totalPos += labels[order[r]];
  }
  const overall = totalPos / n;
  const out: DecileRow[] = [];
  let cum = 0;
  for (let d = 0; d < 10; d++) {
    if (rows[d] === 0) continue;
    cum += positives[d];
    const rate = positives[d] / rows[d];
    out.push({
      decile: d + 1,
      rows: rows[d],
      positives: positives[d],
      rate,
      lift: overall === 0 ? 0 : rate / overall,
      cumulativeCapture: totalPos === 0 ? 0 : cum / totalPos,
    });
  }
  return out;
}

/** Full ROC and PR curves from the score groups (before downsampling). */
export function groupedCurves(groups: ScoreGroups): { roc: [number, number][]; pr: [number, number][] } {
  let P = 0;
  let N = 0;
  for (let g = 0; g < groups.pos.length; g++) {
    P += groups.pos[g];
    N += groups.neg[g];
  }
  const roc: [number, number][] = [[0, 0]];
  const pr: [number, number][] = [[0, 1]];
  let tp = 0;
  let fp = 0;
  for (let g = 0; g < groups.pos.length; g++) {
    tp += groups.pos[g];
    fp += groups.neg[g];
    roc.push([fp / N, tp / P]);
    pr.push([tp / P, tp / (tp + fp)]);
  }
  return { roc, pr };
}

function segmentMetrics(
  labels: ArrayLike<number>,
  probs: ArrayLike<number>,
  values: ArrayLike<string | null>,
): Record<string, SegmentMetrics> {
  const byValue = new Map<string, number[]>();
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const key = v === null || v === undefined ? SEGMENT_NULL_KEY : String(v);
    let rows = byValue.get(key);
    if (!rows) byValue.set(key, (rows = []));
    rows.push(i);
  }
  const keys = [...byValue.keys()].sort();
  return Object.fromEntries(
    keys.map((key) => {
      const idx = byValue.get(key)!;
      const y = new Float64Array(idx.length);
      const p = new Float64Array(idx.length);
      let positives = 0;
      for (let k = 0; k < idx.length; k++) {
        y[k] = labels[idx[k]];
        p[k] = probs[idx[k]];
        positives += y[k];
      }
      const bothClasses = positives > 0 && positives < idx.length && idx.length >= 2;
      const m: SegmentMetrics = {
        rows: idx.length,
        positives,
        rocAuc: bothClasses ? rocAuc(y, p) : null,
        prAuc: bothClasses ? prAuc(y, p) : null,
        logLoss: logLoss(y, p),
        brier: brier(y, p),
      };
      return [key, m];
    }),
  );
}

/**
 * Evaluate predicted probabilities against 0/1 labels. Throws MlError SingleClassLabel when only one class is present,
 * InvalidData for mismatched lengths, labels other than 0/1 or probabilities outside [0, 1], InvalidConfig for bad options.
 */
export function evaluateBinary(labels: ArrayLike<number>, probs: ArrayLike<number>, opts: EvaluateOptions = {}): EvaluationReport {
  const positives = validate(labels, probs);
  const rows = labels.length;
  validateOptions(opts, rows);
  const groups = scoreGroups(labels, probs);

  const threshold = opts.threshold === 'maxF1' ? maxF1Threshold(groups) : (opts.threshold ?? DEFAULT_THRESHOLD);
  const calibration = reliabilityCurve(labels, probs);
  const at = atThreshold(labels, probs, threshold, positives);
  const metrics: EvaluationMetrics = {
    rocAuc: groupedRocAuc(groups.pos, groups.neg),
    prAuc: groupedAveragePrecision(groups.pos, groups.neg),
    logLoss: logLoss(labels, probs),
    brier: brier(labels, probs),
    ece: eceFromCurve(calibration, rows),
    threshold,
    f1: at.f1,
    precision: at.precision,
    recall: at.recall,
    positiveRate: positives / rows,
    predictedPositiveRate: at.predictedPositiveRate,
    rows,
    positives,
  };

  const bootstrap = opts.bootstrap === false ? null : { ...(opts.bootstrap ?? DEFAULT_BOOTSTRAP) };
  const boot = bootstrap ? bootstrapAucCi(groups, labels, bootstrap) : null;
  let rocAucDeLong: [number, number] | null = null;
  if (positives >= 2 && rows - positives >= 2) {
    const { variance } = delongAuc(labels, probs);
    const half = Z_975 * Math.sqrt(variance);
    rocAucDeLong = [Math.max(0, metrics.rocAuc - half), Math.min(1, metrics.rocAuc + half)];
  }

  const maxPoints = opts.curvePoints ?? DEFAULT_CURVE_POINTS;
  const full = groupedCurves(groups);
  const segments: Record<string, Record<string, SegmentMetrics>> = Object.fromEntries(
    Object.entries(opts.segments ?? {}).map(([name, values]) => [name, segmentMetrics(labels, probs, values)]),
  );

  return {
    metrics,
    ci95: { rocAuc: boot?.rocAuc ?? null, prAuc: boot?.prAuc ?? null, rocAucDeLong },
    bootstrap,
    deciles: decileTable(labels, groups.order),
    curves: { roc: downsample(full.roc, maxPoints), pr: downsample(full.pr, maxPoints), calibration },
    segments,
  };
}

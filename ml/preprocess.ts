/**
 * Preprocessing fit on the train split only and saved as plain JSON beside the model, so evaluation and scoring
 * apply exactly the same transform.
 */
import { MlError, ML_ERROR } from './errors.js';
import type { FeatureSpec, Frame } from './types.js';

export const OTHER = '__other__';
export const MISSING = '__missing__';

export interface PreprocessOptions {
  /** a category needs this many train rows to get its own one-hot column */
  minCategoryCount: number;
  /** at most this many own columns per categorical feature (most frequent first) */
  maxCategories: number;
  /** outlier caps as train quantiles */
  clipQuantiles: [lo: number, hi: number];
  /** a non-negative column whose (clipped) train skewness exceeds this is log1p-transformed */
  logSkewThreshold: number;
}

export const DEFAULT_PREPROCESS_OPTIONS: Readonly<PreprocessOptions> = Object.freeze({
  minCategoryCount: 5,
  maxCategories: 50,
  clipQuantiles: Object.freeze([0.005, 0.995]) as [number, number],
  logSkewThreshold: 2,
});

export interface NumericStep {
  kind: 'numeric';
  name: string;
  /** imputation value (train median of observed values) */
  median: number;
  /** the train split had missing values, so a `<name>__missing` 0/1 column follows */
  missingIndicator: boolean;
  clipLo: number;
  clipHi: number;
  /** skewness of the clipped train values, the input to the log1p rule */
  skew: number;
  log1p: boolean;
  /** standardization after clip and log1p */
  mean: number;
  std: number;
}

export interface CategoricalStep {
  kind: 'categorical';
  name: string;
  /** own one-hot columns; anything else maps to OTHER, null to MISSING */
  vocabulary: string[];
}

export interface Preprocessor {
  version: 1;
  trainRows: number;
  options: PreprocessOptions;
  steps: (NumericStep | CategoricalStep)[];
  featureNames: string[];
}

export interface Matrix {
  /** row-major rows × cols */
  x: Float32Array;
  rows: number;
  cols: number;
  featureNames: string[];
}

/** Row count of a frame, after checking every column has it. */
export function frameRows(frame: Frame, where = 'frame'): number {
  const rows = frame.ids.length;
  const bad = (what: string, n: number) =>
    new MlError(ML_ERROR.InvalidData, `${where}: ${what} has ${n} rows but ids has ${rows}`);
  if (frame.label.length !== rows) throw bad('label', frame.label.length);
  for (const [k, col] of Object.entries(frame.numeric)) if (col.length !== rows) throw bad(`numeric column '${k}'`, col.length);
  for (const [k, col] of Object.entries(frame.categorical)) if (col.length !== rows) throw bad(`categorical column '${k}'`, col.length);
  return rows;
}

/** The rows of `frame` at `indices`, in that order. */
export function takeRows(frame: Frame, indices: ArrayLike<number>): Frame {
  const n = indices.length;
  const ids = new Array<string>(n);
  const label = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    ids[i] = frame.ids[indices[i]];
    label[i] = frame.label[indices[i]];
  }
  const numeric: Frame['numeric'] = {};
  for (const [k, col] of Object.entries(frame.numeric)) {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = col[indices[i]];
    numeric[k] = out;
  }
  const categorical: Frame['categorical'] = {};
  for (const [k, col] of Object.entries(frame.categorical)) {
    categorical[k] = Array.from({ length: n }, (_, i) => col[indices[i]]);
  }
  return { ids, label, numeric, categorical };
}

/** numpy-style linear-interpolated quantile of an ascending-sorted array. */
function quantileSorted(sorted: Float64Array, q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function columnOf<T>(cols: Record<string, T>, spec: FeatureSpec, where: string): T {
  const col = Object.hasOwn(cols, spec.name) ? cols[spec.name] : undefined;
  if (col === undefined) {
    throw new MlError(ML_ERROR.InvalidData, `${where}: ${spec.kind} column '${spec.name}' is missing`, { column: spec.name });
  }
  return col;
}

function fitNumeric(name: string, col: Float64Array, opts: PreprocessOptions): NumericStep {
  const observed = col.filter(Number.isFinite).sort();
  const hasMissing = observed.length < col.length;
  if (observed.length === 0) {
    // Entirely missing in train: the indicator is constant too, but keeping the column keeps the layout stable.
    return { kind: 'numeric', name, median: 0, missingIndicator: true, clipLo: 0, clipHi: 0, skew: 0, log1p: false, mean: 0, std: 1 };
  }
  const median = quantileSorted(observed, 0.5);
  const clipLo = quantileSorted(observed, opts.clipQuantiles[0]);
  const clipHi = quantileSorted(observed, opts.clipQuantiles[1]);
  // Skewness of observed, clipped values (population moments).
  let m = 0;
  for (const v of observed) m += Math.min(Math.max(v, clipLo), clipHi);
  m /= observed.length;
  let m2 = 0;
  let m3 = 0;
  for (const v of observed) {
    const d = Math.min(Math.max(v, clipLo), clipHi) - m;
    m2 += d * d;
    m3 += d * d * d;
  }
  m2 /= observed.length;
  m3 /= observed.length;
  const skew = m2 > 0 ? m3 / m2 ** 1.5 : 0;
  // Counts and amounts (the typical heavy right tail here) are non-negative; log1p tames them without a sign hack.
  const log1p = clipLo >= 0 && skew > opts.logSkewThreshold;
  const step: NumericStep = { kind: 'numeric', name, median, missingIndicator: hasMissing, clipLo, clipHi, skew, log1p, mean: 0, std: 1 };
  // Standardize what transform produces: imputed, clipped, logged values over all train rows.
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < col.length; i++) {
    const v = numericValue(step, col[i]);
    sum += v;
    sumSq += v * v;
  }
  const mean = sum / col.length;
  const variance = Math.max(sumSq / col.length - mean * mean, 0);
  step.mean = mean;
  step.std = variance > 1e-24 ? Math.sqrt(variance) : 1; // a constant column becomes all zeros, not NaN
  return step;
}

/** Imputed, clipped, optionally logged value, before standardization. */
function numericValue(s: NumericStep, raw: number): number {
  const v = Number.isFinite(raw) ? Math.min(Math.max(raw, s.clipLo), s.clipHi) : s.median;
  return s.log1p ? Math.log1p(v) : v;
}

function fitCategorical(name: string, col: (string | null)[], opts: PreprocessOptions): CategoricalStep {
  const counts = new Map<string, number>();
  for (const v of col) if (v !== null && v !== undefined) counts.set(v, (counts.get(v) ?? 0) + 1);
  const vocabulary = [...counts.entries()]
    .filter(([v, c]) => c >= opts.minCategoryCount && v !== OTHER && v !== MISSING)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, opts.maxCategories)
    .map(([v]) => v);
  return { kind: 'categorical', name, vocabulary };
}

function stepFeatureNames(s: NumericStep | CategoricalStep): string[] {
  if (s.kind === 'numeric') return s.missingIndicator ? [s.name, `${s.name}__missing`] : [s.name];
  return [...s.vocabulary, OTHER, MISSING].map((v) => `${s.name}=${v}`);
}

/** How many matrix columns a step produces: a numeric value (+ its missing flag), or a one-hot block. */
export const stepWidth = (step: NumericStep | CategoricalStep): number =>
  step.kind === 'numeric' ? (step.missingIndicator ? 2 : 1) : step.vocabulary.length + 2;

/** Fit imputation, outlier caps, log1p choice, scaling and vocabularies on the TRAIN split only. */
export function fitPreprocessor(train: Frame, specs: FeatureSpec[], options: Partial<PreprocessOptions> = {}): Preprocessor {
  const opts: PreprocessOptions = { ...DEFAULT_PREPROCESS_OPTIONS, ...options };
  opts.clipQuantiles = [...opts.clipQuantiles];
  const [qLo, qHi] = opts.clipQuantiles;
  if (!(qLo >= 0 && qLo < qHi && qHi <= 1)) {
    throw new MlError(ML_ERROR.InvalidConfig, `clipQuantiles must satisfy 0 <= lo < hi <= 1, got [${qLo}, ${qHi}]`);
  }
  if (!(Number.isInteger(opts.minCategoryCount) && opts.minCategoryCount >= 1 && Number.isInteger(opts.maxCategories) && opts.maxCategories >= 0)) {
    throw new MlError(ML_ERROR.InvalidConfig, `minCategoryCount must be an integer >= 1 and maxCategories an integer >= 0`);
  }
  if (specs.length === 0) throw new MlError(ML_ERROR.InvalidConfig, 'no feature specs: declare at least one feature');
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name)) throw new MlError(ML_ERROR.InvalidConfig, `feature '${s.name}' is declared twice`);
    if (s.kind !== 'numeric' && s.kind !== 'categorical') {
      throw new MlError(ML_ERROR.InvalidConfig, `feature '${s.name}' has kind '${s.kind}'; use 'numeric' or 'categorical'`);
    }
    seen.add(s.name);
  }
  const rows = frameRows(train, 'train split');
  if (rows === 0) throw new MlError(ML_ERROR.EmptyDataset, 'train split has no rows; nothing to fit the preprocessor on');
  const steps = specs.map((s) =>
    s.kind === 'numeric'
      ? fitNumeric(s.name, columnOf(train.numeric, s, 'train split'), opts)
      : fitCategorical(s.name, columnOf(train.categorical, s, 'train split'), opts),
  );
  return { version: 1, trainRows: rows, options: opts, steps, featureNames: steps.flatMap(stepFeatureNames) };
}

/** Apply a fitted preprocessor to any split or scoring frame (row-major float32 matrix). */
export function transform(pre: Preprocessor, frame: Frame): Matrix {
  if (pre?.version !== 1) throw new MlError(ML_ERROR.InvalidConfig, `unsupported preprocessor version ${pre?.version}`);
  const rows = frameRows(frame);
  const cols = pre.featureNames.length;
  const x = new Float32Array(rows * cols);
  let c = 0;
  for (const s of pre.steps) {
    if (s.kind === 'numeric') {
      const col = columnOf(frame.numeric, s, 'frame');
      for (let r = 0; r < rows; r++) x[r * cols + c] = (numericValue(s, col[r]) - s.mean) / s.std;
      if (s.missingIndicator) for (let r = 0; r < rows; r++) x[r * cols + c + 1] = Number.isFinite(col[r]) ? 0 : 1;
      c += s.missingIndicator ? 2 : 1;
    } else {
      const col = columnOf(frame.categorical, s, 'frame');
      const slot = new Map(s.vocabulary.map((v, i) => [v, i]));
      const other = s.vocabulary.length;
      for (let r = 0; r < rows; r++) {
        const v = col[r];
        const k = v === null || v === undefined ? other + 1 : slot.get(v) ?? other;
        x[r * cols + c + k] = 1;
      }
      c += s.vocabulary.length + 2;
    }
  }
  return { x, rows, cols, featureNames: [...pre.featureNames] };
}

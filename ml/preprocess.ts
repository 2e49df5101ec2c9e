/**
 * Preprocessing fit on the train split only and saved as plain JSON beside the model, so evaluation and scoring
 * apply exactly the same transform.
 */
import { MlError, ML_ERROR } from './errors.js';
import { lowerBound, upperBound } from './sorted.js';
import { MATRIX_ENCODINGS, MAX_PLE_BINS, type FeatureSpec, type Frame, type MatrixEncoding } from './types.js';

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

/**
 * How a numeric feature becomes model input (Gorishniy et al. 2022, "On Embeddings for Numerical Features in Tabular
 * Deep Learning"; Holzmüller et al. 2024, RealMLP). All start from the imputed, clipped, maybe log1p'd value:
 * - standard: standardized with the train mean and standard deviation (one column);
 * - quantile: the value's train quantile, spread uniformly over [-√3, √3] (one column, unit variance);
 * - robust: centred on the train median, scaled by the interquartile range, then softly clipped (x / √(1 + x²/9));
 * - ple: piecewise-linear encoding, one column per bin between train quantiles: 0 below the bin, 1 above it,
 *   linear inside it (`bins` columns at most; fewer where quantiles coincide, as for counts with many zeros).
 */
export type { NumericEncoding, MatrixEncoding } from './types.js';

/** What a preprocessor writes into the matrix (a trial's 'periodic' encoding is 'quantile' here: see encodingOf). */
export interface Encoding {
  numeric: MatrixEncoding;
  /** ple only: bins per numeric feature (edges are train quantiles i/bins) */
  bins?: number;
  /**
   * The sequence step (last-N-events) produces its columns, after all the others: what a sequence model reads.
   * Absent: it produces none, so every other model's matrix is exactly what it was before sequences existed.
   */
  sequence?: boolean;
}

/** Train quantiles are kept at levels i / QUANTILE_LEVELS, i = 0..QUANTILE_LEVELS: any bin count up to it is exact. */
export const QUANTILE_LEVELS = MAX_PLE_BINS;

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
  /**
   * Train quantiles of the value after imputation, clip and log1p, at levels i / QUANTILE_LEVELS: the edges of the
   * quantile, robust and ple encodings. Absent in preprocessors written before they existed (standard only).
   */
  quantiles?: number[];
}

export interface CategoricalStep {
  kind: 'categorical';
  name: string;
  /** own one-hot columns; anything else maps to OTHER, null to MISSING */
  vocabulary: string[];
}

/** One field of every event in a sequence step: its per-position columns and the stats pooled over positions. */
export interface SequenceNumericField
  // as NumericStep, fitted on the values of real events at every position (padding excluded)
  extends Pick<NumericStep, 'median' | 'clipLo' | 'clipHi' | 'skew' | 'log1p' | 'mean' | 'std'> {
  kind: 'numeric';
  field: string;
  /** the frame column of each position, position 1 (the most recent event) first */
  columns: string[];
}

export interface SequenceCategoricalField {
  kind: 'categorical';
  field: string;
  columns: string[];
  /** one vocabulary shared by every position, counted over the real events at all positions */
  vocabulary: string[];
}

export type SequenceField = SequenceNumericField | SequenceCategoricalField;

/**
 * All the feature specs with `sequence` (an event-mode run's last N events, db/sequences.ts) as one step. With
 * encoding.sequence it produces `length` blocks, position 1 (the most recent) first, of `sequenceBlockWidth`
 * columns each: a present flag (1 a real event, 0 padding), then each field in order: a one-hot block (vocabulary
 * + other + missing) for a categorical field, a standardized value for a numeric one; all 0 for padding. Without
 * encoding.sequence it produces no columns.
 */
export interface SequenceStep {
  kind: 'sequence';
  name: string;
  length: number;
  fields: SequenceField[];
}

/** The name of the sequence step (and of its one feature in importance and the model card). */
export const SEQUENCE_STEP = 'last_events';

export type Step = NumericStep | CategoricalStep | SequenceStep;

export interface Preprocessor {
  version: 1;
  trainRows: number;
  options: PreprocessOptions;
  /** a sequence step, if any, is the last one */
  steps: Step[];
  /** the matrix columns transform produces, in order (they depend on the encoding) */
  featureNames: string[];
  /** how numeric features are encoded; absent: standard */
  encoding?: Encoding;
  /**
   * an ensemble whose members read different encodings: the matrix is each block's encoding of every step, side by
   * side (block 1's columns first), and `encoding` is absent
   */
  blocks?: Encoding[];
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
    return { kind: 'numeric', name, median: 0, missingIndicator: true, clipLo: 0, clipHi: 0, skew: 0, log1p: false, mean: 0, std: 1, quantiles: new Array(QUANTILE_LEVELS + 1).fill(0) };
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
  const values = Float64Array.from(col, (raw) => numericValue(step, raw)).sort();
  step.quantiles = Array.from({ length: QUANTILE_LEVELS + 1 }, (_, i) => quantileSorted(values, i / QUANTILE_LEVELS));
  return step;
}

/** Imputed, clipped, optionally logged value, before standardization. */
export function numericValue(s: Pick<NumericStep, 'median' | 'clipLo' | 'clipHi' | 'log1p'>, raw: number): number {
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

/** The frame columns a step reads: its own name, or a sequence step's columns position-major (as the specs list them). */
export const stepColumns = (s: Step): { name: string; kind: 'numeric' | 'categorical' }[] =>
  s.kind === 'sequence'
    ? Array.from({ length: s.length }, (_, p) => s.fields.map((f) => ({ name: f.columns[p], kind: f.kind }))).flat()
    : [{ name: s.name, kind: s.kind }];

/** Columns of one position of a sequence step: the present flag and each field's columns. */
export const sequenceBlockWidth = (s: SequenceStep): number =>
  1 + s.fields.reduce((n, f) => n + (f.kind === 'categorical' ? f.vocabulary.length + 2 : 1), 0);

function stepFeatureNames(s: Step, encoding?: Encoding): string[] {
  if (s.kind === 'sequence') {
    if (!encoding?.sequence) return [];
    return Array.from({ length: s.length }, (_, i) => [
      `${s.name}_${i + 1}__present`,
      ...s.fields.flatMap((f) => (f.kind === 'categorical' ? [...f.vocabulary, OTHER, MISSING].map((v) => `${f.columns[i]}=${v}`) : [f.columns[i]])),
    ]).flat();
  }
  if (s.kind === 'categorical') return [...s.vocabulary, OTHER, MISSING].map((v) => `${s.name}=${v}`);
  const value = encoding?.numeric === 'ple' ? Array.from({ length: pleEdges(s, encoding).length - 1 || 1 }, (_, t) => `${s.name}__ple${t + 1}`) : [s.name];
  return s.missingIndicator ? [...value, `${s.name}__missing`] : value;
}

/**
 * How many matrix columns a step produces: a numeric value or its PLE bins (+ its missing flag), a one-hot block, or
 * a sequence step's blocks (none without encoding.sequence).
 */
export const stepWidth = (step: Step, encoding?: Encoding): number =>
  step.kind === 'sequence'
    ? (encoding?.sequence ? step.length * sequenceBlockWidth(step) : 0)
    : step.kind === 'numeric'
    ? (encoding?.numeric === 'ple' ? pleEdges(step, encoding).length - 1 || 1 : 1) + (step.missingIndicator ? 1 : 0)
    : step.vocabulary.length + 2;

function quantilesOf(s: NumericStep, encoding: Encoding): number[] {
  if (!s.quantiles) {
    throw new MlError(
      ML_ERROR.InvalidConfig,
      `numeric encoding '${encoding.numeric}' needs train quantiles, which this preprocessor (written before encodings existed) lacks for '${s.name}'; retrain from a fresh split or use 'standard'`,
    );
  }
  return s.quantiles;
}

/** The distinct PLE bin edges of a numeric step: train quantiles at levels i / bins. One edge: a constant column. */
export function pleEdges(s: NumericStep, encoding: Encoding): number[] {
  const q = quantilesOf(s, encoding);
  const bins = encoding.bins ?? 16;
  const edges: number[] = [];
  for (let i = 0; i <= bins; i++) {
    const v = q[Math.round((i * QUANTILE_LEVELS) / bins)];
    if (edges.length === 0 || v > edges[edges.length - 1]) edges.push(v);
  }
  return edges;
}

/** Problems with an encoding, each naming its key; empty when usable. */
export function validateEncoding(e: Encoding): string[] {
  const problems: string[] = [];
  if (!MATRIX_ENCODINGS.includes(e?.numeric)) problems.push(`numericEncoding: expected one of ${MATRIX_ENCODINGS.join(', ')}, got ${JSON.stringify(e?.numeric)}`);
  if (e?.bins !== undefined && !(Number.isInteger(e.bins) && e.bins >= 2 && e.bins <= MAX_PLE_BINS)) {
    problems.push(`pleBins: expected an integer in [2, ${MAX_PLE_BINS}], got ${JSON.stringify(e.bins)}`);
  }
  if (e?.sequence !== undefined && typeof e.sequence !== 'boolean') problems.push(`sequence: expected a boolean, got ${JSON.stringify(e.sequence)}`);
  return problems;
}

/**
 * The same fitted preprocessor with another numeric encoding: what a trial with that encoding trains on, and what
 * the registered model's preprocessing.json says, so evaluation and scoring encode exactly as training did.
 */
export function withEncoding(pre: Preprocessor, encoding: Encoding | undefined): Preprocessor {
  const numeric = encoding && encoding.numeric !== 'standard' ? { numeric: encoding.numeric, ...(encoding.numeric === 'ple' ? { bins: encoding.bins ?? 16 } : {}) } : undefined;
  // the standard encoding without sequence columns is no encoding at all: such a preprocessor is byte-identical to one
  // written before encodings existed
  const enc: Encoding | undefined =
    encoding?.sequence !== undefined && encoding.sequence !== false
      ? { ...(numeric ?? { numeric: encoding.numeric ?? 'standard' }), sequence: encoding.sequence }
      : numeric;
  if (enc) {
    const problems = validateEncoding(enc);
    if (problems.length) throw new MlError(ML_ERROR.InvalidConfig, `invalid encoding: ${problems.join('; ')}`, { problems });
  }
  const { encoding: _, ...rest } = pre;
  return { ...rest, ...(enc ? { encoding: enc } : {}), featureNames: pre.steps.flatMap((s) => stepFeatureNames(s, enc)) };
}

/**
 * The preprocessor of an ensemble whose members read different encodings: one block of columns per encoding, in
 * this order (feature names prefixed `b<k>:`). One encoding: withEncoding.
 */
export function withBlocks(pre: Preprocessor, encodings: (Encoding | undefined)[]): Preprocessor {
  if (encodings.length === 1) return withEncoding(pre, encodings[0]);
  const { encoding: _e, blocks: _b, ...rest } = pre;
  const parts = encodings.map((e) => withEncoding(rest, e));
  return {
    ...rest,
    blocks: parts.map((p) => p.encoding ?? { numeric: 'standard' }),
    featureNames: parts.flatMap((p, k) => p.featureNames.map((f) => `b${k + 1}:${f}`)),
  };
}

/** Where each block of a (block) preprocessor starts and how wide it is, in matrix columns. */
export function blockSlices(pre: Preprocessor): { start: number; width: number }[] {
  const encodings = pre.blocks ?? [pre.encoding];
  let start = 0;
  return encodings.map((e) => {
    const width = pre.steps.reduce((n, s) => n + stepWidth(s, e), 0);
    const slice = { start, width };
    start += width;
    return slice;
  });
}

/** Each step's columns in the matrix (one range per block), e.g. what permutation importance shuffles together. */
export function stepColumnRanges(pre: Preprocessor): { start: number; width: number }[][] {
  const out: { start: number; width: number }[][] = pre.steps.map(() => []);
  for (const [k, block] of blockSlices(pre).entries()) {
    const e = pre.blocks ? pre.blocks[k] : pre.encoding;
    let c = block.start;
    pre.steps.forEach((s, i) => {
      const width = stepWidth(s, e);
      if (width > 0) out[i].push({ start: c, width });
      c += width;
    });
  }
  return out;
}

/** Writes step s's encoding of `v` (imputed, clipped, logged) into x from offset `at` (stepWidth columns less the flag). */
function encodeNumeric(s: NumericStep, v: number, enc: Encoding | undefined, edges: number[] | null, x: Float32Array, at: number): void {
  switch (enc?.numeric ?? 'standard') {
    case 'standard':
      x[at] = (v - s.mean) / s.std;
      return;
    case 'quantile': {
      // the value's fractional position among the train quantiles (the middle of a run of equal ones), in [0, 1]
      const q = s.quantiles!;
      const below = lowerBound(q, v); // first index with q[i] >= v
      const upTo = upperBound(q, v); // first index with q[i] > v
      let pos: number;
      if (below < upTo) pos = (below + upTo - 1) / 2; // v equals quantiles below..upTo-1
      else if (below === 0) pos = 0;
      else if (below === q.length) pos = q.length - 1;
      else pos = below - 1 + (v - q[below - 1]) / (q[below] - q[below - 1]);
      x[at] = (pos / QUANTILE_LEVELS * 2 - 1) * Math.sqrt(3);
      return;
    }
    case 'robust': {
      const q = s.quantiles!;
      const iqr = q[(QUANTILE_LEVELS * 3) / 4] - q[QUANTILE_LEVELS / 4];
      const scale = iqr > 1e-12 ? iqr : s.std;
      const z = (v - q[QUANTILE_LEVELS / 2]) / scale;
      x[at] = z / Math.sqrt(1 + (z * z) / 9);
      return;
    }
    case 'ple': {
      const e = edges!;
      for (let t = 1; t < e.length; t++) x[at + t - 1] = v <= e[t - 1] ? 0 : v >= e[t] ? 1 : (v - e[t - 1]) / (e[t] - e[t - 1]);
      return;
    }
  }
}

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
  const steps: Step[] = specs.filter((s) => !s.sequence).map((s) =>
    s.kind === 'numeric'
      ? fitNumeric(s.name, columnOf(train.numeric, s, 'train split'), opts)
      : fitCategorical(s.name, columnOf(train.categorical, s, 'train split'), opts),
  );
  const sequence = specs.filter((s) => s.sequence);
  if (sequence.length > 0) steps.push(fitSequence(train, sequence, opts));
  return { version: 1, trainRows: rows, options: opts, steps, featureNames: steps.flatMap((s) => stepFeatureNames(s)) };
}

/** Groups the sequence specs by field, checking every position 1..N has every field once, with one kind per field. */
function sequenceLayout(specs: FeatureSpec[]): { length: number; fields: { field: string; kind: FeatureSpec['kind']; specs: FeatureSpec[] }[] } {
  const bad = (why: string) => new MlError(ML_ERROR.InvalidConfig, `sequence features: ${why}`);
  const length = Math.max(...specs.map((s) => s.sequence!.position));
  const fields: { field: string; kind: FeatureSpec['kind']; specs: FeatureSpec[] }[] = [];
  for (const s of specs) {
    const { position, field } = s.sequence!;
    if (!Number.isInteger(position) || position < 1) throw bad(`'${s.name}' has position ${position}; positions start at 1`);
    let f = fields.find((x) => x.field === field);
    if (!f) fields.push((f = { field, kind: s.kind, specs: new Array<FeatureSpec>(length) }));
    if (f.kind !== s.kind) throw bad(`field '${field}' is ${f.kind} at one position and ${s.kind} at another ('${s.name}')`);
    if (f.specs[position - 1]) throw bad(`position ${position} of field '${field}' is declared twice ('${f.specs[position - 1].name}', '${s.name}')`);
    f.specs[position - 1] = s;
  }
  for (const f of fields) {
    const gap = Array.from({ length }, (_, i) => i).find((i) => !f.specs[i]);
    if (gap !== undefined) throw bad(`field '${f.field}' has no column for position ${gap + 1} of ${length}`);
  }
  return { length, fields };
}

/** Per row and position: whether any field of that event is present (a real event), row-major rows × length. */
function presence(frame: Frame, s: Pick<SequenceStep, 'length'> & { fields: { kind: FeatureSpec['kind']; columns: string[] }[] }, rows: number): Uint8Array {
  const present = new Uint8Array(rows * s.length);
  for (const f of s.fields) {
    for (let p = 0; p < s.length; p++) {
      const spec: FeatureSpec = { name: f.columns[p], kind: f.kind };
      if (f.kind === 'numeric') {
        const col = columnOf(frame.numeric, spec, 'frame');
        for (let r = 0; r < rows; r++) if (Number.isFinite(col[r])) present[r * s.length + p] = 1;
      } else {
        const col = columnOf(frame.categorical, spec, 'frame');
        for (let r = 0; r < rows; r++) if (col[r] !== null && col[r] !== undefined) present[r * s.length + p] = 1;
      }
    }
  }
  return present;
}

/** The sequence step: one vocabulary or one set of numeric stats per field, pooled over the real events at all positions. */
function fitSequence(train: Frame, specs: FeatureSpec[], opts: PreprocessOptions): SequenceStep {
  const { length, fields } = sequenceLayout(specs);
  const rows = train.ids.length;
  const shape = { length, fields: fields.map((f) => ({ kind: f.kind, columns: f.specs.map((s) => s.name) })) };
  const present = presence(train, shape, rows);
  let real = 0;
  for (const v of present) real += v;
  const fitted = fields.map((f): SequenceField => {
    const columns = f.specs.map((s) => s.name);
    if (f.kind === 'numeric') {
      const pooled = new Float64Array(real);
      let k = 0;
      const cols = f.specs.map((s) => columnOf(train.numeric, s, 'train split'));
      for (let r = 0; r < rows; r++) for (let p = 0; p < length; p++) if (present[r * length + p]) pooled[k++] = cols[p][r];
      const { median, clipLo, clipHi, skew, log1p, mean, std } = fitNumeric(f.field, pooled, opts);
      return { kind: 'numeric', field: f.field, columns, median, clipLo, clipHi, skew, log1p, mean, std };
    }
    const pooled: (string | null)[] = [];
    const cols = f.specs.map((s) => columnOf(train.categorical, s, 'train split'));
    for (let r = 0; r < rows; r++) for (let p = 0; p < length; p++) if (present[r * length + p]) pooled.push(cols[p][r]);
    return { kind: 'categorical', field: f.field, columns, vocabulary: fitCategorical(f.field, pooled, opts).vocabulary };
  });
  return { kind: 'sequence', name: SEQUENCE_STEP, length, fields: fitted };
}

/** Writes a sequence step's blocks (stepWidth columns) of every row into x from column c. */
function encodeSequence(s: SequenceStep, frame: Frame, rows: number, x: Float32Array, cols: number, c: number): void {
  const present = presence(frame, s, rows);
  const width = sequenceBlockWidth(s);
  let offset = 1;
  for (const f of s.fields) {
    for (let p = 0; p < s.length; p++) {
      const spec: FeatureSpec = { name: f.columns[p], kind: f.kind };
      const at = c + p * width + offset;
      if (f.kind === 'numeric') {
        const col = columnOf(frame.numeric, spec, 'frame');
        for (let r = 0; r < rows; r++) if (present[r * s.length + p]) x[r * cols + at] = (numericValue(f, col[r]) - f.mean) / f.std;
      } else {
        const col = columnOf(frame.categorical, spec, 'frame');
        const slot = new Map(f.vocabulary.map((v, i) => [v, i]));
        const other = f.vocabulary.length;
        for (let r = 0; r < rows; r++) {
          if (!present[r * s.length + p]) continue;
          const v = col[r];
          x[r * cols + at + (v === null || v === undefined ? other + 1 : slot.get(v) ?? other)] = 1;
        }
      }
    }
    offset += f.kind === 'categorical' ? f.vocabulary.length + 2 : 1;
  }
  for (let r = 0; r < rows; r++) for (let p = 0; p < s.length; p++) if (present[r * s.length + p]) x[r * cols + c + p * width] = 1;
}

/** Apply a fitted preprocessor to any split or scoring frame (row-major float32 matrix). */
export function transform(pre: Preprocessor, frame: Frame): Matrix {
  if (pre?.version !== 1) throw new MlError(ML_ERROR.InvalidConfig, `unsupported preprocessor version ${pre?.version}`);
  if (pre.blocks) return transformBlocks(pre, frame);
  const rows = frameRows(frame);
  const cols = pre.featureNames.length;
  const enc = pre.encoding;
  const width = pre.steps.reduce((n, s) => n + stepWidth(s, enc), 0);
  if (width !== cols) throw new MlError(ML_ERROR.InvalidData, `preprocessor lists ${cols} feature names but its steps produce ${width} columns`);
  const x = new Float32Array(rows * cols);
  let c = 0;
  for (const s of pre.steps) {
    if (s.kind === 'sequence') {
      if (enc?.sequence) encodeSequence(s, frame, rows, x, cols, c);
      c += stepWidth(s, enc);
    } else if (s.kind === 'numeric') {
      const col = columnOf(frame.numeric, s, 'frame');
      if (enc && enc.numeric !== 'standard') quantilesOf(s, enc);
      const edges = enc?.numeric === 'ple' ? pleEdges(s, enc) : null;
      const valueWidth = edges ? edges.length - 1 || 1 : 1;
      for (let r = 0; r < rows; r++) encodeNumeric(s, numericValue(s, col[r]), enc, edges, x, r * cols + c);
      if (s.missingIndicator) for (let r = 0; r < rows; r++) x[r * cols + c + valueWidth] = Number.isFinite(col[r]) ? 0 : 1;
      c += valueWidth + (s.missingIndicator ? 1 : 0);
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

/** A block preprocessor's matrix: each block's own transform, side by side. */
function transformBlocks(pre: Preprocessor, frame: Frame): Matrix {
  const { blocks, ...one } = pre;
  const parts = blocks!.map((e) => transform(withEncoding(one, e), frame));
  const rows = frameRows(frame);
  const cols = parts.reduce((n, p) => n + p.cols, 0);
  if (cols !== pre.featureNames.length) throw new MlError(ML_ERROR.InvalidData, `preprocessor lists ${pre.featureNames.length} feature names but its blocks produce ${cols} columns`);
  const x = new Float32Array(rows * cols);
  let offset = 0;
  for (const p of parts) {
    for (let r = 0; r < rows; r++) x.set(p.x.subarray(r * p.cols, (r + 1) * p.cols), r * cols + offset);
    offset += p.cols;
  }
  return { x, rows, cols, featureNames: [...pre.featureNames] };
}

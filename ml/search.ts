/**
 * Hyperparameter search strategies. Imported by workflow code, so it must stay deterministic and dependency-free:
 * no tfjs, no Node builtins, no Math.random, no Date.
 */
import { MlError, ML_ERROR } from './errors.js';
import type { TrainMlpOutput } from './model.js';
import { createRng, deriveSeed, shuffleInPlace, type Rng } from './random.js';
import { MAX_BATCH_ENSEMBLE, MAX_PLE_BINS, MAX_SEQUENCE_UNITS, NUMERIC_ENCODINGS, type ClassWeight, type MatrixEncoding, type MlpParams, type NumericEncoding, type SearchSpace } from './types.js';

const SPACE_KEYS: (keyof SearchSpace)[] = [
  'hiddenLayers', 'units', 'dropout', 'l2', 'learningRate', 'batchSize', 'classWeight', 'epochs', 'patience', 'embeddingDim',
  'numericEncoding', 'pleBins', 'periodicSigma', 'batchEnsemble', 'sequenceUnits', 'sequenceAlone',
];
const CLASS_WEIGHTS: ClassWeight[] = ['balanced', 'none'];
const MAX_LAYERS = 8;

const isPair = (v: unknown): v is [number, number] =>
  Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && Number.isFinite(x));
const isPosInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

/** Every problem with a search space, each naming its key; empty when the space is usable. */
export function validateSearchSpace(space: SearchSpace): string[] {
  const problems: string[] = [];
  if (space == null || typeof space !== 'object') return ['search space must be an object'];
  const s = space as unknown as Record<string, unknown>;
  for (const k of Object.keys(s)) {
    if (!SPACE_KEYS.includes(k as keyof SearchSpace)) problems.push(`${k}: unknown key (expected one of ${SPACE_KEYS.join(', ')})`);
  }
  const { hiddenLayers: hl, units, dropout, l2, learningRate: lr, batchSize, classWeight, epochs, patience } = space;
  if (!isPair(hl) || !hl.every((x) => Number.isInteger(x)) || hl[0] < 0 || hl[0] > hl[1] || hl[1] > MAX_LAYERS) {
    problems.push(`hiddenLayers: expected [min, max] integers with 0 <= min <= max <= ${MAX_LAYERS}, got ${show(hl)}`);
  }
  const needsUnits = !isPair(hl) || hl[1] > 0;
  if (needsUnits && (!Array.isArray(units) || units.length === 0 || !units.every(isPosInt))) {
    problems.push(`units: expected a non-empty list of positive integers, got ${show(units)}`);
  }
  if (!isPair(dropout) || dropout[0] < 0 || dropout[0] > dropout[1] || dropout[1] >= 1) {
    problems.push(`dropout: expected [lo, hi] with 0 <= lo <= hi < 1, got ${show(dropout)}`);
  }
  const bothZero = isPair(l2) && l2[0] === 0 && l2[1] === 0; // [0, 0] = no weight decay
  if (!isPair(l2) || (!bothZero && (l2[0] <= 0 || l2[0] > l2[1]))) {
    problems.push(`l2: expected a log range [lo, hi] with 0 < lo <= hi (or [0, 0] for none), got ${show(l2)}`);
  }
  if (!isPair(lr) || lr[0] <= 0 || lr[0] > lr[1] || lr[1] > 1) {
    problems.push(`learningRate: expected a log range [lo, hi] with 0 < lo <= hi <= 1, got ${show(lr)}`);
  }
  if (!Array.isArray(batchSize) || batchSize.length === 0 || !batchSize.every(isPosInt)) {
    problems.push(`batchSize: expected a non-empty list of positive integers, got ${show(batchSize)}`);
  }
  if (!Array.isArray(classWeight) || classWeight.length === 0 || !classWeight.every((c) => CLASS_WEIGHTS.includes(c))) {
    problems.push(`classWeight: expected a non-empty list of ${CLASS_WEIGHTS.map((c) => `'${c}'`).join(' | ')}, got ${show(classWeight)}`);
  }
  if (!isPosInt(epochs)) problems.push(`epochs: expected a positive integer, got ${show(epochs)}`);
  const emb = space.embeddingDim;
  if (emb !== undefined && (!Array.isArray(emb) || emb.length === 0 || !emb.every((d) => Number.isInteger(d) && d >= 0 && d <= 256))) {
    problems.push(`embeddingDim: expected a non-empty list of integers in [0, 256], got ${show(emb)}`);
  }
  if (!Number.isInteger(patience) || patience < 0) problems.push(`patience: expected an integer >= 0, got ${show(patience)}`);
  const enc = space.numericEncoding;
  if (enc !== undefined && (!Array.isArray(enc) || enc.length === 0 || !enc.every((e) => NUMERIC_ENCODINGS.includes(e)))) {
    problems.push(`numericEncoding: expected a non-empty list of ${NUMERIC_ENCODINGS.map((e) => `'${e}'`).join(' | ')}, got ${show(enc)}`);
  }
  const bins = space.pleBins;
  if (bins !== undefined && (!Array.isArray(bins) || bins.length === 0 || !bins.every((b) => isPleBins(b)))) {
    problems.push(`pleBins: expected a non-empty list of integers in [2, ${MAX_PLE_BINS}], got ${show(bins)}`);
  }
  const sigma = space.periodicSigma;
  if (sigma !== undefined && (!isPair(sigma) || !isSigma(sigma[0]) || !isSigma(sigma[1]) || sigma[0] > sigma[1])) {
    problems.push(`periodicSigma: expected a log range [lo, hi] with 0 < lo <= hi <= ${MAX_PERIODIC_SIGMA}, got ${show(sigma)}`);
  }
  const be = space.batchEnsemble;
  if (be !== undefined && (!Array.isArray(be) || be.length === 0 || !be.every(isMembers))) {
    problems.push(`batchEnsemble: expected a non-empty list of integers in [0, ${MAX_BATCH_ENSEMBLE}] (0 or 1 = a plain MLP), got ${show(be)}`);
  }
  const seq = space.sequenceUnits;
  if (seq !== undefined && (!Array.isArray(seq) || seq.length === 0 || !seq.every((u) => Number.isInteger(u) && u >= 0 && u <= MAX_SEQUENCE_UNITS))) {
    problems.push(`sequenceUnits: expected a non-empty list of integers in [0, ${MAX_SEQUENCE_UNITS}] (0 = no sequence model), got ${show(seq)}`);
  }
  const alone = space.sequenceAlone;
  if (alone !== undefined && (!Array.isArray(alone) || alone.length === 0 || !alone.every((a) => typeof a === 'boolean'))) {
    problems.push(`sequenceAlone: expected a non-empty list of booleans (true = the GRU alone, false = joined with the aggregates), got ${show(alone)}`);
  } else if (alone?.includes(true) && !space.sequenceUnits?.some((u) => u > 0)) {
    problems.push(`sequenceAlone: applies to sequence trials, and sequenceUnits ${space.sequenceUnits ? `${show(space.sequenceUnits)} lists no GRU size above 0` : 'is absent'}: add e.g. sequenceUnits [0, 16]`);
  }
  return problems;
}

const isPleBins = (b: unknown): b is number => Number.isInteger(b) && (b as number) >= 2 && (b as number) <= MAX_PLE_BINS;
/** PLE bins when a space lists none */
export const DEFAULT_PLE_BINS = 16;
/** The periodic embedding's initial frequency scale when a trial names none, and its range when a space names none */
export const DEFAULT_PERIODIC_SIGMA = 0.1;
export const DEFAULT_PERIODIC_SIGMA_RANGE: [number, number] = [0.01, 1];
const MAX_PERIODIC_SIGMA = 100;
const isMembers = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_BATCH_ENSEMBLE;
const isSigma = (v: unknown): v is number => typeof v === 'number' && v > 0 && v <= MAX_PERIODIC_SIGMA;

function assertValid(space: SearchSpace): void {
  const problems = validateSearchSpace(space);
  if (problems.length > 0) {
    throw new MlError(ML_ERROR.InvalidConfig, `invalid search space: ${problems.join('; ')}`, { problems });
  }
}

/** Latin-hypercube strata: count values in [0,1), one per equal-width stratum, in random order. */
function strata(count: number, rng: Rng): number[] {
  const order = shuffleInPlace(Array.from({ length: count }, (_, i) => i), rng);
  return order.map((k) => (k + rng.next()) / count);
}

const lerp = ([lo, hi]: [number, number], u: number): number => lo + (hi - lo) * u;
const logLerp = ([lo, hi]: [number, number], u: number): number =>
  lo === 0 ? 0 : Math.exp(Math.log(lo) + (Math.log(hi) - Math.log(lo)) * u);
// Keep sampled floats short and stable in JSON (trial ids, Postgres rows, workflow history).
const round = (x: number): number => Number(x.toPrecision(4));

/**
 * `count` random-search trials, deterministic in `seed`. Continuous dimensions (dropout, l2, learning rate) use
 * Latin-hypercube strata so that a small budget still covers each range; hidden layers are funnel-shaped
 * (units sorted descending). Throws MlError InvalidConfig on an invalid space.
 */
export function sampleTrials(space: SearchSpace, count: number, seed: number): MlpParams[] {
  assertValid(space);
  if (!Number.isInteger(count) || count < 0) {
    throw new MlError(ML_ERROR.InvalidConfig, `trial count must be an integer >= 0, got ${count}`);
  }
  const rng = createRng(seed);
  const pick = <T>(xs: T[]): T => xs[rng.int(xs.length)];
  const [uDrop, uL2, uLr] = [strata(count, rng), strata(count, rng), strata(count, rng)];
  // A stream of its own, so that adding embedding sizes to a space leaves every other sampled value unchanged.
  const embRng = createRng(deriveSeed(seed, 0xe3b));
  // likewise for numeric encodings: a space without them samples exactly what it sampled before they existed
  const encRng = createRng(deriveSeed(seed, 0xe4c));
  // and for GRU sizes
  const seqRng = createRng(deriveSeed(seed, 0xe5d));
  // and for the periodic embedding's frequency scale (Latin-hypercube strata, like the other continuous settings)
  const uSigma = strata(count, createRng(deriveSeed(seed, 0xe6f)));
  // and for BatchEnsemble member counts
  const beRng = createRng(deriveSeed(seed, 0xe7a));
  // and for a sequence trial's inputs (the GRU alone or joined with the aggregates)
  const aloneRng = createRng(deriveSeed(seed, 0xe8b));
  const trials: MlpParams[] = [];
  for (let i = 0; i < count; i++) {
    const layers = space.hiddenLayers[0] + rng.int(space.hiddenLayers[1] - space.hiddenLayers[0] + 1);
    const hiddenUnits = Array.from({ length: layers }, () => pick(space.units)).sort((a, b) => b - a);
    const sequenceUnits = space.sequenceUnits ? space.sequenceUnits[seqRng.int(space.sequenceUnits.length)] : 0;
    const embeddingDim = space.embeddingDim ? space.embeddingDim[embRng.int(space.embeddingDim.length)] : undefined;
    const encoding = space.numericEncoding ? encodingParams(space.numericEncoding[encRng.int(space.numericEncoding.length)], space.pleBins, encRng) : {};
    // the periodic embedding is an MLP's first layer: a sequence trial reads the same quantile-scaled columns plainly
    if (encoding.numericEncoding === 'periodic') {
      if (sequenceUnits > 0) encoding.numericEncoding = 'quantile';
      else encoding.periodicSigma = round(logLerp(space.periodicSigma ?? DEFAULT_PERIODIC_SIGMA_RANGE, uSigma[i]));
    }
    const periodic = encoding.numericEncoding === 'periodic';
    // BatchEnsemble widens an MLP's first hidden layer: not for logistic or sequence trials
    const drawnMembers = space.batchEnsemble ? space.batchEnsemble[beRng.int(space.batchEnsemble.length)] : 0;
    const members = drawnMembers > 1 && layers > 0 && sequenceUnits === 0 ? drawnMembers : 0;
    // drawn for every trial, so that one trial's draw never shifts another's
    const alone = space.sequenceAlone ? space.sequenceAlone[aloneRng.int(space.sequenceAlone.length)] : false;
    trials.push({
      hiddenUnits,
      dropout: layers === 0 ? 0 : round(lerp(space.dropout, uDrop[i])),
      l2: round(logLerp(space.l2, uL2[i])),
      learningRate: round(logLerp(space.learningRate, uLr[i])),
      batchSize: pick(space.batchSize),
      epochs: space.epochs,
      classWeight: pick(space.classWeight),
      patience: space.patience,
      // sequence, periodic and BatchEnsemble models take the categorical columns one-hot (see validateMlpParams): the
      // drawn size is dropped
      ...(embeddingDim !== undefined && sequenceUnits === 0 && !periodic && members === 0 ? { embeddingDim } : {}),
      ...encoding,
      ...(members > 1 ? { batchEnsemble: members } : {}),
      ...(sequenceUnits > 0 ? { sequenceUnits } : {}),
      ...(sequenceUnits > 0 && alone ? { sequenceAlone: true } : {}),
    });
  }
  return trials;
}

function encodingParams(numericEncoding: NumericEncoding, pleBins: number[] | undefined, rng: Rng): Pick<MlpParams, 'numericEncoding' | 'pleBins' | 'periodicSigma'> {
  const bins = pleBins ?? [DEFAULT_PLE_BINS];
  const drawn = bins[rng.int(bins.length)]; // drawn for every trial, so one trial's encoding never shifts another's
  return numericEncoding === 'ple' ? { numericEncoding, pleBins: drawn } : { numericEncoding };
}

/**
 * The encoding a trial trains on, as ml/preprocess.ts withEncoding takes it: its numeric encoding ('periodic' reads
 * quantile-scaled columns, its embedding being part of the network), and for the sequence family `sequence: true`
 * (the last-events columns, which no other model reads).
 */
export const encodingOf = (
  p: Pick<MlpParams, 'numericEncoding' | 'pleBins' | 'sequenceUnits'>,
): { numeric: MatrixEncoding; bins?: number; sequence?: true } => ({
  ...(p.numericEncoding === 'ple'
    ? { numeric: 'ple' as const, bins: p.pleBins ?? DEFAULT_PLE_BINS }
    : { numeric: p.numericEncoding === 'periodic' ? 'quantile' as const : p.numericEncoding ?? 'standard' }),
  ...((p.sequenceUnits ?? 0) > 0 ? { sequence: true as const } : {}),
});

/** The logistic-regression baseline (no hidden layers) trained with the same budget as the search. */
export function baselineParams(space: SearchSpace): MlpParams {
  assertValid(space);
  const mid = (r: [number, number]) => (r[0] === 0 ? 0 : round(Math.sqrt(r[0] * r[1])));
  const sizes = [...space.batchSize].sort((a, b) => a - b);
  return {
    hiddenUnits: [],
    dropout: 0,
    l2: mid(space.l2),
    learningRate: round(space.learningRate[1]), // a linear model tolerates the top of the range and converges faster
    batchSize: sizes[Math.floor(sizes.length / 2)],
    epochs: space.epochs,
    classWeight: 'none',
    patience: space.patience,
  };
}

/** Every problem with one trial's parameters, each naming its key; empty when training can start. */
export function validateMlpParams(p: MlpParams): string[] {
  const problems: string[] = [];
  if (!Array.isArray(p.hiddenUnits) || !p.hiddenUnits.every(isPosInt) || p.hiddenUnits.length > MAX_LAYERS) {
    problems.push(`hiddenUnits: expected at most ${MAX_LAYERS} positive integers, got ${show(p.hiddenUnits)}`);
  }
  if (!(p.dropout >= 0 && p.dropout < 1)) problems.push(`dropout: expected 0 <= dropout < 1, got ${show(p.dropout)}`);
  if (!(p.l2 >= 0 && Number.isFinite(p.l2))) problems.push(`l2: expected a finite number >= 0, got ${show(p.l2)}`);
  if (!(p.learningRate > 0 && p.learningRate <= 1)) problems.push(`learningRate: expected 0 < learningRate <= 1, got ${show(p.learningRate)}`);
  if (!isPosInt(p.batchSize)) problems.push(`batchSize: expected a positive integer, got ${show(p.batchSize)}`);
  if (!isPosInt(p.epochs)) problems.push(`epochs: expected a positive integer, got ${show(p.epochs)}`);
  if (!CLASS_WEIGHTS.includes(p.classWeight)) problems.push(`classWeight: expected 'balanced' | 'none', got ${show(p.classWeight)}`);
  if (!Number.isInteger(p.patience) || p.patience < 0) problems.push(`patience: expected an integer >= 0, got ${show(p.patience)}`);
  if (p.embeddingDim !== undefined && !(Number.isInteger(p.embeddingDim) && p.embeddingDim >= 0 && p.embeddingDim <= 256)) {
    problems.push(`embeddingDim: expected an integer in [0, 256], got ${show(p.embeddingDim)}`);
  }
  if (p.numericEncoding !== undefined && !NUMERIC_ENCODINGS.includes(p.numericEncoding)) {
    problems.push(`numericEncoding: expected ${NUMERIC_ENCODINGS.map((e) => `'${e}'`).join(' | ')}, got ${show(p.numericEncoding)}`);
  }
  if (p.pleBins !== undefined && !isPleBins(p.pleBins)) problems.push(`pleBins: expected an integer in [2, ${MAX_PLE_BINS}], got ${show(p.pleBins)}`);
  if (p.periodicSigma !== undefined && !isSigma(p.periodicSigma)) {
    problems.push(`periodicSigma: expected a number in (0, ${MAX_PERIODIC_SIGMA}], got ${show(p.periodicSigma)}`);
  }
  if (p.batchEnsemble !== undefined && !isMembers(p.batchEnsemble)) {
    problems.push(`batchEnsemble: expected an integer in [0, ${MAX_BATCH_ENSEMBLE}], got ${show(p.batchEnsemble)}`);
  } else if ((p.batchEnsemble ?? 0) > 1) {
    if (Array.isArray(p.hiddenUnits) && p.hiddenUnits.length === 0) problems.push(`batchEnsemble: the members share an MLP's first hidden layer; hiddenUnits is empty (logistic regression)`);
    if ((p.embeddingDim ?? 0) > 0) problems.push(`batchEnsemble: takes the categorical columns one-hot; embeddingDim must be 0 or absent, got ${show(p.embeddingDim)}`);
    if ((p.sequenceUnits ?? 0) > 0) problems.push(`batchEnsemble: an MLP option; a sequence model (sequenceUnits ${show(p.sequenceUnits)}) has none`);
  }
  if (p.numericEncoding === 'periodic' && (p.embeddingDim ?? 0) > 0) {
    problems.push(`numericEncoding: a periodic embedding takes the categorical columns one-hot; embeddingDim must be 0 or absent, got ${show(p.embeddingDim)}`);
  }
  if (p.numericEncoding === 'periodic' && (p.sequenceUnits ?? 0) > 0) {
    problems.push(`numericEncoding: 'periodic' is an MLP's first layer; a sequence model (sequenceUnits ${show(p.sequenceUnits)}) takes 'quantile' instead`);
  }
  if (p.sequenceUnits !== undefined && !(Number.isInteger(p.sequenceUnits) && p.sequenceUnits >= 0 && p.sequenceUnits <= MAX_SEQUENCE_UNITS)) {
    problems.push(`sequenceUnits: expected an integer in [0, ${MAX_SEQUENCE_UNITS}], got ${show(p.sequenceUnits)}`);
  } else if ((p.sequenceUnits ?? 0) > 0 && (p.embeddingDim ?? 0) > 0) {
    problems.push(`sequenceUnits: a sequence model takes the aggregate columns one-hot; embeddingDim must be 0 or absent, got ${show(p.embeddingDim)}`);
  }
  if (p.sequenceAlone !== undefined && typeof p.sequenceAlone !== 'boolean') {
    problems.push(`sequenceAlone: expected a boolean, got ${show(p.sequenceAlone)}`);
  } else if (p.sequenceAlone && !((p.sequenceUnits ?? 0) > 0)) {
    problems.push(`sequenceAlone: the GRU alone needs a GRU; sequenceUnits is ${show(p.sequenceUnits ?? 0)}`);
  }
  return problems;
}

/** What ranks trials on the validation split: one rule from the search's halving to the final choice. */
export type SelectionMetric = 'valAuc' | 'valLogLoss' | 'valPrAuc';

export const SELECTION_LABELS: Record<SelectionMetric, string> = {
  valAuc: 'validation ROC-AUC (higher is better)',
  valLogLoss: 'validation log loss (lower is better)',
  valPrAuc: 'validation PR-AUC (higher is better)',
};

/** The rule in words, as the progress line, the summary and the model card state it. */
export const selectionRule = (metric: SelectionMetric): string => `trials ranked by ${SELECTION_LABELS[metric]} (search.metric ${metric})`;

/** A metric value as people read it: "val ROC-AUC 0.8601". */
export const formatSelection = (metric: SelectionMetric, value: number | null): string =>
  `${{ valAuc: 'val ROC-AUC', valLogLoss: 'val log loss', valPrAuc: 'val PR-AUC' }[metric]} ${value === null ? '-' : value.toFixed(4)}`;

/** The model family of a parameter set: a GRU over the last events is 'sequence', else no hidden layer is the logistic regression. */
export const familyOf = (params: { hiddenUnits: number[]; sequenceUnits?: number }): 'logistic' | 'mlp' | 'sequence' =>
  (params.sequenceUnits ?? 0) > 0 ? 'sequence' : params.hiddenUnits.length === 0 ? 'logistic' : 'mlp';

/** What a rung's scheduling needs to know of a trial's last result. */
export interface TrialTiming {
  status: 'completed' | 'failed';
  /** epochs trained in all, and of those the ones before this result's activity started */
  epochs: number;
  resumedFromEpoch: number;
  /** the activity's wall time */
  seconds: number;
  stopReason?: TrainMlpOutput['stopReason'];
}

/**
 * Seconds a promoted trial is expected to take to reach `budget` epochs: the epochs it has left at the seconds per
 * epoch its last activity took. A trial that stopped early (or already reached the budget) trains no further epoch.
 */
export function expectedSeconds(last: TrialTiming, budget: number): number {
  if (last.status !== 'completed' || last.stopReason === 'earlyStopping') return 0;
  const trained = last.epochs - last.resumedFromEpoch;
  if (trained <= 0) return 0;
  return Math.max(0, budget - last.epochs) * (last.seconds / trained);
}

/**
 * The order in which a rung hands its trials to the lanes: the longest expected first (LPT scheduling), ties in
 * the given order. A rung ends only when its last trial does; started last, the slowest trial would run alone while
 * the other lanes idle. The order changes nothing a trial computes, so the same trials go on either way.
 */
export function longestFirst<T>(items: readonly T[], seconds: (item: T) => number): T[] {
  return items
    .map((item, i) => ({ item, i, s: seconds(item) }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .map((e) => e.item);
}

/** Shared plain-data types of the pure ML layer. No tfjs, no Node builtins: workflow code may import these. */

export type FeatureKind = 'numeric' | 'categorical';

export interface FeatureSpec {
  name: string;
  kind: FeatureKind;
  /** a column of an event-mode run's last-N-events sequence (db/sequences.ts): position 1 is the most recent */
  sequence?: { position: number; field: string };
}

/** Columnar data for one split. Numeric NaN (or ±Infinity) means missing; categorical null means missing. */
export interface Frame {
  ids: string[];
  /** 0 | 1 per row */
  label: Uint8Array;
  numeric: Record<string, Float64Array>;
  categorical: Record<string, (string | null)[]>;
}

export type ClassWeight = 'balanced' | 'none';

/**
 * How numeric features enter the network: standard, quantile, robust, or piecewise-linear (ml/preprocess.ts), or
 * periodic: quantile-scaled, then a learned periodic embedding inside the network (ml/periodic.ts).
 */
export type NumericEncoding = 'standard' | 'quantile' | 'robust' | 'ple' | 'periodic';
export const NUMERIC_ENCODINGS: readonly NumericEncoding[] = Object.freeze(['standard', 'quantile', 'robust', 'ple', 'periodic']);
/** What the preprocessor writes for each numeric encoding ('periodic' reads quantile-scaled values) */
export type MatrixEncoding = Exclude<NumericEncoding, 'periodic'>;
export const MATRIX_ENCODINGS: readonly MatrixEncoding[] = Object.freeze(['standard', 'quantile', 'robust', 'ple']);
/** PLE bins are train quantiles at levels i / bins, kept at a resolution of 1/128: at most 128 bins */
export const MAX_PLE_BINS = 128;
/** the most BatchEnsemble members a trial may ask for */
export const MAX_BATCH_ENSEMBLE = 64;
/** the most GRU units a sequence trial may ask for */
export const MAX_SEQUENCE_UNITS = 256;

export interface MlpParams {
  /** [] is logistic regression (the baseline) */
  hiddenUnits: number[];
  dropout: number;
  l2: number;
  learningRate: number;
  batchSize: number;
  epochs: number;
  classWeight: ClassWeight;
  /** early stopping: epochs without val-loss improvement before stopping */
  patience: number;
  /**
   * Categorical embeddings: each categorical feature's one-hot block is projected to min(embeddingDim, block
   * width) learned dimensions before the hidden layers (numeric columns pass through). 0 or absent: one-hot.
   */
  embeddingDim?: number;
  /** numeric feature encoding the trial trains on; absent: standard */
  numericEncoding?: NumericEncoding;
  /** numericEncoding 'ple': bins per numeric feature */
  pleBins?: number;
  /**
   * numericEncoding 'periodic': the standard deviation of the initial frequencies (Gorishniy et al. 2022's σ, the
   * encoding's one sensitive setting). Absent: DEFAULT_PERIODIC_SIGMA.
   */
  periodicSigma?: number;
  /**
   * BatchEnsemble members (TabM): the first hidden layer holds this many members sharing its weights, each with its
   * own rank-one adapters; the network averages their probabilities (ml/batch-ensemble.ts). 0, 1 or absent: off.
   * Needs a hidden layer; not combined with embeddingDim or sequenceUnits.
   */
  batchEnsemble?: number;
  /**
   * The sequence family: a GRU of this many units reads the last-N-events block (the preprocessor's sequence step)
   * oldest to newest, and its final state joins the aggregate columns before the hidden layers. 0 or absent: none
   * (the sequence columns are not even produced). Not combined with embeddingDim.
   */
  sequenceUnits?: number;
  /**
   * The sequence family without the aggregates: the GRU's final state alone feeds the hidden layers (the aggregate
   * columns are in the input, and cut away). Needs sequenceUnits > 0. Absent or false: joined with the aggregates.
   */
  sequenceAlone?: boolean;
}

/** Ranges for random search. [lo, hi] pairs are inclusive; log ranges are sampled log-uniformly. */
export interface SearchSpace {
  hiddenLayers: [min: number, max: number];
  units: number[];
  dropout: [lo: number, hi: number];
  /** log-uniform; lo = 0 is not allowed (use a tiny value) */
  l2: [lo: number, hi: number];
  /** log-uniform */
  learningRate: [lo: number, hi: number];
  batchSize: number[];
  classWeight: ClassWeight[];
  epochs: number;
  patience: number;
  /** embedding sizes to sample from (0 = one-hot); absent: one-hot only */
  embeddingDim?: number[];
  /** numeric encodings to sample from; absent: standard only */
  numericEncoding?: NumericEncoding[];
  /** PLE bin counts to sample from (trials with numericEncoding 'ple') */
  pleBins?: number[];
  /** log range of the periodic embedding's initial frequency scale (trials with numericEncoding 'periodic') */
  periodicSigma?: [lo: number, hi: number];
  /** BatchEnsemble member counts to sample from (0 or 1 = a plain MLP); absent: plain MLPs only */
  batchEnsemble?: number[];
  /** GRU sizes to sample from (0 = no sequence tower: an MLP or logistic trial); absent: no sequence models */
  sequenceUnits?: number[];
  /** for sequence trials: the GRU alone (true) or joined with the aggregates (false) to sample from; absent: joined */
  sequenceAlone?: boolean[];
}

/** The one default search space (the pipeline config's defaults are these). Deep-frozen: copy it before editing. */
export const DEFAULT_SEARCH_SPACE: Readonly<SearchSpace> = Object.freeze({
  hiddenLayers: Object.freeze([1, 3]) as [number, number],
  units: Object.freeze([16, 32, 64, 128]) as number[],
  dropout: Object.freeze([0, 0.3]) as [number, number],
  l2: Object.freeze([1e-6, 1e-3]) as [number, number],
  learningRate: Object.freeze([3e-4, 1e-2]) as [number, number],
  batchSize: Object.freeze([128, 256, 512]) as number[],
  classWeight: Object.freeze(['none', 'balanced']) as ClassWeight[],
  epochs: 30,
  patience: 5,
  // piecewise-linear encoding beat standardization by +0.005 test ROC-AUC on the synthetic shop (bench accuracy);
  // half the trials keep the cheaper standard encoding
  numericEncoding: Object.freeze(['standard', 'ple']) as NumericEncoding[],
  pleBins: Object.freeze([8, 16]) as number[],
});

/** A serialized tfjs LayersModel: model.json (weightsManifest paths ['weights.bin']) and the weights.bin bytes. */
export interface ModelArtifacts {
  modelJson: Record<string, unknown>;
  weights: Uint8Array;
}

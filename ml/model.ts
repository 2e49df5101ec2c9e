/** The MLP (and its logistic-regression special case), a deterministic training loop, and model (de)serialization. */
import * as tf from '@tensorflow/tfjs';
import { MlError, ML_ERROR } from './errors.js';
import { prAuc, rocAuc, logLoss, brier } from './metrics.js';
import { createRng, deriveSeed, shuffleInPlace } from './random.js';
import { BatchEnsembleDense } from './batch-ensemble.js';
import { PERIODIC_FREQUENCIES, PERIODIC_UNITS, PeriodicEmbedding } from './periodic.js';
import { sequenceBlockWidth, stepWidth, type Preprocessor } from './preprocess.js';
import { DEFAULT_PERIODIC_SIGMA, validateMlpParams } from './search.js';
import type { MlpParams, ModelArtifacts } from './types.js';

export type { ModelArtifacts } from './types.js';

/** A row-major float32 design matrix with 0/1 labels. */
export interface XY {
  x: Float32Array;
  rows: number;
  cols: number;
  y: ArrayLike<number>;
}

export interface EpochMetrics {
  /** 1-based: the number of epochs completed */
  epoch: number;
  /** training objective (class-weighted BCE + L2), mean over the epoch's batches */
  loss: number;
  /** validation objective with the same class weights, no L2; early stopping watches this */
  valLoss: number;
  valAuc: number;
  valPrAuc: number;
  seconds: number;
}

export interface EpochReport extends EpochMetrics {
  /**
   * Checkpoint of the complete training state (weights, Adam moments, best weights, early-stopping counters,
   * history). Call it inside onEpochEnd: after that callback returns, training moves on and it throws.
   */
  state: () => Promise<ModelArtifacts>;
}

export interface TrainMlpInput {
  train: XY;
  val: XY;
  params: MlpParams;
  seed: number;
  /** epochs already completed; taken from initialState when it is a checkpoint from EpochReport.state */
  startEpoch?: number;
  /** a checkpoint (resumes exactly) or plain model artifacts (warm start with a fresh optimizer) */
  initialState?: ModelArtifacts;
  onEpochEnd?: (e: EpochReport) => Promise<void> | void;
  /** polled between batches, e.g. on activity cancellation; training ends with stopReason 'stopped' */
  shouldStop?: () => boolean;
  /** categorical blocks of the input columns: needed when params.embeddingDim > 0 */
  layout?: InputLayout;
  /**
   * Batches between flushes of subnormal weights and Adam moments to zero (flushSubnormals); default FLUSH_EVERY.
   * 0 turns flushing off, for the test that shows it changes no result.
   */
  flushEvery?: number;
}

export interface TrainMlpOutput {
  /** the best epoch's weights (not the last epoch's) */
  artifacts: ModelArtifacts;
  /** every completed epoch, including those before a resume */
  history: EpochMetrics[];
  /** 1-based; 0 if no epoch completed */
  bestEpoch: number;
  stopReason: 'earlyStopping' | 'maxEpochs' | 'stopped';
  val: { auc: number; prAuc: number; logLoss: number; brier: number };
}

/** Saved in checkpoints (modelJson.userDefinedMetadata) so a retried trial continues exactly where it stopped. */
interface TrainState {
  kind: 'propensity-train-state';
  version: 1;
  seed: number;
  params: MlpParams;
  epoch: number;
  bestEpoch: number;
  bestValLoss: number | null;
  wait: number;
  history: EpochMetrics[];
}

const STATE_KEY = 'propensityTrainState';
const ADAM = '__adam__/';
const BEST = '__best__/';
const BCE_EPS = 1e-7; // Keras' epsilon for probability clipping
const PREDICT_BATCH = 8192;
/** The smallest normal float32 (2^-126): below it a value is subnormal. */
const FLT_MIN = 2 ** -126;
/** Batches between two flushes of subnormal weights and Adam moments (see flushSubnormals); one more ends each epoch. */
const FLUSH_EVERY = 64;

/** Dense ReLU layers with dropout and L2, sigmoid output; `hiddenUnits: []` is logistic regression. Seeded init. */
/** Where each categorical feature's one-hot block sits in the input columns (the rest are numeric columns). */
export interface InputLayout {
  blocks: { start: number; width: number }[];
  /**
   * The last-events block (a preprocessor's sequence step under encoding.sequence): `length` positions of `width`
   * columns from column `start` to the end, position 1 (the most recent event) first. What a sequence model's GRU reads.
   */
  sequence?: { start: number; length: number; width: number };
  /** the numeric steps' 0/1 missing flags (`<name>__missing`): what a periodic embedding passes through, not embeds */
  flags?: number[];
}

/**
 * The embedding layer's shape: numeric columns map to themselves (fixed 1s), each categorical block of width w
 * to its own min(embeddingDim, w) outputs (learned). `mask` marks the learned entries, `fixed` the identity part.
 */
export function embeddingStructure(inputDim: number, embeddingDim: number, layout: InputLayout) {
  const inBlock = new Int32Array(inputDim).fill(-1);
  layout.blocks.forEach((b, bi) => {
    for (let c = b.start; c < b.start + b.width; c++) inBlock[c] = bi;
  });
  const numericCols = [...inBlock.keys()].filter((c) => inBlock[c] < 0);
  const dims = layout.blocks.map((b) => Math.min(embeddingDim, b.width));
  const outDim = numericCols.length + dims.reduce((a, d) => a + d, 0);
  const mask = new Float32Array(inputDim * outDim);
  const fixed = new Float32Array(inputDim * outDim);
  numericCols.forEach((c, j) => (fixed[c * outDim + j] = 1));
  let offset = numericCols.length;
  layout.blocks.forEach((b, bi) => {
    for (let c = b.start; c < b.start + b.width; c++) for (let j = offset; j < offset + dims[bi]; j++) mask[c * outDim + j] = 1;
    offset += dims[bi];
  });
  return { outDim, mask, fixed };
}

/** The layout of a preprocessor's output: one block per categorical step (vocabulary + other + missing). */
export function layoutOf(pre: Pick<Preprocessor, 'steps' | 'encoding'>): InputLayout {
  const blocks: InputLayout['blocks'] = [];
  const flags: number[] = [];
  let sequence: InputLayout['sequence'];
  let start = 0;
  for (const step of pre.steps) {
    const width = stepWidth(step, pre.encoding);
    if (step.kind === 'categorical') blocks.push({ start, width });
    if (step.kind === 'numeric' && step.missingIndicator) flags.push(start + width - 1);
    if (step.kind === 'sequence' && width > 0) sequence = { start, length: step.length, width: sequenceBlockWidth(step) };
    start += width;
  }
  return { blocks, ...(sequence ? { sequence } : {}), ...(flags.length ? { flags } : {}) };
}

/**
 * The network of a parameter set: the sequence model (buildSequenceModel) when params.sequenceUnits > 0, a
 * BatchEnsemble MLP (buildBatchEnsembleModel) when params.batchEnsemble > 1, else a sequential MLP (logistic
 * regression for `hiddenUnits: []`). One input of all the matrix columns either way.
 */
export function buildMlp(inputDim: number, params: MlpParams, seed: number, layout?: InputLayout): tf.LayersModel {
  if (!Number.isInteger(inputDim) || inputDim <= 0) {
    throw new MlError(ML_ERROR.InvalidData, `model input needs at least one feature column, got ${inputDim}`);
  }
  const problems = validateMlpParams(params);
  if (problems.length > 0) throw new MlError(ML_ERROR.InvalidConfig, `invalid model parameters: ${problems.join('; ')}`, { problems });
  if ((params.sequenceUnits ?? 0) > 0) return buildSequenceModel(inputDim, params, seed, layout);
  if ((params.batchEnsemble ?? 0) > 1) return buildBatchEnsembleModel(inputDim, params, seed, layout);
  // Explicit names: auto-generated ones ('dense_Dense7') depend on how many models this process built before,
  // which would make the saved model.json (and its sha256) differ between a run and its retry.
  const model = tf.sequential({ name: 'propensity_mlp' });
  const kernelRegularizer = l2Of(params);
  const embed = params.embeddingDim && layout?.blocks.length ? embeddingStructure(inputDim, params.embeddingDim, layout) : null;
  const periodic = params.numericEncoding === 'periodic';
  if (periodic) model.add(periodicLayer(inputDim, params, seed, layout));
  if (embed) {
    // A linear layer whose kernel is block-structured: saved and served as a plain dense layer.
    const layer = tf.layers.dense({ name: 'embed', units: embed.outDim, useBias: false, inputShape: [inputDim], kernelInitializer: 'zeros' });
    model.add(layer);
    const rng = createRng(deriveSeed(seed, 5));
    const scale = 1 / Math.sqrt(Math.max(1, params.embeddingDim!));
    const init = embed.fixed.map((f, i) => (embed.mask[i] ? (rng.next() * 2 - 1) * scale : f));
    tf.tidy(() => layer.setWeights([tf.tensor2d(init, [inputDim, embed.outDim])]));
  }
  const first = !embed && !periodic ? [inputDim] : undefined; // the first layer's input shape, when nothing precedes it
  params.hiddenUnits.forEach((units, i) => {
    model.add(hiddenDense(i, units, seed, kernelRegularizer, i === 0 ? first : undefined));
    // Kept in the graph for fidelity; the training loop applies its own per-step-seeded dropout (see trainMlp).
    if (params.dropout > 0) model.add(tf.layers.dropout({ name: `dropout_${i + 1}`, rate: params.dropout }));
  });
  model.add(outputDense(seed, kernelRegularizer, params.hiddenUnits.length === 0 ? first : undefined));
  return model;
}

type Regularizer = ReturnType<typeof tf.regularizers.l2>;

/** Every family's L2 penalty on its dense kernels (none at l2 0). */
const l2Of = (params: MlpParams) => (params.l2 > 0 ? tf.regularizers.l2({ l2: params.l2 }) : undefined);

/**
 * Hidden layer i (0-based) of every family: ReLU, named hidden_<i+1> (graphLogits applies dropout after layers so
 * named), He-normal from the seed's stream (1, i). One definition, so a saved model of any family reads the same.
 */
const hiddenDense = (i: number, units: number, seed: number, kernelRegularizer?: Regularizer, inputShape?: number[]) =>
  tf.layers.dense({
    name: `hidden_${i + 1}`,
    units,
    activation: 'relu',
    ...(inputShape ? { inputShape } : {}),
    kernelInitializer: tf.initializers.heNormal({ seed: deriveSeed(seed, 1, i) }),
    kernelRegularizer,
  });

/** The output layer of every family: one sigmoid unit named 'output' (graphLogits stops at its logits), Glorot-uniform from the seed's stream 2. */
const outputDense = (seed: number, kernelRegularizer?: Regularizer, inputShape?: number[]) =>
  tf.layers.dense({
    name: 'output',
    units: 1,
    activation: 'sigmoid',
    ...(inputShape ? { inputShape } : {}),
    kernelInitializer: tf.initializers.glorotUniform({ seed: deriveSeed(seed, 2) }),
    kernelRegularizer,
  });

/** The periodic embedding of the numeric values (every column outside the layout's categorical blocks and missing flags). */
function periodicLayer(inputDim: number, params: MlpParams, seed: number, layout?: InputLayout): PeriodicEmbedding {
  if (!layout) {
    throw new MlError(ML_ERROR.InvalidConfig, `numericEncoding 'periodic' needs the input layout (layoutOf(preprocessor)) to tell numeric columns from categorical ones`);
  }
  const passed = new Set([...layout.blocks.flatMap((b) => Array.from({ length: b.width }, (_, i) => b.start + i)), ...(layout.flags ?? [])]);
  const columns = Array.from({ length: inputDim }, (_, c) => c);
  const numericColumns = columns.filter((c) => !passed.has(c));
  if (numericColumns.length === 0) {
    throw new MlError(ML_ERROR.InvalidConfig, `numericEncoding 'periodic' needs at least one numeric feature; this matrix has only categorical columns and missing flags`);
  }
  return new PeriodicEmbedding({
    name: 'periodic',
    inputShape: [inputDim],
    numericColumns,
    otherColumns: columns.filter((c) => passed.has(c)),
    frequencies: PERIODIC_FREQUENCIES,
    units: PERIODIC_UNITS,
    sigma: params.periodicSigma ?? DEFAULT_PERIODIC_SIGMA,
    seed: deriveSeed(seed, 8),
    l2: params.l2,
  });
}

/**
 * The sequence family: one input of all the columns, cut (stock Reshape and Cropping2D layers, tfjs having no Cropping1D, so any tfjs loader
 * reads it) into the aggregate columns and the last-events block, reshaped to [positions, width]. A GRU reads the
 * positions oldest to newest (goBackwards: the columns run newest first), so the most recent event is read last;
 * its final state joins the aggregate columns (or, with params.sequenceAlone, goes on alone: the aggregate columns
 * are cut away unread), then come the MLP's hidden ReLU layers and sigmoid output. Seeded
 * initializers and explicit names throughout (model.json is identical between a run and its retry). No Dropout
 * layers: tfjs' unseeded ones draw from Math.random; trainMlp applies its own seeded dropout after each hidden layer.
 */
export function buildSequenceModel(inputDim: number, params: MlpParams, seed: number, layout?: InputLayout): tf.LayersModel {
  const seq = layout?.sequence;
  if (!seq) {
    throw new MlError(
      ML_ERROR.InvalidConfig,
      `sequenceUnits ${params.sequenceUnits} needs the last-events columns: train on a run with source.sequenceLength > 0, transformed with encoding.sequence (encodingOf(params))`,
    );
  }
  const { start, length, width } = seq;
  if (!(Number.isInteger(start) && start >= 0 && length >= 1 && width >= 1 && start + length * width === inputDim)) {
    throw new MlError(ML_ERROR.InvalidData, `the sequence block (${length} positions of ${width} columns from column ${start}) must end the ${inputDim} input columns`);
  }
  const kernelRegularizer = l2Of(params);
  const input = tf.input({ shape: [inputDim], name: 'features' });
  const column = tf.layers.reshape({ name: 'columns', targetShape: [inputDim, 1, 1] }).apply(input) as tf.SymbolicTensor;
  const cut = tf.layers.cropping2D({ name: 'events_cut', cropping: [[start, 0], [0, 0]] }).apply(column) as tf.SymbolicTensor;
  const events = tf.layers.reshape({ name: 'events', targetShape: [length, width] }).apply(cut) as tf.SymbolicTensor;
  const state = tf.layers
    .gru({
      name: 'gru',
      units: params.sequenceUnits!,
      goBackwards: true,
      recurrentActivation: 'sigmoid',
      kernelInitializer: tf.initializers.glorotUniform({ seed: deriveSeed(seed, 6, 0) }),
      recurrentInitializer: tf.initializers.glorotUniform({ seed: deriveSeed(seed, 6, 1) }),
      kernelRegularizer,
    })
    .apply(events) as tf.SymbolicTensor;
  let h = state;
  if (start > 0 && !params.sequenceAlone) {
    const aggCut = tf.layers.cropping2D({ name: 'aggregates_cut', cropping: [[0, length * width], [0, 0]] }).apply(column) as tf.SymbolicTensor;
    const aggregates = tf.layers.reshape({ name: 'aggregates', targetShape: [start] }).apply(aggCut) as tf.SymbolicTensor;
    h = tf.layers.concatenate({ name: 'joined' }).apply([aggregates, state]) as tf.SymbolicTensor;
  }
  params.hiddenUnits.forEach((units, i) => {
    h = hiddenDense(i, units, seed, kernelRegularizer).apply(h) as tf.SymbolicTensor;
  });
  const output = outputDense(seed, kernelRegularizer).apply(h) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: output, name: 'propensity_sequence' });
}

/**
 * The BatchEnsemble MLP (TabM): [the periodic embedding →] a BatchEnsembleDense first hidden layer of k members →
 * the other hidden layers and the sigmoid output, shared by the members and applied to each → the mean of the k
 * probabilities (a stock GlobalAveragePooling1D). Training (graphLogits) stops at the output layer's logits,
 * [batch·k], and takes the mean of the members' losses.
 */
export function buildBatchEnsembleModel(inputDim: number, params: MlpParams, seed: number, layout?: InputLayout): tf.LayersModel {
  const kernelRegularizer = l2Of(params);
  const input = tf.input({ shape: [inputDim], name: 'features' });
  let h = params.numericEncoding === 'periodic' ? (periodicLayer(inputDim, params, seed, layout).apply(input) as tf.SymbolicTensor) : input;
  params.hiddenUnits.forEach((units, i) => {
    const layer =
      i === 0
        ? new BatchEnsembleDense({ name: 'hidden_1', units, members: params.batchEnsemble!, seed: deriveSeed(seed, 1, 0), l2: params.l2 })
        : hiddenDense(i, units, seed, kernelRegularizer);
    h = layer.apply(h) as tf.SymbolicTensor;
  });
  const output = outputDense(seed, kernelRegularizer).apply(h) as tf.SymbolicTensor;
  const mean = tf.layers.globalAveragePooling1d({ name: 'members_mean' }).apply(output) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: mean, name: 'propensity_batch_ensemble' });
}

/**
 * The training forward pass of any single-input graph, returning the output layer's logits: each layer applied to
 * the tensors of its inbound layers in order, the output layer ('output', a dense sigmoid) left linear and the last
 * one computed (a BatchEnsemble's members are averaged after it: their logits come back, [batch·k, 1]), seeded
 * dropout after each hidden layer (per (epoch, batch, layer), as in the sequential path).
 */
function graphLogits(model: tf.LayersModel, x: tf.Tensor, dropout: (h: tf.Tensor, layerIndex: number) => tf.Tensor): tf.Tensor {
  const out = new Map<string, tf.Tensor>();
  for (const [li, l] of model.layers.entries()) {
    if (l.getClassName() === 'InputLayer') {
      out.set(l.name, x);
      continue;
    }
    const ins = l.inboundNodes[0].inboundLayers.map((from) => {
      const t = out.get(from.name);
      if (!t) throw new Error(`layer ${l.name} reads ${from.name}, which comes later in model.layers`);
      return t;
    });
    let h: tf.Tensor;
    if (l.name === 'output') {
      const [kernel, bias] = l.trainableWeights.map((w) => w.read());
      // a BatchEnsemble's [batch, k, units]: one row per (row, member), row-major
      const a = ins[0].rank === 3 ? tf.reshape(ins[0], [-1, ins[0].shape[2]!]) : ins[0];
      return tf.fused.matMul({ a: a as tf.Tensor2D, b: kernel as tf.Tensor2D, bias });
    } else {
      h = l.apply(ins.length === 1 ? ins[0] : ins, { training: true }) as tf.Tensor;
      if (l.name.startsWith('hidden_')) h = dropout(h, li);
    }
    out.set(l.name, h);
  }
  throw new Error(`model ${model.name} has no layer named 'output'`);
}

// ---------------------------------------------------------------------------------------------------------------
// Serialization

/** model.json + weights.bin bytes; `extra` tensors are appended in the 'optimizer' group, which stock loaders skip. */
async function toArtifacts(
  model: tf.LayersModel,
  extra?: { tensors: { name: string; tensor: tf.Tensor }[]; metadata: object },
): Promise<ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      saved = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (saved?.weightData == null || saved.weightSpecs == null) throw new Error('tfjs save produced no weights');
  let specs = saved.weightSpecs;
  let data = tf.io.CompositeArrayBuffer.join(saved.weightData);
  if (extra) {
    const enc = await tf.io.encodeWeights(extra.tensors, 'optimizer');
    specs = [...specs, ...enc.specs];
    data = tf.io.concatenateArrayBuffers([data, enc.data]);
  }
  const modelJson: Record<string, unknown> = {
    modelTopology: saved.modelTopology,
    format: saved.format,
    generatedBy: saved.generatedBy,
    convertedBy: saved.convertedBy ?? null,
    weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
  };
  if (extra) modelJson.userDefinedMetadata = { [STATE_KEY]: extra.metadata };
  return { modelJson, weights: new Uint8Array(data) };
}

/** Serialize a model to model.json (weightsManifest paths ['weights.bin']) and weights.bin bytes. */
export function serializeModel(model: tf.LayersModel): Promise<ModelArtifacts> {
  return toArtifacts(model);
}

function parseArtifacts(a: ModelArtifacts): tf.io.ModelArtifacts {
  const j = a?.modelJson as Record<string, unknown> | undefined;
  const manifest = j?.weightsManifest as tf.io.WeightsManifestConfig | undefined;
  if (j?.modelTopology == null || !Array.isArray(manifest) || !(a.weights instanceof Uint8Array)) {
    throw new MlError(ML_ERROR.InvalidData, 'model artifacts need a model.json with modelTopology and weightsManifest, and weights bytes');
  }
  const weightSpecs = manifest.flatMap((g) => g.weights);
  const quantized = weightSpecs.some((s) => s.quantization != null);
  const expected = quantized ? a.weights.byteLength : weightSpecs.reduce((n, s) => n + s.shape.reduce((p, d) => p * d, 1) * (s.dtype === 'bool' ? 1 : 4), 0);
  if (expected !== a.weights.byteLength) {
    throw new MlError(ML_ERROR.InvalidData, `weights.bin has ${a.weights.byteLength} bytes but model.json describes ${expected}`);
  }
  return {
    modelTopology: j.modelTopology as object,
    format: j.format as string | undefined,
    generatedBy: j.generatedBy as string | undefined,
    convertedBy: j.convertedBy as string | null | undefined,
    weightSpecs,
    // copy: the buffer may be a view into a larger one (a Node Buffer pool)
    weightData: a.weights.slice().buffer,
  };
}

/**
 * Load artifacts from serializeModel or a checkpoint (its training state is ignored). Dispose the model after use.
 * Subnormal weights are flushed to 0 as they load (see flushSubnormals): models trained before training flushed them
 * carry many (30 % of an e2e trial's first layer), and on wasm they slow every prediction down for the same
 * probabilities (measured offline: 300k rows through [128, 64, 32] over 300 columns, 30 % of the first layer
 * subnormal, 73.5 s against 1.7 s flushed).
 */
export async function loadModel(artifacts: ModelArtifacts): Promise<tf.LayersModel> {
  const parsed = parseArtifacts(artifacts);
  delete parsed.userDefinedMetadata;
  const model = await tf.loadLayersModel(tf.io.fromMemory(parsed));
  flushSubnormals(model.weights.map((w) => w.read() as tf.Variable));
  return model;
}

/** P(y = 1) for each row of a row-major matrix, in batches. Loads and disposes the model if given artifacts. */
export async function predict(
  modelOrArtifacts: tf.LayersModel | ModelArtifacts,
  x: Float32Array,
  rows: number,
  cols: number,
): Promise<Float32Array> {
  if (x.length !== rows * cols) throw new MlError(ML_ERROR.InvalidData, `matrix has ${x.length} values, expected ${rows} x ${cols}`);
  const owned = !(modelOrArtifacts instanceof tf.LayersModel);
  const model = owned ? await loadModel(modelOrArtifacts as ModelArtifacts) : (modelOrArtifacts as tf.LayersModel);
  try {
    const inputDim = model.inputs[0].shape[1];
    if (inputDim !== cols) {
      throw new MlError(ML_ERROR.InvalidData, `model expects ${inputDim} feature columns but the matrix has ${cols}; was it transformed with this model's preprocessor?`);
    }
    return await predictRows(model, x, rows, cols);
  } finally {
    if (owned) model.dispose();
  }
}

/**
 * A pause for the event loop once `ms` have passed since the last one: long tfjs work (an epoch, a GRU's prediction of
 * many rows, a loop of predictions) runs synchronously, and `await` of a promise that is already settled does not let
 * timers and I/O through, so without it a worker's heartbeats, cancellations and workflow tasks wait until the work ends.
 */
function eventLoopPause(ms = 50): () => Promise<void> {
  let last = performance.now();
  return async () => {
    if (performance.now() - last <= ms) return;
    await new Promise((r) => setImmediate(r));
    last = performance.now();
  };
}

/**
 * Sets every subnormal entry (0 < |x| < 2^-126) of the given variables to 0, in place. Why: weights that get no data
 * gradient (those of an input that is 0 in every train row, such as a PLE bin no train row reaches or a one-hot level
 * absent from train, or of a unit that never activates) shrink geometrically under Adam with an L2 penalty, and stick
 * at a subnormal value once the update rounds to nothing. wasm has no flush-to-zero mode, and x86 takes a slow
 * microcode path for every multiply with a subnormal operand, so a trial's epochs grew up to 3x slower as such weights
 * accumulated (the e2e bench's t003: 19.5 to 56 s). A subnormal weight adds less than 2^-126 × |x| to a pre-activation,
 * below the rounding of any sum it enters, so zeroing it changes no output; it only stops the slow path.
 */
export function flushSubnormals(vars: readonly tf.Variable[]): void {
  tf.tidy(() => {
    for (const v of vars) v.assign(tf.where(tf.less(tf.abs(v), FLT_MIN), tf.zerosLike(v), v));
  });
}

/** The trainable variables and Adam's moment variables (none before its first step). */
async function flushable(vars: readonly tf.Variable[], optimizer: tf.AdamOptimizer): Promise<tf.Variable[]> {
  const adam = await optimizer.getWeights();
  adam[0]?.tensor.dispose(); // the iteration counter is a fresh scalar; the moments are the optimizer's own variables
  return [...vars, ...adam.slice(1).map((w) => w.tensor as tf.Variable)];
}

async function predictRows(model: tf.LayersModel, x: Float32Array, rows: number, cols: number): Promise<Float32Array> {
  const out = new Float32Array(rows);
  const pause = eventLoopPause();
  for (let start = 0; start < rows; start += PREDICT_BATCH) {
    const n = Math.min(PREDICT_BATCH, rows - start);
    // batchSize n: predict's default of 32 rows slices the input 256 times per call, and the wasm backend's slice
    // copies the whole input each time (a 40k-row validation pass copied ~2.5 GB).
    const p = tf.tidy(() => (model.predict(tf.tensor2d(x.subarray(start * cols, (start + n) * cols), [n, cols]), { batchSize: n }) as tf.Tensor).dataSync());
    out.set(p, start);
    await pause(); // after each batch, so that a loop of one-batch predictions (importance, ensembles) pauses too
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Training

function checkXY(d: XY, split: string): { pos: number } {
  if (d.rows === 0) throw new MlError(ML_ERROR.EmptyDataset, `${split} split has no rows`);
  if (d.x.length !== d.rows * d.cols || d.y.length !== d.rows) {
    throw new MlError(ML_ERROR.InvalidData, `${split} split: x has ${d.x.length} values and y ${d.y.length}, expected ${d.rows} x ${d.cols} and ${d.rows}`);
  }
  for (let i = 0; i < d.x.length; i++) {
    if (!Number.isFinite(d.x[i])) {
      throw new MlError(ML_ERROR.InvalidData, `${split} split: non-finite feature value at row ${Math.floor(i / d.cols)}, column ${i % d.cols} (preprocess first)`);
    }
  }
  let pos = 0;
  for (let i = 0; i < d.rows; i++) {
    const y = d.y[i];
    if (y !== 0 && y !== 1) throw new MlError(ML_ERROR.InvalidData, `${split} split: label at row ${i} is ${y}, expected 0 or 1`);
    pos += y;
  }
  if (pos === 0 || pos === d.rows) {
    throw new MlError(ML_ERROR.SingleClassLabel, `${split} split has only one label class (${pos} positives in ${d.rows} rows); widen the horizon or the population`);
  }
  return { pos };
}

/** Weighted mean BCE in float64, the same objective as training (minus L2). */
/** Moves the output layer's bias by −shift (logits): the prior-shift correction of a class-weighted model. */
export function priorShift(model: tf.LayersModel, shift: number): void {
  const out = model.getLayer('output');
  tf.tidy(() => {
    const [kernel, bias] = out.getWeights();
    out.setWeights([kernel, tf.sub(bias, shift)]);
  });
}

function weightedLogLoss(y: ArrayLike<number>, p: Float32Array, w0: number, w1: number): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) {
    const q = Math.min(Math.max(p[i], BCE_EPS), 1 - BCE_EPS);
    s -= y[i] === 1 ? w1 * Math.log(q) : w0 * Math.log(1 - q);
  }
  return s / p.length;
}

/** Key-order-independent JSON, so params that went through a JSON round trip still compare equal. */
const canonical = (o: object): string => JSON.stringify(o, Object.keys(o).sort());

function readState(a: ModelArtifacts): TrainState | undefined {
  const meta = (a.modelJson as { userDefinedMetadata?: Record<string, unknown> }).userDefinedMetadata;
  const s = meta?.[STATE_KEY] as TrainState | undefined;
  return s?.kind === 'propensity-train-state' ? s : undefined;
}

/**
 * Train with Adam on seeded mini-batches, early stopping on the validation objective, restoring the best weights.
 * Deterministic for a given seed on a given backend: the shuffle and dropout masks are derived from
 * (seed, epoch, batch), so a run resumed from a checkpoint ends with byte-identical artifacts.
 */
export async function trainMlp(input: TrainMlpInput): Promise<TrainMlpOutput> {
  const { train, val, params, seed, onEpochEnd, shouldStop, flushEvery = FLUSH_EVERY } = input;
  const { pos } = checkXY(train, 'train');
  checkXY(val, 'val');
  if (val.cols !== train.cols) throw new MlError(ML_ERROR.InvalidData, `val has ${val.cols} columns but train has ${train.cols}`);
  const model = buildMlp(train.cols, params, seed, input.layout);
  const embed = params.embeddingDim && input.layout?.blocks.length ? embeddingStructure(train.cols, params.embeddingDim, input.layout) : null;
  // sklearn's 'balanced': n / (2 * n_class), so the mean weight over train is 1 and the loss scale is unchanged.
  const [w0, w1] = params.classWeight === 'balanced' ? [train.rows / (2 * (train.rows - pos)), train.rows / (2 * pos)] : [1, 1];

  const owned: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => (owned.push(t), t);
  let best: tf.Tensor[] | undefined;
  const optimizer = tf.train.adam(params.learningRate);
  try {
    let state: TrainState = {
      kind: 'propensity-train-state', version: 1, seed, params,
      epoch: input.startEpoch ?? 0, bestEpoch: 0, bestValLoss: null, wait: 0, history: [],
    };
    if (input.initialState) {
      const resumed = await restore(model, optimizer, input.initialState, state);
      best = resumed.best;
      state = { ...resumed.state, params }; // the (possibly larger) epoch budget of this call
    }
    const xTrain = keep(tf.tensor2d(train.x, [train.rows, train.cols]));
    const yTrain = keep(tf.tensor1d(Float32Array.from(train.y)));
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    // a sequential MLP takes the fast path below; any other graph (the sequence model) the generic graphLogits
    const sequential = model instanceof tf.Sequential;
    // The training forward pass uses the layers' variables directly: fewer ops per step than layer.apply.
    const layers = model.layers.map((l) => {
      const [kernel, bias] = l.trainableWeights.map((w) => w.read());
      return { layer: l, dropout: l.getClassName() === 'Dropout', embed: l.name === 'embed', periodic: l instanceof PeriodicEmbedding, kernel, bias };
    });
    // The embedding kernel trains through its mask only: the identity part for numeric columns and the zeros
    // between blocks get no gradient, so (with Adam starting at zero moments) they never move.
    const embedMask = embed ? keep(tf.tensor2d(embed.mask, [train.cols, embed.outDim])) : null;
    const embedFixed = embed ? keep(tf.tensor2d(embed.fixed, [train.cols, embed.outDim])) : null;
    const regularizers = model.layers.flatMap((l) => l.losses);
    const members = (params.batchEnsemble ?? 0) > 1 ? params.batchEnsemble! : 1;
    let stopReason: TrainMlpOutput['stopReason'] = 'maxEpochs';
    if (state.wait > 0 && state.wait >= params.patience) stopReason = 'earlyStopping';
    const pause = eventLoopPause();

    while (stopReason === 'maxEpochs' && state.epoch < params.epochs) {
      const t0 = performance.now();
      const epoch = state.epoch; // 0-based index of the epoch being trained
      const order = shuffleInPlace(Int32Array.from({ length: train.rows }, (_, i) => i), createRng(deriveSeed(seed, 3, epoch)));
      const costs: tf.Scalar[] = [];
      const sizes: number[] = [];
      for (let b = 0, start = 0; start < train.rows; b++, start += params.batchSize) {
        if (shouldStop?.()) {
          stopReason = 'stopped';
          break;
        }
        const n = Math.min(params.batchSize, train.rows - start);
        const cost = tf.tidy(() => {
          // the batch's indices straight from JS: slicing a permutation tensor made the wasm backend copy all of it
          // every batch (readSync of the whole input)
          const idx = tf.tensor1d(order.subarray(start, start + n), 'int32');
          const xb = tf.gather(xTrain, idx);
          // a BatchEnsemble's k members each see the batch: the label repeated per member, as its logits come
          const yb = members > 1 ? tf.reshape(tf.tile(tf.expandDims(tf.gather(yTrain, idx), 1), [1, members]), [-1]) : tf.gather(yTrain, idx);
          return optimizer.minimize(() => {
            let h: tf.Tensor = xb;
            if (!sequential) {
              h = graphLogits(model, xb, (t, li) => (params.dropout > 0 ? tf.dropout(t, params.dropout, undefined, deriveSeed(seed, 4, epoch, b, li)) : t));
            } else for (const [li, l] of layers.entries()) {
              // tfjs Dropout with a fixed seed draws the same mask every step, and without one uses Math.random;
              // a per-(epoch, batch, layer) seed is both varied and reproducible across retries.
              if (l.dropout) h = tf.dropout(h, params.dropout, undefined, deriveSeed(seed, 4, epoch, b, li));
              // the output layer stays linear here: BCE on logits is exact where sigmoid + clipping saturates
              else if (l.embed) h = tf.matMul(h, tf.add(tf.mul(l.kernel!, embedMask!), embedFixed!));
              else if (l.periodic) h = l.layer.apply(h) as tf.Tensor;
              else h = tf.fused.matMul({ a: h, b: l.kernel!, bias: l.bias, activation: li === layers.length - 1 ? 'linear' : 'relu' });
            }
            const z = tf.reshape(h, [-1]);
            // log(1 + e^z) - y z, written stably as max(z, 0) - y z + log1p(e^-|z|)
            let perRow = tf.add(tf.sub(tf.relu(z), tf.mul(z, yb)), tf.log1p(tf.exp(tf.neg(tf.abs(z)))));
            if (w0 !== 1 || w1 !== 1) perRow = tf.mul(perRow, tf.add(tf.mul(yb, w1 - w0), w0));
            let loss = tf.mean(perRow) as tf.Scalar;
            for (const r of regularizers) loss = tf.add(loss, r());
            return loss;
          }, true, vars) as tf.Scalar;
        });
        costs.push(cost);
        sizes.push(n);
        if (flushEvery > 0 && (b + 1) % flushEvery === 0) flushSubnormals(await flushable(vars, optimizer));
        await pause(); // heartbeats and cancellation get through during a long epoch
      }
      if (stopReason === 'stopped') {
        tf.dispose(costs);
        break;
      }
      const loss = tf.tidy(() => tf.div(tf.addN(costs.map((c, i) => tf.mul(c, sizes[i]))), train.rows).dataSync()[0]);
      tf.dispose(costs);
      if (!Number.isFinite(loss)) {
        throw new MlError(ML_ERROR.NonFiniteLoss, `training loss became ${loss} in epoch ${epoch + 1} (learningRate ${params.learningRate}, batchSize ${params.batchSize}); lower the learning rate`, { epoch: epoch + 1 });
      }
      if (flushEvery > 0) flushSubnormals(await flushable(vars, optimizer)); // before val predicts and best copies
      const pv = await predictRows(model, val.x, val.rows, val.cols);
      const valLoss = weightedLogLoss(val.y, pv, w0, w1);
      if (!Number.isFinite(valLoss)) {
        throw new MlError(ML_ERROR.NonFiniteLoss, `validation loss became ${valLoss} in epoch ${epoch + 1}`, { epoch: epoch + 1 });
      }
      const metrics: EpochMetrics = {
        epoch: epoch + 1, loss, valLoss, valAuc: rocAuc(val.y, pv), valPrAuc: prAuc(val.y, pv),
        seconds: (performance.now() - t0) / 1000,
      };
      const improved = state.bestValLoss === null || valLoss < state.bestValLoss;
      if (improved) {
        tf.dispose(best);
        best = model.getWeights().map((w) => tf.clone(w));
      }
      state = {
        ...state,
        epoch: epoch + 1,
        history: [...state.history, metrics],
        ...(improved ? { bestEpoch: epoch + 1, bestValLoss: valLoss, wait: 0 } : { wait: state.wait + 1 }),
      };
      if (onEpochEnd) {
        const snapshot = state;
        let live = true;
        await onEpochEnd({
          ...metrics,
          state: async () => {
            if (!live) throw new Error(`state() of epoch ${metrics.epoch} called after onEpochEnd returned; the weights have moved on`);
            return checkpoint(model, optimizer, best!, snapshot);
          },
        });
        live = false;
      }
      if (!improved && state.wait >= params.patience) stopReason = 'earlyStopping';
    }

    if (best) model.setWeights(best);
    // Class weights shift the optimum of the weighted loss to logit(p_w) = logit(p) + log(w1/w0) (a prior shift):
    // the served model gets its output bias moved back by log(w1/w0), so its probabilities estimate P(y = 1) again.
    // A monotone shift: the ranking, and so every AUC, is unchanged. Checkpoints keep the training state as it was.
    if (w0 !== w1) priorShift(model, Math.log(w1 / w0));
    const pv = await predictRows(model, val.x, val.rows, val.cols);
    return {
      artifacts: await serializeModel(model),
      history: state.history,
      bestEpoch: state.bestEpoch,
      stopReason,
      val: { auc: rocAuc(val.y, pv), prAuc: prAuc(val.y, pv), logLoss: logLoss(val.y, pv), brier: brier(val.y, pv) },
    };
  } finally {
    tf.dispose(owned);
    tf.dispose(best);
    optimizer.dispose();
    model.dispose();
  }
}

async function checkpoint(model: tf.LayersModel, optimizer: tf.AdamOptimizer, best: tf.Tensor[], state: TrainState): Promise<ModelArtifacts> {
  const adam = await optimizer.getWeights();
  try {
    const tensors: { name: string; tensor: tf.Tensor }[] = [
      ...adam.map((w, i) => ({ name: `${ADAM}${i}`, tensor: w.tensor })),
      ...adamPowers(optimizer).map((t, i) => ({ name: `${ADAM}beta${i + 1}_power`, tensor: t })),
      ...best.map((t, i) => ({ name: `${BEST}${i}`, tensor: t })),
    ];
    return await toArtifacts(model, { tensors, metadata: state });
  } finally {
    adam[0].tensor.dispose(); // the iteration counter is a fresh scalar; the moments are the optimizer's own variables
  }
}

/**
 * Adam's running beta powers. setWeights recomputes them as pow(beta, t), which differs from the running product in
 * the last float32 bit, so a resumed run would drift from a straight one; they are checkpointed as they are.
 * (Private fields of tfjs-core 4.x; absent in another version, resume is then merely approximate.)
 */
function adamPowers(optimizer: tf.AdamOptimizer): tf.Variable[] {
  const o = optimizer as unknown as { accBeta1?: tf.Variable; accBeta2?: tf.Variable };
  return o.accBeta1 instanceof tf.Variable && o.accBeta2 instanceof tf.Variable ? [o.accBeta1, o.accBeta2] : [];
}

/** Load a checkpoint (or plain model) into a freshly built model and optimizer. */
async function restore(
  model: tf.LayersModel,
  optimizer: tf.AdamOptimizer,
  artifacts: ModelArtifacts,
  fresh: TrainState,
): Promise<{ state: TrainState; best?: tf.Tensor[] }> {
  const parsed = parseArtifacts(artifacts);
  const saved = readState(artifacts);
  // The epoch budget may grow (successive halving promotes a trial by resuming it with more epochs); every other
  // parameter must match, or the weights and optimizer state belong to a different configuration.
  const sameConfig = (a: MlpParams, b: MlpParams) => canonical({ ...a, epochs: 0 }) === canonical({ ...b, epochs: 0 });
  if (saved && (saved.seed !== fresh.seed || !sameConfig(saved.params, fresh.params))) {
    throw new MlError(ML_ERROR.InvalidConfig, 'checkpoint was written by a trial with different params or seed; refusing to resume from it');
  }
  const named = tf.io.decodeWeights(parsed.weightData!, parsed.weightSpecs!);
  try {
    const modelWeights = model.weights.map((w) => {
      const t = named[w.originalName];
      if (t === undefined || t.shape.join() !== w.shape.join()) {
        throw new MlError(ML_ERROR.InvalidConfig, `checkpoint weight '${w.originalName}' is missing or has another shape; it belongs to a different model`);
      }
      return t;
    });
    model.setWeights(modelWeights);
    if (!saved) return { state: fresh }; // plain model: warm start at startEpoch with a fresh optimizer
    const adam = Object.keys(named).filter((k) => /^__adam__\/\d+$/.test(k)).sort((a, b) => +a.slice(ADAM.length) - +b.slice(ADAM.length));
    if (adam.length > 1) await optimizer.setWeights(adam.map((k) => ({ name: k, tensor: named[k] })));
    adamPowers(optimizer).forEach((v, i) => {
      const saved = named[`${ADAM}beta${i + 1}_power`];
      if (saved) v.assign(saved);
    });
    const hasBest = named[`${BEST}0`] !== undefined;
    return { state: saved, best: hasBest ? model.weights.map((_, i) => tf.clone(named[`${BEST}${i}`])) : undefined };
  } finally {
    tf.dispose(Object.values(named));
  }
}

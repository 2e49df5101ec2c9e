import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../ml/backend.js';
import { buildEnsembleModel } from '../../ml/ensemble.js';
import { MlError } from '../../ml/errors.js';
import { buildMlp, layoutOf, loadModel, predict, serializeModel, trainMlp, type XY } from '../../ml/model.js';
import { PERIODIC_FREQUENCIES, PERIODIC_UNITS } from '../../ml/periodic.js';
import { fitPreprocessor, transform, withEncoding, type Preprocessor } from '../../ml/preprocess.js';
import { createRng } from '../../ml/random.js';
import { DEFAULT_PERIODIC_SIGMA_RANGE, encodingOf, sampleTrials, validateMlpParams, validateSearchSpace } from '../../ml/search.js';
import { DEFAULT_SEARCH_SPACE, type FeatureSpec, type Frame, type MlpParams, type ModelArtifacts } from '../../ml/types.js';

const SPECS: FeatureSpec[] = [
  { name: 'x', kind: 'numeric' },
  { name: 'noise', kind: 'numeric' },
  { name: 'region', kind: 'categorical' },
];

/** y ~ Bernoulli(sigmoid(3 sin(5x))), x uniform on [0, 6): five up-and-down waves a ReLU MLP on x must piece together */
function waveTask(rows: number, seed: number): Frame {
  const rng = createRng(seed);
  const x = Float64Array.from({ length: rows }, () => rng.next() * 6);
  const label = Uint8Array.from(x, (v) => (rng.next() < 1 / (1 + Math.exp(-3 * Math.sin(5 * v))) ? 1 : 0));
  return {
    ids: Array.from({ length: rows }, (_, i) => `u${seed}_${i}`),
    label,
    numeric: { x, noise: Float64Array.from({ length: rows }, (_, i) => (i % 17 === 0 ? NaN : rng.next())) },
    categorical: { region: Array.from({ length: rows }, () => ['north', 'south', 'east'][rng.int(3)]) },
  };
}

const trainFrame = waveTask(3000, 1);
const valFrame = waveTask(1000, 2);
const pre = fitPreprocessor(trainFrame, SPECS);
const xy = (p: Preprocessor, f: Frame): XY => ({ ...transform(p, f), y: f.label });
const base: MlpParams = { hiddenUnits: [16], dropout: 0, l2: 1e-5, learningRate: 0.01, batchSize: 64, epochs: 10, classWeight: 'none', patience: 10 };
const periodic: MlpParams = { ...base, numericEncoding: 'periodic', periodicSigma: 1 };
const bytesEqual = (a: ModelArtifacts, b: ModelArtifacts) =>
  JSON.stringify(a.modelJson) === JSON.stringify(b.modelJson) && Buffer.compare(a.weights, b.weights) === 0;

beforeAll(async () => {
  await initBackend('wasm');
});

describe('periodic encoding in the search', () => {
  it('reads quantile-scaled columns; its σ is drawn from a stream of its own, so other spaces sample what they did', () => {
    expect(encodingOf(periodic)).toEqual({ numeric: 'quantile' });
    const space = { ...DEFAULT_SEARCH_SPACE, numericEncoding: ['standard' as const, 'periodic' as const], embeddingDim: [0, 4], sequenceUnits: [0, 8] };
    const trials = sampleTrials(space, 16, 9);
    const periodicTrials = trials.filter((t) => t.numericEncoding === 'periodic');
    expect(periodicTrials.length).toBeGreaterThan(0);
    for (const t of periodicTrials) {
      expect(t.periodicSigma).toBeGreaterThanOrEqual(DEFAULT_PERIODIC_SIGMA_RANGE[0]);
      expect(t.periodicSigma).toBeLessThanOrEqual(DEFAULT_PERIODIC_SIGMA_RANGE[1]);
      expect([t.embeddingDim, t.sequenceUnits]).toEqual([undefined, undefined]); // one-hot categoricals, no GRU
    }
    // a sequence trial that drew 'periodic' reads the same quantile columns plainly; every trial is valid
    expect(trials.some((t) => t.sequenceUnits && t.numericEncoding === 'quantile')).toBe(true);
    for (const t of trials) expect(validateMlpParams(t)).toEqual([]);
    expect(trials.filter((t) => t.numericEncoding !== 'periodic').every((t) => t.periodicSigma === undefined)).toBe(true);
    // a narrower σ range moves only σ
    const narrow = sampleTrials({ ...space, periodicSigma: [0.5, 0.5] }, 16, 9);
    expect(narrow.map(({ periodicSigma: _p, ...rest }) => rest)).toEqual(trials.map(({ periodicSigma: _p, ...rest }) => rest));
    expect(narrow.filter((t) => t.numericEncoding === 'periodic').every((t) => t.periodicSigma === 0.5)).toBe(true);
  });

  it('names the key of each problem', () => {
    expect(validateSearchSpace({ ...DEFAULT_SEARCH_SPACE, periodicSigma: [0, 1] })).toEqual([
      'periodicSigma: expected a log range [lo, hi] with 0 < lo <= hi <= 100, got [0,1]',
    ]);
    expect(validateMlpParams({ ...periodic, periodicSigma: -1 })).toEqual(['periodicSigma: expected a number in (0, 100], got -1']);
    expect(validateMlpParams({ ...periodic, embeddingDim: 4 })[0]).toMatch(/^numericEncoding: a periodic embedding takes the categorical columns one-hot/);
    expect(validateMlpParams({ ...periodic, sequenceUnits: 8 })[0]).toMatch(/^numericEncoding: 'periodic' is an MLP's first layer/);
    expect(() => buildMlp(5, periodic, 1)).toThrow(MlError);
    expect(() => buildMlp(5, periodic, 1)).toThrow(/needs the input layout/);
    expect(() => buildMlp(3, periodic, 1, { blocks: [{ start: 0, width: 3 }] })).toThrow(/at least one numeric feature/);
  });
});

describe('the periodic embedding', () => {
  const qPre = withEncoding(pre, encodingOf(periodic));
  const train = xy(qPre, trainFrame);
  const val = xy(qPre, valFrame);
  const layout = layoutOf(qPre);
  let run: Awaited<ReturnType<typeof trainMlp>>;

  it('learns a wave in one feature that the same MLP on the same columns does not', async () => {
    const before = tf.memory().numTensors;
    const plain = await trainMlp({ train, val, params: { ...base, numericEncoding: 'quantile' }, seed: 3, layout });
    run = await trainMlp({ train, val, params: periodic, seed: 3, layout });
    expect(tf.memory().numTensors).toBe(before);
    console.log(`wave task: val AUC MLP(16) on quantile columns ${plain.val.auc.toFixed(4)}, with the periodic embedding ${run.val.auc.toFixed(4)} (best epoch ${run.bestEpoch})`);
    expect(run.val.auc).toBeGreaterThan(0.85);
    expect(run.val.auc - plain.val.auc).toBeGreaterThan(0.05);
  });

  it('embeds the numeric values only: each becomes its units; missing flags and the one-hot block pass through after them', async () => {
    const model = buildMlp(train.cols, periodic, 3, layout);
    const layer = model.getLayer('periodic');
    const config = layer.getConfig() as { numericColumns: number[]; otherColumns: number[] };
    const block = layout.blocks[0];
    expect(qPre.featureNames.slice(0, 3)).toEqual(['x', 'noise', 'noise__missing']);
    expect(layout.flags).toEqual([2]);
    expect(config.numericColumns).toEqual([0, 1]);
    expect(config.otherColumns).toEqual([2, ...Array.from({ length: block.width }, (_, i) => block.start + i)]);
    expect(layer.outputShape).toEqual([null, 2 * PERIODIC_UNITS + 1 + block.width]);
    expect(layer.getWeights().map((w) => w.shape)).toEqual([[2, PERIODIC_FREQUENCIES], [2 * PERIODIC_FREQUENCIES, PERIODIC_UNITS], [PERIODIC_UNITS]]);
    model.dispose();
  });

  it('serialize → load → predict is identical, through the registered layer class', async () => {
    const before = tf.memory().numTensors;
    const fromArtifacts = await predict(run.artifacts, val.x, val.rows, val.cols);
    const model = await loadModel(run.artifacts);
    const fromModel = await predict(model, val.x, val.rows, val.cols);
    const again = await serializeModel(model);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(fromModel).toEqual(fromArtifacts);
    expect(bytesEqual(again, run.artifacts)).toBe(true);
    const layers = (run.artifacts.modelJson.modelTopology as { config: { layers: { class_name: string }[] } }).config.layers;
    expect(layers[0].class_name).toBe('PropensityPeriodic');
  });

  it('is deterministic, and a run resumed from a checkpoint ends byte-identical (dropout, class weights, L2)', async () => {
    const params: MlpParams = { ...periodic, hiddenUnits: [8], dropout: 0.2, classWeight: 'balanced', epochs: 4, patience: 10, l2: 1e-4 };
    const small = { train: { ...train, x: train.x.subarray(0, 800 * train.cols), rows: 800, y: trainFrame.label.subarray(0, 800) }, val };
    let checkpoint: ModelArtifacts | undefined;
    const straight = await trainMlp({ ...small, params, seed: 11, layout, onEpochEnd: async (e) => void (e.epoch === 2 && (checkpoint = await e.state())) });
    expect(bytesEqual((await trainMlp({ ...small, params, seed: 11, layout })).artifacts, straight.artifacts)).toBe(true);
    const epochs: number[] = [];
    const resumed = await trainMlp({ ...small, params, seed: 11, layout, initialState: checkpoint, onEpochEnd: (e) => void epochs.push(e.epoch) });
    expect(epochs).toEqual([3, 4]);
    expect(bytesEqual(resumed.artifacts, straight.artifacts)).toBe(true);
    expect(bytesEqual((await trainMlp({ ...small, params, seed: 12, layout })).artifacts, straight.artifacts)).toBe(false);
  });

  it('joins an ensemble with a PLE member (side-by-side blocks): the ensemble predicts their mean', async () => {
    const plePre = withEncoding(pre, { numeric: 'ple', bins: 8 });
    const pleVal = xy(plePre, valFrame);
    const ple = await trainMlp({ train: xy(plePre, trainFrame), val: pleVal, params: { ...base, numericEncoding: 'ple', pleBins: 8, epochs: 2 }, seed: 4, layout: layoutOf(plePre) });
    const before = tf.memory().numTensors;
    const slices = [{ start: 0, width: val.cols }, { start: val.cols, width: pleVal.cols }];
    const ensemble = await buildEnsembleModel([run.artifacts, ple.artifacts], slices);
    const side = new Float32Array(val.rows * (val.cols + pleVal.cols));
    for (let r = 0; r < val.rows; r++) {
      side.set(val.x.subarray(r * val.cols, (r + 1) * val.cols), r * (val.cols + pleVal.cols));
      side.set(pleVal.x.subarray(r * pleVal.cols, (r + 1) * pleVal.cols), r * (val.cols + pleVal.cols) + val.cols);
    }
    const [a, b] = [await predict(run.artifacts, val.x, val.rows, val.cols), await predict(ple.artifacts, pleVal.x, pleVal.rows, pleVal.cols)];
    const p = await predict(ensemble, side, val.rows, val.cols + pleVal.cols);
    for (let i = 0; i < p.length; i++) expect(p[i]).toBeCloseTo((a[i] + b[i]) / 2, 6);
    expect(tf.memory().numTensors).toBe(before);
  });
});

import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../ml/backend.js';
import { BatchEnsembleDense } from '../../ml/batch-ensemble.js';
import { buildEnsembleModel } from '../../ml/ensemble.js';
import { MlError } from '../../ml/errors.js';
import { buildMlp, layoutOf, loadModel, predict, serializeModel, trainMlp, type XY } from '../../ml/model.js';
import { fitPreprocessor, transform, withEncoding, type Preprocessor } from '../../ml/preprocess.js';
import { createRng } from '../../ml/random.js';
import { encodingOf, sampleTrials, validateMlpParams, validateSearchSpace } from '../../ml/search.js';
import { DEFAULT_SEARCH_SPACE, type FeatureSpec, type Frame, type MlpParams, type ModelArtifacts } from '../../ml/types.js';

const SPECS: FeatureSpec[] = [
  { name: 'a', kind: 'numeric' },
  { name: 'b', kind: 'numeric' },
  { name: 'region', kind: 'categorical' },
];

/** y ~ Bernoulli(sigmoid(2a − b² + region effect)): a small MLP learns it */
function task(rows: number, seed: number): Frame {
  const rng = createRng(seed);
  const a = Float64Array.from({ length: rows }, () => rng.next() * 4 - 2);
  const b = Float64Array.from({ length: rows }, () => rng.next() * 4 - 2);
  const region = Array.from({ length: rows }, () => ['north', 'south'][rng.int(2)]);
  const label = Uint8Array.from(a, (v, i) => (rng.next() < 1 / (1 + Math.exp(-(2 * v - b[i] * b[i] + (region[i] === 'north' ? 1 : -1)))) ? 1 : 0));
  return { ids: Array.from({ length: rows }, (_, i) => `u${seed}_${i}`), label, numeric: { a, b }, categorical: { region } };
}

const trainFrame = task(2000, 1);
const valFrame = task(800, 2);
const pre = fitPreprocessor(trainFrame, SPECS);
const xy = (p: Preprocessor, f: Frame): XY => ({ ...transform(p, f), y: f.label });
const train = xy(pre, trainFrame);
const val = xy(pre, valFrame);
const layout = layoutOf(pre);
const plain: MlpParams = { hiddenUnits: [16, 8], dropout: 0, l2: 1e-5, learningRate: 0.01, batchSize: 64, epochs: 6, classWeight: 'none', patience: 6 };
const be: MlpParams = { ...plain, batchEnsemble: 4 };
const bytesEqual = (a: ModelArtifacts, b: ModelArtifacts) =>
  JSON.stringify(a.modelJson) === JSON.stringify(b.modelJson) && Buffer.compare(a.weights, b.weights) === 0;

beforeAll(async () => {
  await initBackend('wasm');
});

describe('batchEnsemble in the search', () => {
  it('is drawn from its own stream: a space without it samples what it did; only MLP trials get members', () => {
    const space = { ...DEFAULT_SEARCH_SPACE, hiddenLayers: [0, 2] as [number, number], embeddingDim: [0, 4], sequenceUnits: [0, 8] };
    const before = sampleTrials(space, 16, 4);
    const trials = sampleTrials({ ...space, batchEnsemble: [1, 8] }, 16, 4);
    const strip = ({ batchEnsemble: _b, embeddingDim: _e, ...rest }: MlpParams) => rest;
    expect(trials.map(strip)).toEqual(before.map(strip));
    const withMembers = trials.filter((t) => t.batchEnsemble);
    expect(withMembers.length).toBeGreaterThan(0);
    for (const t of withMembers) {
      expect(t.batchEnsemble).toBe(8);
      expect(t.hiddenUnits.length).toBeGreaterThan(0);
      expect([t.sequenceUnits, t.embeddingDim]).toEqual([undefined, undefined]);
    }
    for (const t of trials) expect(validateMlpParams(t)).toEqual([]);
    // trials that drew no members keep their embedding size exactly
    trials.forEach((t, i) => !t.batchEnsemble && expect(t.embeddingDim).toEqual(before[i].embeddingDim));
  });

  it('names the key of each problem', () => {
    expect(validateSearchSpace({ ...DEFAULT_SEARCH_SPACE, batchEnsemble: [65] })).toEqual([
      'batchEnsemble: expected a non-empty list of integers in [0, 64] (0 or 1 = a plain MLP), got [65]',
    ]);
    expect(validateMlpParams({ ...be, batchEnsemble: 2.5 })).toEqual(['batchEnsemble: expected an integer in [0, 64], got 2.5']);
    expect(validateMlpParams({ ...be, hiddenUnits: [] })[0]).toMatch(/^batchEnsemble: the members share an MLP's first hidden layer/);
    expect(validateMlpParams({ ...be, embeddingDim: 4 })[0]).toMatch(/^batchEnsemble: takes the categorical columns one-hot/);
    expect(validateMlpParams({ ...be, sequenceUnits: 8 }).some((p) => p.startsWith('batchEnsemble: an MLP option'))).toBe(true);
    expect(() => buildMlp(train.cols, { ...be, hiddenUnits: [] }, 1, layout)).toThrow(MlError);
  });
});

describe('the BatchEnsemble layer and model', () => {
  let run: Awaited<ReturnType<typeof trainMlp>>;

  it('member i computes relu(((x ⊙ r_i) W) ⊙ s_i + b_i), its adapters starting at random signs', () => {
    const layer = new BatchEnsembleDense({ name: 'be', units: 3, members: 2, seed: 5, l2: 0 });
    const x = tf.tensor2d([[1, -2, 0.5, 3], [0, 1, -1, 2]]);
    const y = layer.apply(x) as tf.Tensor;
    expect(y.shape).toEqual([2, 2, 3]);
    const [w, r, s] = layer.getWeights().map((t) => t.arraySync() as number[][]);
    expect(new Set((r as number[][]).flat().concat((s as number[][]).flat()))).toEqual(new Set([-1, 1]));
    layer.setWeights([tf.tensor2d(w), tf.tensor2d(r), tf.tensor2d(s), tf.tensor2d([[0.1, -0.2, 0.3], [0, 0.5, -0.5]])]);
    const out = (layer.apply(x) as tf.Tensor).arraySync() as number[][][];
    const xs = x.arraySync() as number[][];
    const bias = [[0.1, -0.2, 0.3], [0, 0.5, -0.5]];
    for (let n = 0; n < 2; n++) {
      for (let i = 0; i < 2; i++) {
        for (let u = 0; u < 3; u++) {
          const dot = xs[n].reduce((acc, v, d) => acc + v * r[i][d] * w[d][u], 0);
          expect(out[n][i][u]).toBeCloseTo(Math.max(0, dot * s[i][u] + bias[i][u]), 5);
        }
      }
    }
    tf.dispose([x, y]);
    layer.dispose();
  });

  it('learns, predicts the mean of its members, and leaks no tensors', async () => {
    const before = tf.memory().numTensors;
    run = await trainMlp({ train, val, params: be, seed: 3, layout });
    const single = await trainMlp({ train, val, params: plain, seed: 3, layout });
    expect(tf.memory().numTensors).toBe(before);
    console.log(`task: val AUC plain MLP ${single.val.auc.toFixed(4)}, BatchEnsemble of 4 ${run.val.auc.toFixed(4)}`);
    expect(run.val.auc).toBeGreaterThan(0.8);
    // the served output is the mean of the members' probabilities: the members' outputs, averaged by hand
    const model = await loadModel(run.artifacts);
    const members = tf.model({ inputs: model.inputs, outputs: model.getLayer('output').output as tf.SymbolicTensor });
    const x = tf.tensor2d(val.x.subarray(0, 10 * val.cols), [10, val.cols]);
    const perMember = (members.predict(x) as tf.Tensor).arraySync() as number[][][];
    const served = await predict(model, val.x.subarray(0, 10 * val.cols), 10, val.cols);
    perMember.forEach((m, n) => expect(served[n]).toBeCloseTo(m.reduce((acc, [p]) => acc + p, 0) / m.length, 6));
    expect(new Set(perMember[0].map(([p]) => p.toFixed(6))).size).toBeGreaterThan(1); // the members differ
    x.dispose();
    model.dispose();
  });

  it('serialize → load → predict is identical, through the registered layer class', async () => {
    const fromArtifacts = await predict(run.artifacts, val.x, val.rows, val.cols);
    const model = await loadModel(run.artifacts);
    const again = await serializeModel(model);
    const fromModel = await predict(model, val.x, val.rows, val.cols);
    model.dispose();
    expect(fromModel).toEqual(fromArtifacts);
    expect(bytesEqual(again, run.artifacts)).toBe(true);
    expect(JSON.stringify(run.artifacts.modelJson.modelTopology)).toContain('"class_name":"PropensityBatchEnsemble"');
  });

  it('is deterministic, and a run resumed from a checkpoint ends byte-identical (dropout, class weights, L2, periodic input)', async () => {
    const qPre = withEncoding(pre, encodingOf({ numericEncoding: 'periodic' }));
    const [qTrain, qVal] = [xy(qPre, trainFrame), xy(qPre, valFrame)];
    const params: MlpParams = { ...be, numericEncoding: 'periodic', periodicSigma: 0.1, dropout: 0.2, classWeight: 'balanced', epochs: 4, patience: 10, l2: 1e-4 };
    const small = { train: { ...qTrain, x: qTrain.x.subarray(0, 600 * qTrain.cols), rows: 600, y: trainFrame.label.subarray(0, 600) }, val: qVal, layout: layoutOf(qPre) };
    let checkpoint: ModelArtifacts | undefined;
    const straight = await trainMlp({ ...small, params, seed: 11, onEpochEnd: async (e) => void (e.epoch === 2 && (checkpoint = await e.state())) });
    expect(bytesEqual((await trainMlp({ ...small, params, seed: 11 })).artifacts, straight.artifacts)).toBe(true);
    const epochs: number[] = [];
    const resumed = await trainMlp({ ...small, params, seed: 11, initialState: checkpoint, onEpochEnd: (e) => void epochs.push(e.epoch) });
    expect(epochs).toEqual([3, 4]);
    expect(bytesEqual(resumed.artifacts, straight.artifacts)).toBe(true);
    const topology = JSON.stringify(straight.artifacts.modelJson.modelTopology);
    expect(topology).toContain('"class_name":"PropensityPeriodic"');
    expect(topology).toContain('"class_name":"PropensityBatchEnsemble"');
  });

  it('joins an ensemble with a plain MLP: the ensemble predicts their mean', async () => {
    const other = await trainMlp({ train, val, params: { ...plain, epochs: 2 }, seed: 4, layout });
    const before = tf.memory().numTensors;
    const ensemble = await buildEnsembleModel([run.artifacts, other.artifacts]);
    const [a, b] = [await predict(run.artifacts, val.x, val.rows, val.cols), await predict(other.artifacts, val.x, val.rows, val.cols)];
    const p = await predict(ensemble, val.x, val.rows, val.cols);
    for (let i = 0; i < p.length; i++) expect(p[i]).toBeCloseTo((a[i] + b[i]) / 2, 6);
    expect(tf.memory().numTensors).toBe(before);
  });
});

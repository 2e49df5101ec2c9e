import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../ml/backend.js';
import { MlError } from '../../ml/errors.js';
import { rocAuc } from '../../ml/metrics.js';
import { buildMlp, flushSubnormals, loadModel, predict, priorShift, serializeModel, trainMlp, type TrainMlpInput, type XY } from '../../ml/model.js';
import { permutationImportance } from '../../ml/importance.js';
import { fitPreprocessor, transform } from '../../ml/preprocess.js';
import { createRng } from '../../ml/random.js';
import type { Frame, MlpParams, ModelArtifacts } from '../../ml/types.js';

/** XOR-ish truth: y = 1 when x0 and x1 share a sign (10 % label noise); x2..x5 are noise. Linear AUC ≈ 0.5. */
function xor(rows: number, seed: number, cols = 6): XY {
  const rng = createRng(seed);
  const x = new Float32Array(rows * cols);
  const y = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) x[r * cols + c] = rng.next() * 2 - 1;
    const truth = x[r * cols] * x[r * cols + 1] > 0 ? 1 : 0;
    y[r] = rng.next() < 0.1 ? 1 - truth : truth;
  }
  return { x, y, rows, cols };
}

const train = xor(2000, 1);
const val = xor(500, 2);
const mlp: MlpParams = {
  hiddenUnits: [16, 8], dropout: 0.1, l2: 1e-5, learningRate: 0.01, batchSize: 64,
  epochs: 30, classWeight: 'none', patience: 5,
};
const logistic: MlpParams = { ...mlp, hiddenUnits: [], dropout: 0 };
const bytesEqual = (a: ModelArtifacts, b: ModelArtifacts) =>
  JSON.stringify(a.modelJson) === JSON.stringify(b.modelJson) && Buffer.compare(a.weights, b.weights) === 0;
const errorType = (p: Promise<unknown>) => p.then(() => 'no error', (e: unknown) => (e instanceof MlError ? e.type : String(e)));

beforeAll(async () => {
  await initBackend('wasm');
});

describe('trainMlp', () => {
  let mlpRun: Awaited<ReturnType<typeof trainMlp>>;

  it('an MLP clearly beats logistic regression on a nonlinear truth, without leaking tensors', async () => {
    const before = tf.memory().numTensors;
    const lr = await trainMlp({ train, val, params: logistic, seed: 3 });
    mlpRun = await trainMlp({ train, val, params: mlp, seed: 3 });
    expect(tf.memory().numTensors).toBe(before);
    expect(lr.val.auc).toBeLessThan(0.65);
    expect(mlpRun.val.auc).toBeGreaterThan(0.85);
    expect(mlpRun.history.length).toBeGreaterThan(0);
    expect(mlpRun.bestEpoch).toBeGreaterThan(0);
    // the returned model is the best epoch's, not the last one's
    expect(mlpRun.val.logLoss).toBeCloseTo(mlpRun.history[mlpRun.bestEpoch - 1].valLoss, 4);
  });

  it('serialize → load → predict gives identical predictions, without leaking tensors', async () => {
    const before = tf.memory().numTensors;
    const fromArtifacts = await predict(mlpRun.artifacts, val.x, val.rows, val.cols);
    const model = await loadModel(mlpRun.artifacts);
    const fromModel = await predict(model, val.x, val.rows, val.cols);
    const again = await serializeModel(model);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(fromModel).toEqual(fromArtifacts);
    expect(bytesEqual(again, mlpRun.artifacts)).toBe(true);
    expect(rocAuc(val.y, fromArtifacts)).toBeCloseTo(mlpRun.val.auc, 10);
    expect((mlpRun.artifacts.modelJson.weightsManifest as { paths: string[] }[])[0].paths).toEqual(['weights.bin']);
  });

  it('resuming from an epoch-3 checkpoint ends exactly like a straight run (byte-identical artifacts)', async () => {
    // 125 batches an epoch: the flush of subnormals after batch 64 falls inside each epoch, and one more ends it
    const params = { ...mlp, epochs: 6, patience: 10, batchSize: 16 };
    let checkpoint: ModelArtifacts | undefined;
    let lateState: (() => Promise<ModelArtifacts>) | undefined;
    const straight = await trainMlp({
      train, val, params, seed: 11,
      onEpochEnd: async (e) => {
        if (e.epoch === 3) checkpoint = await e.state();
        lateState = e.state;
      },
    });
    await expect(lateState!()).rejects.toThrow(/after onEpochEnd returned/);
    // idempotent activities: the same inputs give the same bytes (same sha256)
    expect(bytesEqual((await trainMlp({ train, val, params, seed: 11 })).artifacts, straight.artifacts)).toBe(true);
    // a retry: the activity restarts from the checkpoint (e.g. on another worker)
    const epochsSeen: number[] = [];
    const resumed = await trainMlp({ train, val, params, seed: 11, initialState: checkpoint, onEpochEnd: (e) => void epochsSeen.push(e.epoch) });
    expect(epochsSeen).toEqual([4, 5, 6]);
    expect(resumed.history).toEqual(straight.history.map((h, i) => ({ ...h, seconds: resumed.history[i].seconds })));
    expect(resumed.bestEpoch).toBe(straight.bestEpoch);
    expect(bytesEqual(resumed.artifacts, straight.artifacts)).toBe(true);
    // and a checkpoint is also a loadable model
    const p = await predict(checkpoint!, val.x, val.rows, val.cols);
    expect(p.every((v) => v > 0 && v < 1)).toBe(true);
  });

  it('a class-weighted model serves probabilities, not inflated scores: the prior shift moves the bias back, ranking unchanged', async () => {
    // rare positives (about 10 %) on a linear truth
    const rare = (rows: number, seed: number): XY => {
      const rng = createRng(seed);
      const x = new Float32Array(rows * 2);
      const y = new Uint8Array(rows);
      for (let r = 0; r < rows; r++) {
        x[r * 2] = rng.next() * 2 - 1;
        x[r * 2 + 1] = rng.next() * 2 - 1;
        y[r] = rng.next() < 1 / (1 + Math.exp(-(3 * x[r * 2] - 3))) ? 1 : 0;
      }
      return { x, y, rows, cols: 2 };
    };
    const tr = rare(4000, 21);
    const va = rare(2000, 22);
    const positives = (d: XY) => Array.from(d.y).reduce((a, b) => a + b, 0);
    const rate = positives(va) / va.rows;
    const mean = (p: Float32Array) => p.reduce((a, b) => a + b, 0) / p.length;
    const balanced = await trainMlp({ train: tr, val: va, params: { ...logistic, classWeight: 'balanced', epochs: 20 }, seed: 4 });
    const plain = await trainMlp({ train: tr, val: va, params: { ...logistic, epochs: 20 }, seed: 4 });
    const pb = await predict(balanced.artifacts, va.x, va.rows, va.cols);
    const pp = await predict(plain.artifacts, va.x, va.rows, va.cols);
    // without the shift a balanced model's mean probability sits near 0.5; with it, near the real positive rate
    expect(rate).toBeLessThan(0.2);
    expect(Math.abs(mean(pb) - rate)).toBeLessThan(0.05);
    expect(balanced.val.logLoss).toBeLessThan(plain.val.logLoss * 1.2);
    // the shift is monotone: undoing it changes no ranking
    const model = await loadModel(balanced.artifacts);
    const [w0, w1] = [tr.rows / (2 * (tr.rows - positives(tr))), tr.rows / (2 * positives(tr))];
    priorShift(model, -Math.log(w1 / w0));
    const unshifted = await predict(model, va.x, va.rows, va.cols);
    model.dispose();
    expect(mean(unshifted)).toBeGreaterThan(0.3);
    expect(rocAuc(va.y, unshifted)).toBeCloseTo(rocAuc(va.y, pb), 10);
    expect(rocAuc(va.y, pp)).toBeGreaterThan(0.7);
  });

  it('stops early on the validation loss and restores the best epoch', async () => {
    const small = xor(200, 5);
    const out = await trainMlp({
      train: small, val: xor(300, 6), seed: 1,
      params: { ...mlp, hiddenUnits: [64, 64], dropout: 0, l2: 0, learningRate: 0.03, batchSize: 32, epochs: 60, patience: 2 },
    });
    expect(out.stopReason).toBe('earlyStopping');
    expect(out.history.length).toBe(out.bestEpoch + 2);
    expect(out.val.logLoss).toBeCloseTo(out.history[out.bestEpoch - 1].valLoss, 4);
  });

  it('shouldStop ends training between batches with a usable model', async () => {
    let calls = 0;
    const out = await trainMlp({ train, val, params: mlp, seed: 2, shouldStop: () => ++calls > 70 });
    expect(out.stopReason).toBe('stopped');
    expect(out.history.length).toBe(2); // 32 batches per epoch: stopped during the third
    expect(out.artifacts.weights.byteLength).toBeGreaterThan(0);
  });

  it('typed errors: NonFiniteLoss, SingleClassLabel, InvalidData, InvalidConfig; no leaks on failure', async () => {
    const before = tf.memory().numTensors;
    const huge = { ...train, x: train.x.map(() => 3e38) };
    expect(await errorType(trainMlp({ train: huge, val, params: { ...mlp, epochs: 1 }, seed: 1 }))).toBe('NonFiniteLoss');
    expect(tf.memory().numTensors).toBe(before);
    const base: TrainMlpInput = { train, val, params: mlp, seed: 1 };
    expect(await errorType(trainMlp({ ...base, train: { ...train, y: new Uint8Array(train.rows) } }))).toBe('SingleClassLabel');
    expect(await errorType(trainMlp({ ...base, val: xor(10, 1, 5) }))).toBe('InvalidData');
    expect(await errorType(trainMlp({ ...base, params: { ...mlp, learningRate: -1 } }))).toBe('InvalidConfig');
    expect(await errorType(trainMlp({ ...base, initialState: (await loadAndSave(buildMlp(9, mlp, 1))) }))).toBe('InvalidConfig');
    expect(tf.memory().numTensors).toBe(before);
  });
});

async function loadAndSave(model: tf.LayersModel): Promise<ModelArtifacts> {
  try {
    return await serializeModel(model);
  } finally {
    model.dispose();
  }
}

/** The float32 values of a model's weights.bin that are subnormal (0 < |x| < 2^-126); every weight here is float32. */
const subnormals = (a: ModelArtifacts): number =>
  new Float32Array(a.weights.buffer, a.weights.byteOffset, a.weights.byteLength / 4).filter((v) => v !== 0 && Math.abs(v) < 2 ** -126).length;

describe('subnormal flushing', () => {
  it('flushSubnormals zeroes subnormal entries only, in place', () => {
    const tiny = 2 ** -126; // the smallest normal float32: kept
    const v = tf.variable(tf.tensor1d([1, -0.5, tiny, -tiny, tiny / 2, -(2 ** -140), 2 ** -149, 0, 3e-30]));
    flushSubnormals([v]);
    expect(Array.from(v.dataSync())).toEqual([1, -0.5, tiny, -tiny, 0, 0, 0, 0, Math.fround(3e-30)]);
    v.dispose();
  });

  // Four input columns that are always 0, as a PLE bin no train row reaches or a one-hot level absent from train:
  // their weights get no data gradient, only the L2 penalty's, and under Adam they shrink geometrically until they
  // stick at a subnormal value (after about 1,600 steps here: 125 batches an epoch), where wasm multiplies slowly.
  const padded = (d: XY, zeros = 4): XY => {
    const cols = d.cols + zeros;
    const x = new Float32Array(d.rows * cols);
    for (let r = 0; r < d.rows; r++) x.set(d.x.subarray(r * d.cols, (r + 1) * d.cols), r * cols);
    return { ...d, x, cols };
  };
  const data = { train: padded(train), val: padded(val) };
  const params: MlpParams = { ...mlp, hiddenUnits: [16], dropout: 0, l2: 0.001, learningRate: 0.01, batchSize: 16, epochs: 16, patience: 99 };
  let unflushedRun: ReturnType<typeof trainMlp> | undefined;
  const trainUnflushed = () => (unflushedRun ??= trainMlp({ ...data, params, seed: 5, flushEvery: 0 }));

  it('changes no result of training, and leaves no subnormal weight behind where training without it does', async () => {
    const flushed = await trainMlp({ ...data, params, seed: 5 });
    const unflushed = await trainUnflushed();
    expect(subnormals(unflushed.artifacts)).toBe(4 * 16); // every weight of the four dead columns
    expect(subnormals(flushed.artifacts)).toBe(0);
    // bit for bit the same losses, AUCs and best epoch: a subnormal weight is below the rounding of every sum it enters
    const figures = (r: typeof flushed) => r.history.map(({ seconds: _, ...m }) => m);
    expect(figures(flushed)).toEqual(figures(unflushed));
    expect(flushed.bestEpoch).toBe(unflushed.bestEpoch);
    expect(flushed.val).toEqual(unflushed.val);
  });

  it('flushes them as a model loads (one trained before the flush), and its predictions stay the same bit for bit', async () => {
    const { artifacts } = await trainUnflushed();
    // the same network with its subnormal weights kept: the artifact's float32 values, set without loading
    const kept = buildMlp(data.val.cols, params, 5);
    const values = new Float32Array(artifacts.weights.slice().buffer);
    let offset = 0;
    kept.setWeights(kept.weights.map((w) => {
      const shape = w.shape as number[]; // a weight's shape is fully known
      const n = shape.reduce((a, b) => a * b, 1);
      offset += n;
      return tf.tensor(values.subarray(offset - n, offset), shape);
    }));
    expect(offset).toBe(values.length);
    expect(subnormals(await serializeModel(kept))).toBe(4 * 16);
    const loaded = await loadModel(artifacts);
    expect(subnormals(await serializeModel(loaded))).toBe(0);
    expect(subnormals(artifacts)).toBe(4 * 16); // the stored files are left as they are
    const { x, rows, cols } = data.val;
    expect(await predict(artifacts, x, rows, cols)).toEqual(await predict(kept, x, rows, cols));
    expect(await predict(loaded, x, rows, cols)).toEqual(await predict(kept, x, rows, cols));
    [kept, loaded].forEach((m) => m.dispose());
  });
});

describe('buildMlp', () => {
  it('builds logistic regression for hiddenUnits [] and seeds its initial weights', async () => {
    const a = buildMlp(5, logistic, 1);
    const b = buildMlp(5, logistic, 1);
    expect(a.layers.map((l) => l.getClassName())).toEqual(['Dense']);
    expect(bytesEqual(await serializeModel(a), await serializeModel(b))).toBe(true);
    const c = buildMlp(5, mlp, 1);
    expect(c.layers.map((l) => l.name)).toEqual(['hidden_1', 'dropout_1', 'hidden_2', 'dropout_2', 'output']);
    [a, b, c].forEach((m) => m.dispose());
  });
});

describe('end to end: preprocess → train → permutation importance', () => {
  const toFrame = (d: XY): Frame => ({
    ids: Array.from({ length: d.rows }, (_, i) => `u${i}`),
    label: Uint8Array.from(d.y),
    numeric: Object.fromEntries(Array.from({ length: d.cols }, (_, c) => [`x${c}`, Float64Array.from({ length: d.rows }, (_, r) => d.x[r * d.cols + c])])),
    categorical: {},
  });

  it('ranks the two XOR inputs first', async () => {
    const specs = Array.from({ length: train.cols }, (_, c) => ({ name: `x${c}`, kind: 'numeric' as const }));
    const pre = fitPreprocessor(toFrame(train), specs);
    const [tr, va] = [transform(pre, toFrame(train)), transform(pre, toFrame(val))];
    const out = await trainMlp({ train: { ...tr, y: train.y }, val: { ...va, y: val.y }, params: { ...mlp, epochs: 20 }, seed: 4 });
    const before = tf.memory().numTensors;
    const imp = await permutationImportance(out.artifacts, pre, va, val.y, 1);
    expect(tf.memory().numTensors).toBe(before);
    expect(imp.baselineAuc).toBeCloseTo(out.val.auc, 6);
    expect(imp.features.slice(0, 2).map((f) => f.feature).sort()).toEqual(['x0', 'x1']);
    expect(imp.features[1].aucDrop).toBeGreaterThan(0.2);
    expect(Math.abs(imp.features[2].aucDrop)).toBeLessThan(0.03);
  });
});

import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { sequenceFeatureSpecs } from '../../db/sequences.js';
import { initBackend } from '../../ml/backend.js';
import { buildEnsembleModel } from '../../ml/ensemble.js';
import { MlError } from '../../ml/errors.js';
import { permutationImportance } from '../../ml/importance.js';
import { rocAuc } from '../../ml/metrics.js';
import { buildMlp, layoutOf, loadModel, predict, serializeModel, trainMlp, type XY } from '../../ml/model.js';
import { fitPreprocessor, stepWidth, transform, withEncoding, type Preprocessor, type SequenceStep } from '../../ml/preprocess.js';
import { createRng } from '../../ml/random.js';
import { encodingOf, familyOf, sampleTrials, validateMlpParams, validateSearchSpace } from '../../ml/search.js';
import { DEFAULT_SEARCH_SPACE, type FeatureSpec, type Frame, type MlpParams, type ModelArtifacts } from '../../ml/types.js';

const N = 6;
const AGGREGATES: FeatureSpec[] = [
  { name: 'n_events', kind: 'numeric' },
  { name: 'top_category', kind: 'categorical' },
  { name: 'n_cart', kind: 'numeric' },
];
const SPECS: FeatureSpec[] = [...AGGREGATES, ...sequenceFeatureSpecs(N)];

/**
 * Users with 2, 4 or 6 events, half 'view' and half 'cart' in random order: y = 1 when the most recent event is a
 * cart (10 % label noise). The counts and the top category say nothing about it; only the order does.
 */
function orderTask(rows: number, seed: number): Frame {
  const rng = createRng(seed);
  const numeric: Frame['numeric'] = { n_events: new Float64Array(rows), n_cart: new Float64Array(rows) };
  const categorical: Frame['categorical'] = { top_category: [] };
  for (let p = 1; p <= N; p++) {
    numeric[`seq_${p}_price`] = new Float64Array(rows).fill(NaN);
    numeric[`seq_${p}_hours_since_prev`] = new Float64Array(rows).fill(NaN);
    categorical[`seq_${p}_event_type`] = new Array(rows).fill(null);
    categorical[`seq_${p}_category`] = new Array(rows).fill(null);
  }
  const label = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) {
    const k = 2 * (1 + rng.int(3));
    const types = [...Array(k / 2).fill('cart'), ...Array(k / 2).fill('view')];
    for (let i = types.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [types[i], types[j]] = [types[j], types[i]];
    }
    for (let p = 1; p <= k; p++) {
      categorical[`seq_${p}_event_type`][r] = types[p - 1];
      categorical[`seq_${p}_category`][r] = ['books', 'shoes', 'toys'][rng.int(3)];
      numeric[`seq_${p}_price`][r] = rng.next() < 0.2 ? NaN : Math.round(rng.next() * 100);
      numeric[`seq_${p}_hours_since_prev`][r] = p === k ? NaN : rng.next() * 48; // the oldest has no previous event
    }
    numeric.n_events[r] = k;
    numeric.n_cart[r] = k / 2;
    categorical.top_category[r] = ['books', 'shoes', 'toys'][rng.int(3)];
    const truth = types[0] === 'cart' ? 1 : 0;
    label[r] = rng.next() < 0.1 ? 1 - truth : truth;
  }
  return { ids: Array.from({ length: rows }, (_, i) => `u${seed}_${i}`), label, numeric, categorical };
}

const trainFrame = orderTask(1500, 1);
const valFrame = orderTask(600, 2);
const pre = fitPreprocessor(trainFrame, SPECS);
const xy = (p: Preprocessor, f: Frame): XY => ({ ...transform(p, f), y: f.label });
const mlp: MlpParams = { hiddenUnits: [16], dropout: 0, l2: 1e-5, learningRate: 0.01, batchSize: 64, epochs: 8, classWeight: 'none', patience: 8 };
const gru: MlpParams = { ...mlp, sequenceUnits: 8 };
const bytesEqual = (a: ModelArtifacts, b: ModelArtifacts) =>
  JSON.stringify(a.modelJson) === JSON.stringify(b.modelJson) && Buffer.compare(a.weights, b.weights) === 0;

beforeAll(async () => {
  await initBackend('wasm');
});

describe('sequence preprocessing', () => {
  const seqStep = pre.steps[pre.steps.length - 1] as SequenceStep;

  it('groups the sequence columns into one last step with one vocabulary per field across positions', () => {
    expect(pre.steps.map((s) => s.name)).toEqual(['n_events', 'top_category', 'n_cart', 'last_events']);
    expect(seqStep.kind).toBe('sequence');
    expect(seqStep.length).toBe(N);
    expect(seqStep.fields.map((f) => [f.field, f.kind])).toEqual([
      ['event_type', 'categorical'], ['category', 'categorical'], ['price', 'numeric'], ['hours_since_prev', 'numeric'],
    ]);
    expect(seqStep.fields[0].columns).toEqual(Array.from({ length: N }, (_, i) => `seq_${i + 1}_event_type`));
    const [eventType, category] = seqStep.fields;
    expect(eventType.kind === 'categorical' && [...eventType.vocabulary].sort()).toEqual(['cart', 'view']);
    expect(category.kind === 'categorical' && [...category.vocabulary].sort()).toEqual(['books', 'shoes', 'toys']);
  });

  it('a category frequent only when pooled over positions gets its own column; stats skip padding', () => {
    // 'rare' appears once per position at positions 1..5: 5 times in all, the min count
    const rows = 8;
    const f: Frame = { ids: Array.from({ length: rows }, (_, i) => String(i)), label: new Uint8Array(rows), numeric: {}, categorical: {} };
    const specs = sequenceFeatureSpecs(5);
    for (let p = 1; p <= 5; p++) {
      f.categorical[`seq_${p}_event_type`] = Array.from({ length: rows }, (_, r) => (r === p - 1 ? 'rare' : r < 6 ? 'view' : null));
      f.categorical[`seq_${p}_category`] = new Array(rows).fill(null);
      f.numeric[`seq_${p}_price`] = Float64Array.from({ length: rows }, (_, r) => (r < 6 ? 10 : NaN));
      f.numeric[`seq_${p}_hours_since_prev`] = Float64Array.from({ length: rows }, (_, r) => (r < 6 ? r : NaN));
    }
    const p = fitPreprocessor(f, specs);
    const s = p.steps[0] as SequenceStep;
    expect(p.steps).toHaveLength(1);
    expect(s.fields[0].kind === 'categorical' && s.fields[0].vocabulary).toEqual(['view', 'rare']);
    // 6 real users × 5 positions, all priced 10: mean 10, so a real event's price is 0 and padding 0 as well
    const price = s.fields[2];
    expect(price.kind === 'numeric' && [price.median, price.mean, price.std]).toEqual([10, 10, 1]);
    const hours = s.fields[3];
    expect(hours.kind === 'numeric' && hours.mean).toBeCloseTo(2.5, 10); // 0..5, padding rows 6, 7 excluded
  });

  it('without the sequence flag the matrix is byte-identical to one fitted without sequence specs', () => {
    const plain = fitPreprocessor(trainFrame, AGGREGATES);
    expect(pre.featureNames).toEqual(plain.featureNames);
    expect(stepWidth(pre.steps[3])).toBe(0);
    for (const enc of [undefined, encodingOf(mlp), { numeric: 'ple' as const, bins: 4 }]) {
      const a = transform(withEncoding(pre, enc), valFrame);
      const b = transform(withEncoding(plain, enc), valFrame);
      expect(a.featureNames).toEqual(b.featureNames);
      expect(Buffer.from(a.x.buffer).equals(Buffer.from(b.x.buffer))).toBe(true);
    }
    expect(layoutOf(pre)).toEqual(layoutOf(plain));
    // a stored preprocessor without sequence steps keeps its JSON through withEncoding(undefined)
    expect(JSON.stringify(withEncoding(plain, undefined))).toBe(JSON.stringify(plain));
  });

  it('with the flag: N blocks after all other columns of present flag, one-hots, standardized numbers; padding all 0', () => {
    const seqPre = withEncoding(pre, encodingOf(gru));
    expect(seqPre.encoding).toEqual({ numeric: 'standard', sequence: true });
    const plainCols = fitPreprocessor(trainFrame, AGGREGATES).featureNames.length;
    const width = 1 + 4 + 5 + 1 + 1;
    expect(seqPre.featureNames.length).toBe(plainCols + N * width);
    expect(stepWidth(seqStep, seqPre.encoding)).toBe(N * width);
    expect(layoutOf(seqPre).sequence).toEqual({ start: plainCols, length: N, width });
    const et = seqStep.fields[0].kind === 'categorical' ? seqStep.fields[0].vocabulary : [];
    expect(seqPre.featureNames.slice(plainCols, plainCols + width)).toEqual([
      'last_events_1__present',
      ...[...et, '__other__', '__missing__'].map((v) => `seq_1_event_type=${v}`),
      ...[...(seqStep.fields[1].kind === 'categorical' ? seqStep.fields[1].vocabulary : []), '__other__', '__missing__'].map((v) => `seq_1_category=${v}`),
      'seq_1_price',
      'seq_1_hours_since_prev',
    ]);
    const m = transform(seqPre, valFrame);
    const plain = transform(withEncoding(pre, undefined), valFrame);
    for (let r = 0; r < 50; r++) {
      const row = m.x.subarray(r * m.cols, (r + 1) * m.cols);
      expect(Array.from(row.subarray(0, plainCols))).toEqual(Array.from(plain.x.subarray(r * plainCols, (r + 1) * plainCols)));
      const k = valFrame.numeric.n_events[r];
      for (let p = 1; p <= N; p++) {
        const block = row.subarray(plainCols + (p - 1) * width, plainCols + p * width);
        if (p > k) {
          expect(Array.from(block).every((v) => v === 0)).toBe(true);
          continue;
        }
        expect(block[0]).toBe(1);
        expect(block[1 + et.indexOf(valFrame.categorical[`seq_${p}_event_type`][r]!)]).toBe(1);
        expect(block.subarray(1, 5).reduce((a, b) => a + b, 0)).toBe(1);
        expect(block.subarray(5, 10).reduce((a, b) => a + b, 0)).toBe(1);
        const hours = seqStep.fields[3];
        // the oldest event has no gap: imputed with the train median, standardized (not the padding 0)
        if (p === k && hours.kind === 'numeric') expect(block[11]).toBeCloseTo((hours.median - hours.mean) / hours.std, 5);
      }
    }
  });

  it('refuses sequence specs with a missing position or a field of two kinds', () => {
    const specs = sequenceFeatureSpecs(3).filter((s) => s.name !== 'seq_2_price');
    expect(() => fitPreprocessor(trainFrame, specs)).toThrow(/field 'price' has no column for position 2 of 3/);
    const mixed = sequenceFeatureSpecs(2).map((s) => (s.name === 'seq_2_price' ? { ...s, kind: 'categorical' as const } : s));
    expect(() => fitPreprocessor(trainFrame, mixed)).toThrow(/field 'price' is numeric at one position and categorical/);
  });
});

describe('sequenceUnits in the search', () => {
  it('is sampled from its own stream: adding it changes no other sampled value', () => {
    const space = { ...DEFAULT_SEARCH_SPACE, numericEncoding: ['standard' as const, 'quantile' as const] };
    const plain = sampleTrials(space, 12, 5);
    const withSeq = sampleTrials({ ...space, sequenceUnits: [0, 16] }, 12, 5);
    expect(withSeq.map(({ sequenceUnits: _s, ...rest }) => rest)).toEqual(plain);
    expect(new Set(withSeq.map((t) => t.sequenceUnits))).toEqual(new Set([undefined, 16]));
    expect(new Set(withSeq.map(familyOf))).toContain('sequence');
    // sequence trials take the aggregates one-hot: a drawn embedding size is dropped, every trial is valid
    const withEmb = sampleTrials({ ...space, sequenceUnits: [16], embeddingDim: [4] }, 6, 5);
    for (const t of withEmb) expect([t.embeddingDim, validateMlpParams(t)]).toEqual([undefined, []]);
  });

  it('sets the encoding flag, names the key in validation, and refuses a model without sequence columns', () => {
    expect(encodingOf(gru)).toEqual({ numeric: 'standard', sequence: true });
    expect(encodingOf({ ...gru, sequenceUnits: 0 })).toEqual({ numeric: 'standard' });
    expect(familyOf(gru)).toBe('sequence');
    expect(familyOf({ ...gru, sequenceUnits: 0 })).toBe('mlp');
    expect(validateSearchSpace({ ...DEFAULT_SEARCH_SPACE, sequenceUnits: [-1] })).toEqual([
      'sequenceUnits: expected a non-empty list of integers in [0, 256] (0 = no sequence model), got [-1]',
    ]);
    expect(validateMlpParams({ ...gru, sequenceUnits: 1.5 })).toEqual(['sequenceUnits: expected an integer in [0, 256], got 1.5']);
    expect(validateMlpParams({ ...gru, embeddingDim: 4 })[0]).toMatch(/^sequenceUnits: .*embeddingDim must be 0/);
    expect(() => buildMlp(10, gru, 1, { blocks: [] })).toThrow(MlError);
    expect(() => buildMlp(10, gru, 1, { blocks: [] })).toThrow(/sequenceUnits 8 needs the last-events columns/);
  });
});

describe('sequenceAlone in the search', () => {
  it('is sampled from its own stream, lands only on sequence trials, and is named in validation', () => {
    const space = { ...DEFAULT_SEARCH_SPACE, sequenceUnits: [0, 16] };
    const joined = sampleTrials(space, 16, 5);
    const both = sampleTrials({ ...space, sequenceAlone: [false, true] }, 16, 5);
    expect(both.map(({ sequenceAlone: _a, ...rest }) => rest)).toEqual(joined);
    expect(both.filter((t) => t.sequenceAlone).length).toBeGreaterThan(0);
    for (const t of both) {
      if (t.sequenceAlone) expect(t.sequenceUnits).toBe(16);
      expect(validateMlpParams(t)).toEqual([]);
    }
    expect(sampleTrials({ ...space, sequenceAlone: [false] }, 16, 5)).toEqual(joined);
    expect(validateSearchSpace({ ...DEFAULT_SEARCH_SPACE, sequenceAlone: [true] })).toEqual([
      'sequenceAlone: applies to sequence trials, and sequenceUnits is absent: add e.g. sequenceUnits [0, 16]',
    ]);
    expect(validateSearchSpace({ ...space, sequenceAlone: ['yes' as never] })[0]).toMatch(/^sequenceAlone: expected a non-empty list of booleans/);
    expect(validateMlpParams({ ...mlp, sequenceAlone: true })).toEqual(['sequenceAlone: the GRU alone needs a GRU; sequenceUnits is 0']);
  });
});

describe('the GRU sequence model', () => {
  const seqPre = withEncoding(pre, encodingOf(gru));
  const seqTrain = xy(seqPre, trainFrame);
  const seqVal = xy(seqPre, valFrame);
  const layout = layoutOf(seqPre);
  let gruRun: Awaited<ReturnType<typeof trainMlp>>;
  let mlpOnSeq: Awaited<ReturnType<typeof trainMlp>>;

  it('beats an MLP on the same aggregate columns when the label depends on the order of events', async () => {
    const aggPre = withEncoding(pre, encodingOf(mlp));
    const before = tf.memory().numTensors;
    const agg = await trainMlp({ train: xy(aggPre, trainFrame), val: xy(aggPre, valFrame), params: mlp, seed: 3, layout: layoutOf(aggPre) });
    gruRun = await trainMlp({ train: seqTrain, val: seqVal, params: gru, seed: 3, layout });
    expect(tf.memory().numTensors).toBe(before);
    console.log(`order task: val AUC MLP on aggregates ${agg.val.auc.toFixed(4)}, GRU(8) ${gruRun.val.auc.toFixed(4)} (best epoch ${gruRun.bestEpoch})`);
    expect(agg.val.auc).toBeLessThan(0.6);
    expect(gruRun.val.auc).toBeGreaterThan(0.8);
    expect(gruRun.val.auc - agg.val.auc).toBeGreaterThan(0.2);
  });

  it('alone: reads only the last-events columns (the aggregates are cut away unread) and still learns the order', async () => {
    const alone = await trainMlp({ train: seqTrain, val: seqVal, params: { ...gru, sequenceAlone: true }, seed: 3, layout });
    const topology = alone.artifacts.modelJson.modelTopology as { config: { layers: { name: string }[] } };
    expect(topology.config.layers.map((l) => l.name).sort()).toEqual(['columns', 'events', 'events_cut', 'features', 'gru', 'hidden_1', 'output']);
    console.log(`order task: val AUC GRU(8) alone ${alone.val.auc.toFixed(4)}`);
    expect(alone.val.auc).toBeGreaterThan(0.8);
    // any values in the aggregate columns give the same scores; a change in the last events changes them
    const start = layout.sequence!.start;
    const scrambled = Float32Array.from(seqVal.x);
    const rng = createRng(9);
    for (let r = 0; r < seqVal.rows; r++) for (let c = 0; c < start; c++) scrambled[r * seqVal.cols + c] = rng.next() * 10 - 5;
    const base = await predict(alone.artifacts, seqVal.x, seqVal.rows, seqVal.cols);
    expect(await predict(alone.artifacts, scrambled, seqVal.rows, seqVal.cols)).toEqual(base);
    const eventsChanged = Float32Array.from(seqVal.x);
    for (let r = 0; r < seqVal.rows; r++) eventsChanged[r * seqVal.cols + start] += 1;
    expect(await predict(alone.artifacts, eventsChanged, seqVal.rows, seqVal.cols)).not.toEqual(base);
  });

  it("predicting many rows lets the event loop through (a worker's heartbeats and workflow tasks wait otherwise)", async () => {
    // ~20k rows through a GRU take seconds on wasm, in batches; a loop of such predictions is what permutation
    // importance and ensemble selection run. A timer must fire while it runs, not only after.
    const rows = 3 * seqVal.rows * 8;
    const x = new Float32Array(rows * seqVal.cols);
    for (let r = 0; r < rows; r++) x.set(seqVal.x.subarray((r % seqVal.rows) * seqVal.cols, (r % seqVal.rows + 1) * seqVal.cols), r * seqVal.cols);
    const model = await loadModel(gruRun.artifacts);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) await predict(model, x, rows, seqVal.cols);
    const seconds = (performance.now() - t0) / 1000;
    clearInterval(timer);
    model.dispose();
    console.log(`3 predictions of ${rows} rows: ${seconds.toFixed(2)} s, timer fired ${ticks} times meanwhile`);
    expect(ticks).toBeGreaterThan(0);
  });

  it('has explicit layer names and one input of all columns; serialize → load → predict is identical', async () => {
    const topology = gruRun.artifacts.modelJson.modelTopology as { config: { layers: { name: string }[] } };
    expect(topology.config.layers.map((l) => l.name).sort()).toEqual(
      ['aggregates', 'aggregates_cut', 'columns', 'events', 'events_cut', 'features', 'gru', 'hidden_1', 'joined', 'output'],
    );
    const before = tf.memory().numTensors;
    const fromArtifacts = await predict(gruRun.artifacts, seqVal.x, seqVal.rows, seqVal.cols);
    const model = await loadModel(gruRun.artifacts);
    expect(model.inputs).toHaveLength(1);
    expect(model.inputs[0].shape).toEqual([null, seqVal.cols]);
    const fromModel = await predict(model, seqVal.x, seqVal.rows, seqVal.cols);
    const again = await serializeModel(model);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(fromModel).toEqual(fromArtifacts);
    expect(bytesEqual(again, gruRun.artifacts)).toBe(true);
    expect(rocAuc(seqVal.y, fromArtifacts)).toBeCloseTo(gruRun.val.auc, 10);
  });

  it('is deterministic, and a run resumed from a checkpoint ends byte-identical (dropout, class weights, L2)', async () => {
    const params: MlpParams = { ...gru, hiddenUnits: [8], dropout: 0.2, classWeight: 'balanced', epochs: 4, patience: 10 };
    const small = { train: { ...seqTrain, x: seqTrain.x.subarray(0, 600 * seqTrain.cols), rows: 600, y: trainFrame.label.subarray(0, 600) }, val: seqVal };
    let checkpoint: ModelArtifacts | undefined;
    const straight = await trainMlp({
      ...small, params, seed: 11, layout,
      onEpochEnd: async (e) => {
        if (e.epoch === 2) checkpoint = await e.state();
      },
    });
    expect(bytesEqual((await trainMlp({ ...small, params, seed: 11, layout })).artifacts, straight.artifacts)).toBe(true);
    const epochs: number[] = [];
    const resumed = await trainMlp({ ...small, params, seed: 11, layout, initialState: checkpoint, onEpochEnd: (e) => void epochs.push(e.epoch) });
    expect(epochs).toEqual([3, 4]);
    expect(resumed.history).toEqual(straight.history.map((h, i) => ({ ...h, seconds: resumed.history[i].seconds })));
    expect(bytesEqual(resumed.artifacts, straight.artifacts)).toBe(true);
    // another seed is another model
    expect(bytesEqual((await trainMlp({ ...small, params, seed: 12, layout })).artifacts, straight.artifacts)).toBe(false);
  });

  it('permutation importance treats the whole last-events block as one feature', async () => {
    const imp = await permutationImportance(gruRun.artifacts, seqPre, transform(seqPre, valFrame), valFrame.label, 1, 1);
    expect(imp.features.map((f) => f.feature).sort()).toEqual(['last_events', 'n_cart', 'n_events', 'top_category']);
    expect(imp.features[0]).toMatchObject({ feature: 'last_events', kind: 'sequence' });
    expect(imp.features[0].aucDrop).toBeGreaterThan(0.2);
  });

  it('an ensemble of an MLP and a sequence model over the same matrix predicts their mean, before and after a round trip', async () => {
    mlpOnSeq = await trainMlp({ train: seqTrain, val: seqVal, params: { ...mlp, epochs: 2 }, seed: 4, layout });
    const before = tf.memory().numTensors;
    const ensemble = await buildEnsembleModel([mlpOnSeq.artifacts, gruRun.artifacts]);
    const [a, b] = [await predict(mlpOnSeq.artifacts, seqVal.x, seqVal.rows, seqVal.cols), await predict(gruRun.artifacts, seqVal.x, seqVal.rows, seqVal.cols)];
    const p = await predict(ensemble, seqVal.x, seqVal.rows, seqVal.cols);
    for (let i = 0; i < p.length; i++) expect(p[i]).toBeCloseTo((a[i] + b[i]) / 2, 6);
    const loaded = await loadModel(ensemble);
    const again = await serializeModel(loaded);
    const q = await predict(loaded, seqVal.x, seqVal.rows, seqVal.cols);
    loaded.dispose();
    expect(q).toEqual(p);
    expect(bytesEqual(again, ensemble)).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    const names = (ensemble.modelJson.weightsManifest as { weights: { name: string }[] }[])[0].weights.map((w) => w.name);
    expect(names.filter((n) => n.startsWith('m2_gru/'))).toHaveLength(3);
  });
});

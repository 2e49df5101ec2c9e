import { describe, expect, it } from 'vitest';
import { averagePredictions, buildEnsembleModel, selectEnsemble } from '../../ml/ensemble.js';
import { formatEnsembleGain } from '../../ml/ensemble-gain.js';
import { delongPairedTest } from '../../ml/delong.js';
import { buildMlp, loadModel, predict, serializeModel } from '../../ml/model.js';
import { rocAuc } from '../../ml/metrics.js';
import { blockSlices, fitPreprocessor, stepColumnRanges, transform, withBlocks, withEncoding } from '../../ml/preprocess.js';
import { createRng } from '../../ml/random.js';
import type { MlpParams } from '../../ml/types.js';

const rng = createRng(5);
const n = 4000;
// three noisy views of one signal: averaging views with independent noise ranks better than any one of them
const signal = Float64Array.from({ length: n }, () => rng.next() * 4 - 2);
const y = Uint8Array.from(signal, (s) => (rng.next() < 1 / (1 + Math.exp(-2 * s)) ? 1 : 0));
const view = (noise: number) => Float32Array.from(signal, (s) => 1 / (1 + Math.exp(-(s + noise * (rng.next() * 2 - 1)))));
const a = view(2);
const b = view(2);
const c = view(2);
const useless = Float32Array.from({ length: n }, () => rng.next());

describe('selectEnsemble', () => {
  it('starts from the first candidate and adds members while the validation metric rises', () => {
    const sel = selectEnsemble(y, [{ id: 'a', val: a }, { id: 'junk', val: useless }, { id: 'b', val: b }, { id: 'c', val: c }], { maxMembers: 5 });
    expect(sel.members[0]).toBe('a');
    expect(sel.members).not.toContain('junk');
    expect(new Set(sel.members)).toEqual(new Set(['a', 'b', 'c']));
    expect(sel.val.auc).toBeGreaterThan(rocAuc(y, a) + 0.005);
    expect(sel.val.auc).toBeCloseTo(rocAuc(y, averagePredictions([a, b, c])), 12);
    // every step improved on the one before
    for (let i = 1; i < sel.steps.length; i++) expect(sel.steps[i].value).toBeGreaterThan(sel.steps[i - 1].value);
  });

  it('keeps the single model when nothing beats it by minGain, and honours maxMembers and lower-is-better log loss', () => {
    expect(selectEnsemble(y, [{ id: 'a', val: a }, { id: 'junk', val: useless }], { maxMembers: 5 }).members).toEqual(['a']);
    expect(selectEnsemble(y, [{ id: 'a', val: a }, { id: 'b', val: b }, { id: 'c', val: c }], { maxMembers: 2 }).members).toHaveLength(2);
    expect(selectEnsemble(y, [{ id: 'a', val: a }, { id: 'b', val: b }], { maxMembers: 2, minGain: 1 }).members).toEqual(['a']);
    const byLoss = selectEnsemble(y, [{ id: 'a', val: a }, { id: 'junk', val: useless }, { id: 'b', val: b }], { maxMembers: 3, metric: 'valLogLoss' });
    expect(byLoss.members).toEqual(['a', 'b']);
    expect(byLoss.steps[1].value).toBeLessThan(byLoss.steps[0].value);
  });

  it("says how much the ensemble beats the single model on validation and whether that is within the noise", () => {
    // independent views: the ensemble's gain is many standard errors
    const strong = selectEnsemble(y, [{ id: 'a', val: a }, { id: 'b', val: b }, { id: 'c', val: c }], { maxMembers: 3 });
    const t = delongPairedTest(y, averagePredictions([a, b, c]), a);
    expect(strong.gain).toEqual({ over: 'a', diff: t.diff, se: t.se, p: t.pValue, withinNoise: false });
    expect(strong.gain!.diff).toBeCloseTo(strong.val.auc - rocAuc(y, a), 12);
    expect(strong.gain!.p).toBeLessThan(0.001);
    expect(formatEnsembleGain(strong.gain!)).toMatch(/^\+0\.0\d{3} over a \(SE 0\.00\d\d, p < 0\.001\)$/);
    // a near copy of a, taken whatever it adds (minGain −1): the records say its gain is noise
    const nearA = Float32Array.from(a, (v) => Math.min(1, Math.max(0, v + (rng.next() - 0.5) * 0.01)));
    const weak = selectEnsemble(y, [{ id: 'a', val: a }, { id: 'a2', val: nearA }], { maxMembers: 2, minGain: -1 });
    expect(weak.members).toEqual(['a', 'a2']);
    expect(weak.gain!.withinNoise).toBe(true);
    expect(Math.abs(weak.gain!.diff)).toBeLessThan(2 * weak.gain!.se + 1e-9);
    expect(formatEnsembleGain(weak.gain!)).toMatch(/^[+-]0\.000\d over a \(SE 0\.\d{4}, p \d\.\d+: within the noise\)$/);
    // one member: nothing to compare
    expect(selectEnsemble(y, [{ id: 'a', val: a }, { id: 'junk', val: useless }], { maxMembers: 5 }).gain).toBeUndefined();
    // one positive: DeLong's test is not defined, and the ensemble is built without a gain rather than failing the run
    const onePositive = Uint8Array.from(y, (_, i) => (i === 0 ? 1 : 0));
    const few = selectEnsemble(onePositive, [{ id: 'a', val: a }, { id: 'b', val: b }], { maxMembers: 2, minGain: -1 });
    expect(few.members).toEqual(['a', 'b']);
    expect(few.gain).toBeUndefined();
  });

  it('names a candidate whose predictions do not match the labels', () => {
    expect(() => selectEnsemble(y, [{ id: 'short', val: a.subarray(1) }], { maxMembers: 2 })).toThrow(/candidate short has 3999 validation predictions for 4000 labels/);
  });
});

describe('buildEnsembleModel', () => {
  const base: MlpParams = { hiddenUnits: [8, 4], dropout: 0.1, l2: 1e-4, learningRate: 0.01, batchSize: 8, epochs: 1, classWeight: 'none', patience: 1 };
  it('averages the members in one model.json that loads and predicts like their mean', async () => {
    const cols = 6;
    const layout = { blocks: [{ start: 3, width: 3 }] };
    const members = await Promise.all([
      serializeModel(buildMlp(cols, base, 1)),
      serializeModel(buildMlp(cols, { ...base, hiddenUnits: [5] }, 2)),
      serializeModel(buildMlp(cols, { ...base, embeddingDim: 2 }, 3, layout)),
    ]);
    const ensemble = await buildEnsembleModel(members);
    const names = (ensemble.modelJson.weightsManifest as { weights: { name: string }[] }[])[0].weights.map((w) => w.name);
    expect(new Set(names).size).toBe(names.length);
    const x = Float32Array.from({ length: 20 * cols }, (_, i) => Math.sin(i));
    const each = await Promise.all(members.map((m) => predict(m, x, 20, cols)));
    const mean = averagePredictions(each);
    const got = await predict(ensemble, x, 20, cols);
    const reloaded = await loadModel(ensemble);
    const again = await predict(reloaded, x, 20, cols);
    reloaded.dispose();
    for (let i = 0; i < 20; i++) {
      expect(got[i]).toBeCloseTo(mean[i], 6);
      expect(again[i]).toBe(got[i]);
    }
    expect(await buildEnsembleModel([members[0]])).toBe(members[0]);
  });

  it('joins members that read different encodings: one block of columns each, the ensemble the mean of each on its own matrix', async () => {
    const n = 60;
    const frame = {
      ids: Array.from({ length: n }, (_, i) => `u${i}`),
      label: Uint8Array.from({ length: n }, (_, i) => i % 2),
      numeric: { a: Float64Array.from({ length: n }, (_, i) => i * 1.5), b: Float64Array.from({ length: n }, (_, i) => (i % 7 === 0 ? NaN : Math.sqrt(i))) },
      categorical: { c: Array.from({ length: n }, (_, i) => (i % 3 ? 'x' : 'y')) },
    };
    const pre = fitPreprocessor(frame, [{ name: 'a', kind: 'numeric' }, { name: 'b', kind: 'numeric' }, { name: 'c', kind: 'categorical' }], { minCategoryCount: 1 });
    const encodings = [undefined, { numeric: 'ple' as const, bins: 4 }];
    const parts = encodings.map((e) => withEncoding(pre, e));
    const merged = withBlocks(pre, encodings);
    const m = transform(merged, frame);
    const own = parts.map((p) => transform(p, frame));
    expect(m.cols).toBe(own[0].cols + own[1].cols);
    expect(merged.featureNames[0]).toBe('b1:a');
    expect(merged.featureNames[own[0].cols]).toBe('b2:a__ple1');
    for (let r = 0; r < n; r++) expect(Array.from(m.x.subarray(r * m.cols, (r + 1) * m.cols))).toEqual([...own[0].x.subarray(r * own[0].cols, (r + 1) * own[0].cols), ...own[1].x.subarray(r * own[1].cols, (r + 1) * own[1].cols)]);
    const slices = blockSlices(merged);
    expect(slices).toEqual([{ start: 0, width: own[0].cols }, { start: own[0].cols, width: own[1].cols }]);
    // feature a's columns in both blocks move together under permutation importance
    expect(stepColumnRanges(merged)[0]).toEqual([{ start: 0, width: 1 }, { start: own[0].cols, width: own[1].featureNames.filter((f) => f.startsWith('a__')).length }]);

    const members = [await serializeModel(buildMlp(own[0].cols, base, 4)), await serializeModel(buildMlp(own[1].cols, base, 5))];
    const ensemble = await buildEnsembleModel(members, [slices[0], slices[1]]);
    const expected = averagePredictions(await Promise.all(members.map((mm, k) => predict(mm, own[k].x, n, own[k].cols))));
    const got = await predict(ensemble, m.x, n, m.cols);
    for (let i = 0; i < n; i++) expect(got[i]).toBeCloseTo(expected[i], 6);
    await expect(buildEnsembleModel(members, [slices[1], slices[0]])).rejects.toThrow(/its slice has another width/);
  });

  it('refuses members that read different columns', async () => {
    const members = [await serializeModel(buildMlp(4, base, 1)), await serializeModel(buildMlp(5, base, 1))];
    await expect(buildEnsembleModel(members)).rejects.toThrow(/member 2 takes 5 input columns, expected one input of 4/);
  });
});

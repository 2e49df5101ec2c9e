import { describe, expect, it } from 'vitest';
import { averagePredictions, buildEnsembleModel, selectEnsemble } from '../../ml/ensemble.js';
import { buildMlp, loadModel, predict, serializeModel } from '../../ml/model.js';
import { rocAuc } from '../../ml/metrics.js';
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

  it('refuses members that read different columns', async () => {
    const members = [await serializeModel(buildMlp(4, base, 1)), await serializeModel(buildMlp(5, base, 1))];
    await expect(buildEnsembleModel(members)).rejects.toThrow(/member 2 takes 5 input columns, expected one input of 4/);
  });
});

import { evaluateBinary } from '../../ml/evaluation.js';
import { rocAuc } from '../../ml/metrics.js';
import { createRng, shuffleInPlace } from '../../ml/random.js';
import type { FeatureImportance } from '../../ml/importance.js';
import type { ModelCardInput } from '../../report/model-card.js';

/**
 * A model card input from a real evaluation on seeded data: a known logistic model over `features` numeric columns
 * scores `rows` users, labels are drawn from a noisier truth, ml/evaluation.ts evaluates the scores, and permutation
 * importance is computed for real (each column shuffled, ROC-AUC drop of the same scorer).
 */
export function evaluatedCardInput(opts: { rows?: number; features?: number; seed?: number; names?: string[] } = {}): ModelCardInput {
  const rows = opts.rows ?? 3000;
  const k = opts.features ?? 25;
  const rng = createRng(opts.seed ?? 11);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  const names = opts.names ?? Array.from({ length: k }, (_, j) => `feature_${String(j).padStart(2, '0')}`);
  const weights = names.map((_, j) => 1.2 / (1 + j * 0.4) * (j % 3 === 2 ? -1 : 1));
  const cols = names.map(() => Float64Array.from({ length: rows }, gauss));
  const score = (c: Float64Array[]) =>
    Float64Array.from({ length: rows }, (_, i) => {
      let z = -2.2;
      for (let j = 0; j < names.length; j++) z += weights[j] * c[j][i];
      return 1 / (1 + Math.exp(-z));
    });
  const probs = score(cols);
  const labels = Float64Array.from(probs, (p) => (rng.next() < Math.min(1, Math.max(0, p + 0.1 * gauss())) ? 1 : 0));
  const region = Array.from({ length: rows }, (_, i) => ['north', 'south', 'east', null][i % 4]);
  const report = evaluateBinary(labels, probs, {
    threshold: 'maxF1',
    segments: { region },
    bootstrap: { samples: 60, seed: 3 },
  });
  const base = rocAuc(labels, probs);
  const importance: FeatureImportance[] = names
    .map((feature, j) => {
      const shuffled = cols.slice();
      shuffled[j] = shuffleInPlace(Float64Array.from(cols[j]), createRng(100 + j));
      return { feature, kind: 'numeric' as const, aucDrop: base - rocAuc(labels, score(shuffled)) };
    })
    .sort((a, b) => b.aucDrop - a.aucDrop);
  const m = report.metrics;
  return {
    modelName: 'propensity',
    version: null,
    createdAt: '2026-11-24T03:00:00.000Z',
    report,
    gate: {
      blessed: true,
      reasons: [],
      checks: [{ metric: 'rocAuc', op: '>=', value: m.rocAuc, threshold: 0.65, passed: m.rocAuc >= 0.65 }],
      comparisons: [
        {
          check: 'beats_baseline', against: 'baseline', challengerAuc: m.rocAuc, otherAuc: m.rocAuc - 0.01, diff: 0.01, pValue: 0.03, passed: true,
          detail: `test ROC-AUC ${m.rocAuc.toFixed(4)} vs logistic baseline ${(m.rocAuc - 0.01).toFixed(4)}`,
        },
        {
          check: 'not_worse_than_champion', against: 'champion v3', challengerAuc: NaN, otherAuc: NaN, diff: NaN, pValue: null, passed: true,
          skipped: 'feature set changed', detail: 'skipped: the champion v3 cannot score this test split (feature set changed)',
        },
      ],
    },
    featureImportance: importance,
    data: {
      splits: { train: { rows: rows * 8, positiveRate: 0.21 }, val: { rows, positiveRate: 0.2 }, test: { rows, positiveRate: m.positiveRate } },
      quality: [
        { stage: 'events', rowsIn: 51234, rowsOut: 50800, quarantined: { duplicate_event_id: 400, negative_price: 34, unknown_type: 0 } },
        { stage: 'clean', rowsIn: rows * 10 + 12, rowsOut: rows * 10, quarantined: { duplicate_entity_key: 12 } },
      ],
    },
    lineage: {
      runId: 'run-0000-fixture',
      workflowId: 'train-propensity-2026-11-24',
      configHash: 'c0ffee',
      codeVersion: 'abc123',
      dataSha256: 'd'.repeat(64),
      params: { hiddenUnits: [32, 16], dropout: 0.1, learningRate: 0.003, batchSize: 256, classWeight: 'none' },
      seed: 1234,
      backend: 'wasm',
      cutoff: '2026-11-09T00:00:00.000Z',
      horizonDays: 14,
      source: 'events',
      features: names,
    },
  };
}

/**
 * Our evaluation and DeLong code against values computed ONCE by scikit-learn / scipy / numpy
 * (test/fixtures/sklearn-metrics/compute.py, versions in expected.json) on a committed 2,000-row fixture.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { expectedCalibrationError, reliabilityCurve } from '../../ml/calibration.js';
import { delongAuc, delongPairedTest, type DelongAuc, type DelongPairedTest } from '../../ml/delong.js';
import { evaluateBinary } from '../../ml/evaluation.js';

const dir = new URL('../fixtures/sklearn-metrics/', import.meta.url);
const TOL = 1e-6;

interface ModelExpected {
  rocAuc: number;
  prAuc: number;
  logLoss: number;
  brier: number;
  f1: number;
  precision: number;
  recall: number;
  predictedPositiveRate: number;
  ece: number;
  calibration: { bins: number[]; meanPredicted: number[]; observedRate: number[]; count: number[] };
  maxF1: { threshold: number; f1: number };
  delong: DelongAuc;
  rocCurve: [number, number][];
  prCurve: [number, number][];
  deciles: { decile: number; rows: number; positives: number; rate: number; lift: number; cumulativeCapture: number }[];
}
interface Expected {
  versions: Record<string, string>;
  rows: number;
  positives: number;
  threshold: number;
  a: ModelExpected;
  b: ModelExpected;
  pairedAB: DelongPairedTest;
  pairedAC: DelongPairedTest;
  segmentsA: { channel: Record<string, Record<string, number | null>> };
}

const expected = JSON.parse(readFileSync(new URL('expected.json', dir), 'utf8')) as Expected;
const lines = readFileSync(new URL('scores.csv', dir), 'utf8').trim().split('\n');
const header = lines[0].split(',');
const rows = lines.slice(1).map((l) => l.split(','));
const col = (name: string) => header.indexOf(name);
const label = Float64Array.from(rows, (r) => Number(r[col('label')]));
const scores = {
  a: Float64Array.from(rows, (r) => Number(r[col('score_a')])),
  b: Float64Array.from(rows, (r) => Number(r[col('score_b')])),
  c: Float64Array.from(rows, (r) => Number(r[col('score_c')])),
};
const channel = rows.map((r) => r[col('channel')] || null);

let maxDiff = 0;
let compared = 0;
function close(actual: number | null, want: number | null, what: string): void {
  if (want === null) {
    expect(actual, what).toBeNull();
    return;
  }
  expect(actual, what).not.toBeNull();
  const d = Math.abs((actual as number) - want);
  maxDiff = Math.max(maxDiff, d);
  compared++;
  expect(d, `${what}: ${actual} vs sklearn ${want}`).toBeLessThanOrEqual(TOL);
}

afterAll(() => {
  console.log(`[sklearn fixture] ${compared} values compared, max |TS − reference| = ${maxDiff.toExponential(3)}`);
});

describe(`evaluation agrees with scikit-learn ${expected.versions.sklearn} / scipy ${expected.versions.scipy} to 1e-6`, () => {
  it('fixture is what compute.py describes', () => {
    expect(label.length).toBe(expected.rows);
    expect(label.reduce((s, v) => s + v, 0)).toBe(expected.positives);
  });

  for (const model of ['a', 'b'] as const) {
    describe(`score_${model}`, () => {
      const want = expected[model];
      const report = evaluateBinary(label, scores[model], { threshold: expected.threshold, bootstrap: false, curvePoints: 1_000_000 });

      it('point metrics and F1/precision/recall at a fixed threshold (prob >= t)', () => {
        const m = report.metrics;
        for (const k of ['rocAuc', 'prAuc', 'logLoss', 'brier', 'f1', 'precision', 'recall', 'predictedPositiveRate', 'ece'] as const) {
          close(m[k], want[k], k);
        }
        expect(m.threshold).toBe(expected.threshold);
        expect(m.rows).toBe(expected.rows);
        expect(m.positives).toBe(expected.positives);
      });

      it("'maxF1' picks sklearn's precision_recall_curve argmax", () => {
        const r = evaluateBinary(label, scores[model], { threshold: 'maxF1', bootstrap: false });
        expect(r.metrics.threshold).toBe(want.maxF1.threshold);
        close(r.metrics.f1, want.maxF1.f1, 'max F1');
      });

      it('ECE and reliability curve on calibration_curve(n_bins=10) bins', () => {
        close(expectedCalibrationError(label, scores[model]), want.ece, 'ece');
        const curve = reliabilityCurve(label, scores[model]);
        expect(curve.map((p) => p.bin)).toEqual(want.calibration.bins);
        expect(curve.map((p) => p.count)).toEqual(want.calibration.count);
        curve.forEach((p, i) => {
          close(p.meanPredicted, want.calibration.meanPredicted[i], `prob_pred[${i}]`);
          close(p.observedRate, want.calibration.observedRate[i], `prob_true[${i}]`);
        });
        expect(report.curves.calibration).toEqual(curve);
      });

      it('full ROC and PR curves equal roc_curve / precision_recall_curve (drop_intermediate=False)', () => {
        expect(report.curves.roc).toHaveLength(want.rocCurve.length);
        expect(report.curves.pr).toHaveLength(want.prCurve.length);
        report.curves.roc.forEach(([x, y], i) => {
          close(x, want.rocCurve[i][0], `fpr[${i}]`);
          close(y, want.rocCurve[i][1], `tpr[${i}]`);
        });
        report.curves.pr.forEach(([x, y], i) => {
          close(x, want.prCurve[i][0], `recall[${i}]`);
          close(y, want.prCurve[i][1], `precision[${i}]`);
        });
      });

      it('deciles equal the numpy stable-argsort lift table', () => {
        expect(report.deciles).toHaveLength(10);
        report.deciles.forEach((d, i) => {
          const w = want.deciles[i];
          expect([d.decile, d.rows, d.positives]).toEqual([w.decile, w.rows, w.positives]);
          close(d.rate, w.rate, `rate[${i}]`);
          close(d.lift, w.lift, `lift[${i}]`);
          close(d.cumulativeCapture, w.cumulativeCapture, `capture[${i}]`);
        });
      });

      it('DeLong AUC and variance equal the numpy Sun & Xu reference (cross-checked O(mn) in compute.py)', () => {
        const d = delongAuc(label, scores[model]);
        close(d.auc, want.delong.auc, 'delong auc');
        close(d.variance, want.delong.variance, 'delong variance');
        // relative agreement too: the variance is ~2e-4, so 1e-6 absolute alone would be loose
        expect(Math.abs(d.variance / want.delong.variance - 1)).toBeLessThan(1e-9);
      });
    });
  }

  for (const [name, other] of [['pairedAB', 'b'], ['pairedAC', 'c']] as const) {
    it(`DeLong paired test score_a vs score_${other} equals the numpy/scipy reference`, () => {
      const want = expected[name];
      const t = delongPairedTest(label, scores.a, scores[other]);
      for (const k of ['aucA', 'aucB', 'diff', 'se', 'z', 'pValue'] as const) close(t[k], want[k], `${name}.${k}`);
      expect(Math.abs(t.pValue / want.pValue - 1)).toBeLessThan(1e-9);
      expect(Math.abs(t.se / want.se - 1)).toBeLessThan(1e-9);
    });
  }

  it('segment metrics equal sklearn per channel value (one-class segment → null AUCs)', () => {
    const r = evaluateBinary(label, scores.a, { segments: { channel }, bootstrap: false });
    const want = expected.segmentsA.channel;
    expect(Object.keys(r.segments.channel).sort()).toEqual(Object.keys(want).sort());
    for (const [value, w] of Object.entries(want)) {
      const got = r.segments.channel[value];
      expect([got.rows, got.positives]).toEqual([w.rows, w.positives]);
      for (const k of ['rocAuc', 'prAuc', 'logLoss', 'brier'] as const) close(got[k], w[k], `${value}.${k}`);
    }
  });
});

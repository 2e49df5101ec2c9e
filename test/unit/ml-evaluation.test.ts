import { describe, expect, it } from 'vitest';
import { expectedCalibrationError, reliabilityCurve, uniformBinEdges } from '../../ml/calibration.js';
import { delongAucCi } from '../../ml/delong.js';
import { evaluateBinary, percentileLinear, SEGMENT_NULL_KEY } from '../../ml/evaluation.js';
import { prAuc, rocAuc } from '../../ml/metrics.js';
import { createRng } from '../../ml/random.js';
import { errorType } from '../support/errors.js';


function synthetic(n: number, seed: number, decimals = 3) {
  const rng = createRng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  const y = new Float64Array(n);
  const p = new Float64Array(n);
  const k = 10 ** decimals;
  for (let i = 0; i < n; i++) {
    const x = gauss();
    y[i] = rng.next() < 1 / (1 + Math.exp(-(-2.2 + 1.3 * x))) ? 1 : 0;
    p[i] = Math.round(k / (1 + Math.exp(-(-2.2 + 1.2 * x + 0.4 * gauss())))) / k;
  }
  return { y, p };
}

describe('calibration', () => {
  it('hand-computed ECE: Σ n_b/N · |mean p − rate| over sklearn uniform bins', () => {
    // 0.05, 0.1 → bin 0 (an inner edge belongs to the lower bin): mean .075, rate .5, |.425|·2
    // 0.15 → bin 1: |.15 − 1|·1 = .85;  0.8 → bin 7 (0.7, 0.8]: |.8 − 0| = .8;  0.95 → bin 9: .05
    const y = [0, 1, 1, 0, 1];
    const p = [0.05, 0.1, 0.15, 0.8, 0.95];
    expect(expectedCalibrationError(y, p)).toBeCloseTo((0.85 + 0.85 + 0.8 + 0.05) / 5, 15);
    const curve = reliabilityCurve(y, p);
    expect(curve.map((c) => [c.bin, c.count, c.observedRate])).toEqual([
      [0, 2, 0.5],
      [1, 1, 1],
      [7, 1, 0],
      [9, 1, 1],
    ]);
    expect(curve[0].meanPredicted).toBeCloseTo(0.075, 15);
    expect(curve[2]).toMatchObject({ lower: 0.7000000000000001, upper: 0.8 });
  });

  it('edges are numpy.linspace(0, 1, 11); 0 and 1 land in the end bins; 0.3 goes to (0.2, 0.3]', () => {
    expect(uniformBinEdges(10)).toEqual([0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6000000000000001, 0.7000000000000001, 0.8, 0.9, 1]);
    expect(reliabilityCurve([0, 1, 1], [0, 1, 0.3]).map((c) => c.bin)).toEqual([0, 2, 9]);
  });

  it('perfectly calibrated bins give ECE 0; one class is fine; bad input throws', () => {
    expect(expectedCalibrationError([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])).toBe(0);
    expect(expectedCalibrationError([0, 0], [0.2, 0.4])).toBeCloseTo(0.3, 15);
    expect(errorType(() => expectedCalibrationError([0, 1], [0.2, 1.1]))).toBe('InvalidData');
    expect(errorType(() => expectedCalibrationError([], []))).toBe('EmptyDataset');
    expect(errorType(() => expectedCalibrationError([0, 1], [0.2, 0.4], 0))).toBe('InvalidConfig');
  });
});

describe('evaluateBinary: hand-computed', () => {
  it('deciles: decile 1 = highest scores, lift = rate / base rate, cumulative capture', () => {
    // 20 rows given lowest score first; sorted by score desc the labels are 1,1 | 1,0 | 0,1 | 0,0 | 1,0 | 0 …
    const desc = [1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const y = [...desc].reverse();
    const p = y.map((_, i) => (i + 1) / 20);
    const r = evaluateBinary(y, p, { bootstrap: false });
    expect(r.deciles.map((d) => [d.decile, d.rows, d.positives, d.rate, d.lift, d.cumulativeCapture])).toEqual([
      [1, 2, 2, 1, 4, 0.4],
      [2, 2, 1, 0.5, 2, 0.6],
      [3, 2, 1, 0.5, 2, 0.8],
      [4, 2, 0, 0, 0, 0.8],
      [5, 2, 1, 0.5, 2, 1],
      [6, 2, 0, 0, 0, 1],
      [7, 2, 0, 0, 0, 1],
      [8, 2, 0, 0, 0, 1],
      [9, 2, 0, 0, 0, 1],
      [10, 2, 0, 0, 0, 1],
    ]);
    expect(r.metrics).toMatchObject({ rows: 20, positives: 5, positiveRate: 0.25 });
  });

  it('deciles: ties straddling a boundary are split by row order; sizes differ by at most one', () => {
    // all tied, so the order is the row order; row r (0-based) goes to decile floor(10r / 13) + 1
    const r = evaluateBinary([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1], new Array(13).fill(0.5), { bootstrap: false });
    expect(r.deciles.map((d) => d.rows)).toEqual([2, 1, 1, 2, 1, 1, 2, 1, 1, 1]);
    expect(r.deciles.map((d) => d.positives)).toEqual([1, 0, 1, 0, 0, 1, 0, 0, 0, 1]);
  });

  it("threshold: prob >= t is positive; 'maxF1' picks the best distinct score", () => {
    const y = [1, 0, 1, 0, 0];
    const p = [0.9, 0.8, 0.7, 0.3, 0.1];
    // t = .9: F1 2/3; .8: 1/2; .7: TP 2 FP 1 → 4/5; .3: 4/6; .1: 4/7
    const best = evaluateBinary(y, p, { threshold: 'maxF1', bootstrap: false }).metrics;
    expect(best).toMatchObject({ threshold: 0.7, f1: 0.8, recall: 1, predictedPositiveRate: 0.6 });
    expect(best.precision).toBeCloseTo(2 / 3, 15);
    const fixed = evaluateBinary(y, p, { threshold: 0.8, bootstrap: false }).metrics;
    expect(fixed).toMatchObject({ threshold: 0.8, f1: 0.5, precision: 0.5, recall: 0.5 });
    // nothing predicted positive: precision 0 (sklearn zero_division), F1 0
    expect(evaluateBinary(y, p, { threshold: 0.95, bootstrap: false }).metrics).toMatchObject({ f1: 0, precision: 0, recall: 0 });
    // default 0.5
    expect(evaluateBinary(y, p, { bootstrap: false }).metrics.threshold).toBe(0.5);
  });

  it('segments: per value metrics, null values under SEGMENT_NULL_KEY, AUCs null for one class or one row', () => {
    const y = [1, 0, 1, 0, 0, 1, 0, 1];
    const p = [0.9, 0.2, 0.6, 0.7, 0.1, 0.4, 0.3, 0.8];
    const region = ['n', 'n', 'n', 'n', 's', 's', null, '__proto__'];
    const r = evaluateBinary(y, p, { segments: { region }, bootstrap: false });
    const seg = r.segments.region;
    expect(Object.keys(seg)).toEqual([SEGMENT_NULL_KEY, '__proto__', 'n', 's']);
    expect(seg.n).toMatchObject({ rows: 4, positives: 2, rocAuc: rocAuc([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.7]) });
    expect(seg.n.rocAuc).toBe(0.75);
    expect(seg.s).toMatchObject({ rows: 2, positives: 1, rocAuc: 1, prAuc: 1 });
    expect(seg[SEGMENT_NULL_KEY]).toMatchObject({ rows: 1, positives: 0, rocAuc: null, prAuc: null });
    expect(seg[SEGMENT_NULL_KEY].brier).toBeCloseTo(0.09, 15);
    expect(Object.getOwnPropertyDescriptor(seg, '__proto__')?.value).toMatchObject({ rows: 1, positives: 1, rocAuc: null });
  });

  it('curves: start/end points, downsampled to curvePoints, monotone', () => {
    const { y, p } = synthetic(3000, 5);
    const r = evaluateBinary(y, p, { bootstrap: false, curvePoints: 21 });
    expect(r.curves.roc).toHaveLength(21);
    expect(r.curves.pr).toHaveLength(21);
    expect(r.curves.roc[0]).toEqual([0, 0]);
    expect(r.curves.roc[20]).toEqual([1, 1]);
    expect(r.curves.pr[0]).toEqual([0, 1]);
    expect(r.curves.pr[20]).toEqual([1, r.metrics.positiveRate]);
    for (let i = 1; i < 21; i++) {
      expect(r.curves.roc[i][0]).toBeGreaterThanOrEqual(r.curves.roc[i - 1][0]);
      expect(r.curves.roc[i][1]).toBeGreaterThanOrEqual(r.curves.roc[i - 1][1]);
      expect(r.curves.pr[i][0]).toBeGreaterThanOrEqual(r.curves.pr[i - 1][0]);
    }
    expect(evaluateBinary(y, p, { bootstrap: false }).curves.roc).toHaveLength(101);
    expect(evaluateBinary([0, 1], [0.2, 0.7], { bootstrap: false }).curves.roc).toEqual([[0, 0], [0, 1], [1, 1]]);
  });

  it('report is JSON-serializable and agrees with metrics.ts', () => {
    const { y, p } = synthetic(2000, 9);
    const segments = { half: Array.from(y, (_, i) => (i % 2 ? 'odd' : 'even')) };
    const r = evaluateBinary(y, p, { segments, bootstrap: { samples: 50, seed: 1 } });
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
    expect(r.metrics.rocAuc).toBeCloseTo(rocAuc(y, p), 14);
    expect(r.metrics.prAuc).toBeCloseTo(prAuc(y, p), 14);
    expect(r.ci95.rocAucDeLong).toEqual(delongAucCi(y, p));
    expect(r.bootstrap).toEqual({ samples: 50, seed: 1 });
    expect(r.metrics.ece).toBeCloseTo(expectedCalibrationError(y, p), 15);
  });

  it('rejects bad input and options', () => {
    expect(errorType(() => evaluateBinary([0, 0, 0], [0.1, 0.2, 0.3]))).toBe('SingleClassLabel');
    expect(errorType(() => evaluateBinary([0, 1], [0.1, 1.2]))).toBe('InvalidData');
    expect(errorType(() => evaluateBinary([0, 1], [0.1, NaN]))).toBe('InvalidData');
    expect(errorType(() => evaluateBinary([0, 1, 1], [0.1, 0.2]))).toBe('InvalidData');
    expect(errorType(() => evaluateBinary([], []))).toBe('EmptyDataset');
    expect(errorType(() => evaluateBinary([0, 1], [0.1, 0.2], { segments: { s: ['a'] } }))).toBe('InvalidData');
    expect(errorType(() => evaluateBinary([0, 1], [0.1, 0.2], { curvePoints: 1 }))).toBe('InvalidConfig');
    expect(errorType(() => evaluateBinary([0, 1], [0.1, 0.2], { bootstrap: { samples: 0, seed: 1 } }))).toBe('InvalidConfig');
    expect(errorType(() => evaluateBinary([0, 1], [0.1, 0.2], { threshold: NaN }))).toBe('InvalidConfig');
  });

  it('DeLong CI is null with fewer than 2 rows of a class', () => {
    expect(evaluateBinary([0, 1, 0], [0.1, 0.9, 0.3], { bootstrap: false }).ci95).toEqual({ rocAuc: null, prAuc: null, rocAucDeLong: null });
  });
});

describe('evaluateBinary: bootstrap', () => {
  const { y, p } = synthetic(5000, 3);

  it('CI contains the point estimate, is deterministic for a seed and changes with the seed', () => {
    const r1 = evaluateBinary(y, p, { bootstrap: { samples: 200, seed: 42 } });
    const r2 = evaluateBinary(y, p, { bootstrap: { samples: 200, seed: 42 } });
    const r3 = evaluateBinary(y, p, { bootstrap: { samples: 200, seed: 43 } });
    const [lo, hi] = r1.ci95.rocAuc!;
    expect(lo).toBeLessThan(r1.metrics.rocAuc);
    expect(hi).toBeGreaterThan(r1.metrics.rocAuc);
    expect(r1.ci95.prAuc![0]).toBeLessThan(r1.metrics.prAuc);
    expect(r1.ci95.prAuc![1]).toBeGreaterThan(r1.metrics.prAuc);
    expect(r2.ci95).toEqual(r1.ci95);
    expect(r3.ci95.rocAuc).not.toEqual(r1.ci95.rocAuc);
    // the bootstrap and DeLong agree on the width of the AUC interval to within ~25%
    const [dlo, dhi] = r1.ci95.rocAucDeLong!;
    expect((hi - lo) / (dhi - dlo)).toBeGreaterThan(0.75);
    expect((hi - lo) / (dhi - dlo)).toBeLessThan(1.25);
  });

  it('default is 200 samples with seed 0', () => {
    expect(evaluateBinary(y, p).bootstrap).toEqual({ samples: 200, seed: 0 });
  });

  it('re-weighting the sorted groups equals resampling rows and re-sorting (same PRNG draws)', () => {
    const small = synthetic(600, 8, 2); // 2 decimals: many ties
    const B = 30;
    const seed = 99;
    const r = evaluateBinary(small.y, small.p, { bootstrap: { samples: B, seed } });
    const posRows = [...small.y.keys()].filter((i) => small.y[i] === 1);
    const negRows = [...small.y.keys()].filter((i) => small.y[i] === 0);
    const rng = createRng(seed);
    const aucs = new Float64Array(B);
    const aps = new Float64Array(B);
    for (let b = 0; b < B; b++) {
      const rows = [
        ...posRows.map(() => posRows[rng.int(posRows.length)]),
        ...negRows.map(() => negRows[rng.int(negRows.length)]),
      ];
      const yy = rows.map((i) => small.y[i]);
      const pp = rows.map((i) => small.p[i]);
      aucs[b] = rocAuc(yy, pp);
      aps[b] = prAuc(yy, pp);
    }
    expect(r.ci95.rocAuc![0]).toBeCloseTo(percentileLinear(aucs.slice(), 2.5), 12);
    expect(r.ci95.rocAuc![1]).toBeCloseTo(percentileLinear(aucs.slice(), 97.5), 12);
    expect(r.ci95.prAuc![0]).toBeCloseTo(percentileLinear(aps.slice(), 2.5), 12);
    expect(r.ci95.prAuc![1]).toBeCloseTo(percentileLinear(aps.slice(), 97.5), 12);
  });

  it('percentileLinear matches numpy.percentile (linear)', () => {
    // np.percentile([1, 2, 3, 4, 10], [2.5, 50, 97.5]) = [1.1, 3., 9.4]
    expect(percentileLinear(Float64Array.from([10, 2, 4, 1, 3]), 2.5)).toBeCloseTo(1.1, 14);
    expect(percentileLinear(Float64Array.from([10, 2, 4, 1, 3]), 50)).toBe(3);
    expect(percentileLinear(Float64Array.from([10, 2, 4, 1, 3]), 97.5)).toBeCloseTo(9.4, 14);
  });

  it('50k rows with the default 200-sample bootstrap stays well under a few seconds', () => {
    const big = synthetic(50_000, 21);
    const segments = { s: Array.from(big.y, (_, i) => ['a', 'b', 'c', null][i % 4]) };
    const t0 = performance.now();
    const r = evaluateBinary(big.y, big.p, { segments });
    const ms = performance.now() - t0;
    console.log(`[evaluateBinary] 50k rows, 200 bootstrap samples, 1 segment column: ${ms.toFixed(0)} ms`);
    expect(r.ci95.rocAuc).not.toBeNull();
    expect(ms).toBeLessThan(5000);
  });
});

import { describe, expect, it } from 'vitest';
import { delongAuc, delongAucCi, delongPairedTest, formatPValue, midranks, normalSf, twoSidedNormalP, Z_975 } from '../../ml/delong.js';
import { rocAuc } from '../../ml/metrics.js';
import { createRng } from '../../ml/random.js';
import { errorType } from '../support/errors.js';


/** Seeded imbalanced data: a latent signal, a good model (a) and a clearly worse one (b) on the same rows. */
function synthetic(n: number, seed: number) {
  const rng = createRng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  const y = new Float64Array(n);
  const a = new Float64Array(n);
  const b = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const x = gauss();
    y[i] = rng.next() < 1 / (1 + Math.exp(-(-2 + 1.5 * x))) ? 1 : 0;
    a[i] = Math.round(100 / (1 + Math.exp(-(-2 + 1.4 * x + 0.3 * gauss())))) / 100;
    b[i] = Math.round(100 / (1 + Math.exp(-(-2 + 0.4 * x + 1.0 * gauss())))) / 100;
  }
  return { y, a, b };
}

describe('midranks', () => {
  it('averages tied positions like scipy rankdata', () => {
    expect(Array.from(midranks([3, 1, 3, 2, 3]))).toEqual([4, 1, 4, 2, 4]);
    expect(Array.from(midranks([0.5, 0.5]))).toEqual([1.5, 1.5]);
  });
});

describe('delongAuc', () => {
  it('hand-computed: structural components [1, 0.5] and [0.5, 1] give variance 0.125/2 + 0.125/2', () => {
    // positives 0.9 (beats both negatives), 0.4 (beats 0.1); negatives 0.6 (beaten by 0.9), 0.1 (beaten by both)
    expect(delongAuc([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1])).toEqual({ auc: 0.75, variance: 0.125 });
  });

  it('equals the Mann–Whitney AUC (with ties) and gives a CI around it', () => {
    const { y, a } = synthetic(3000, 7);
    const d = delongAuc(y, a);
    expect(d.auc).toBeCloseTo(rocAuc(y, a), 12);
    expect(d.variance).toBeGreaterThan(0);
    const [lo, hi] = delongAucCi(y, a);
    expect(lo).toBeCloseTo(d.auc - Z_975 * Math.sqrt(d.variance), 12);
    expect(hi).toBeCloseTo(d.auc + Z_975 * Math.sqrt(d.variance), 12);
  });

  it('perfect separation: AUC 1, variance 0, CI clipped to [1, 1]', () => {
    expect(delongAuc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])).toEqual({ auc: 1, variance: 0 });
    expect(delongAucCi([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])).toEqual([1, 1]);
  });

  it('rejects one class, fewer than 2 of a class, mismatched lengths, non-finite scores', () => {
    expect(errorType(() => delongAuc([1, 1, 1], [0.1, 0.2, 0.3]))).toBe('SingleClassLabel');
    expect(errorType(() => delongAuc([1, 0, 0], [0.1, 0.2, 0.3]))).toBe('InvalidData');
    expect(errorType(() => delongAuc([1, 0, 0, 1], [0.1, 0.2, 0.3]))).toBe('InvalidData');
    expect(errorType(() => delongAuc([1, 0, 0, 1], [0.1, NaN, 0.3, 0.4]))).toBe('InvalidData');
    expect(errorType(() => delongAuc([], []))).toBe('EmptyDataset');
  });
});

describe('delongPairedTest', () => {
  const { y, a, b } = synthetic(2000, 11);

  it('detects a clearly worse model (p < 0.01), symmetric in A/B', () => {
    const t = delongPairedTest(y, a, b);
    expect(t.aucA).toBeGreaterThan(t.aucB + 0.1);
    expect(t.diff).toBeCloseTo(t.aucA - t.aucB, 15);
    expect(t.z).toBeGreaterThan(2.58);
    expect(t.pValue).toBeLessThan(0.01);
    const r = delongPairedTest(y, b, a);
    expect(r.z).toBeCloseTo(-t.z, 12);
    expect(r.pValue).toBeCloseTo(t.pValue, 15);
    expect(r.se).toBeCloseTo(t.se, 15);
  });

  it('an identical model, or the same ranking on another scale, gives z = 0 and p = 1', () => {
    expect(delongPairedTest(y, a, a)).toMatchObject({ diff: 0, se: 0, z: 0, pValue: 1 });
    const squashed = Float64Array.from(a, (s) => s * s * 0.5);
    expect(delongPairedTest(y, a, squashed)).toMatchObject({ diff: 0, se: 0, z: 0, pValue: 1 });
  });

  it('variance of the difference uses the covariance: paired se is below the unpaired one for correlated models', () => {
    const close = Float64Array.from(a, (s, i) => Math.min(1, Math.max(0, s + (i % 7 === 0 ? 0.05 : -0.01))));
    const t = delongPairedTest(y, a, close);
    const unpaired = Math.sqrt(delongAuc(y, a).variance + delongAuc(y, close).variance);
    expect(t.se).toBeGreaterThan(0);
    expect(t.se).toBeLessThan(unpaired);
  });
});

describe('normal tail probabilities (scipy 1.17.1 2·norm.sf(z))', () => {
  const ref: [number, number][] = [
    [0, 1],
    [0.5, 0.6170750774519738],
    [1, 0.31731050786291415],
    [Z_975, 0.05],
    [2.5, 0.012419330651552265],
    [3, 0.0026997960632601866],
    [3.6, 0.00031821718031506727],
    [5, 5.733031437583866e-7],
    [8, 1.244192114854348e-15],
    [12, 3.552964224155306e-33],
    [30, 9.813427854295816e-198],
  ];
  for (const [z, p] of ref) {
    it(`z = ${z}`, () => {
      expect(Math.abs(twoSidedNormalP(z) - p)).toBeLessThan(1e-15);
      expect(Math.abs(twoSidedNormalP(z) / p - 1)).toBeLessThan(1e-12);
      expect(twoSidedNormalP(-z)).toBe(twoSidedNormalP(z));
    });
  }
  it('one-sided: normalSf', () => {
    expect(normalSf(0)).toBe(0.5);
    expect(normalSf(1.959963984540054)).toBeCloseTo(0.025, 15);
    expect(normalSf(-1.959963984540054)).toBeCloseTo(0.975, 15);
    expect(twoSidedNormalP(Infinity)).toBe(0);
  });
});

describe('formatPValue: how records print a p-value', () => {
  it('gives two significant digits, "< 0.001" below that and "n/a" for none', () => {
    expect(formatPValue(0.7312)).toBe('0.73');
    expect(formatPValue(0.0184)).toBe('0.018');
    expect(formatPValue(0.30)).toBe('0.30');
    expect(formatPValue(0.9996)).toBe('1.0');
    expect(formatPValue(0.0004)).toBe('< 0.001');
    expect(formatPValue(NaN)).toBe('n/a');
    expect(formatPValue(null)).toBe('n/a');
  });

  it('never rounds across alpha: a p just below it keeps the digits that show it is below', () => {
    // two digits would print 0.050 for both, and a reader would take the significant one for not significant
    expect(formatPValue(0.0499)).toBe('0.0499');
    expect(formatPValue(0.049996)).toBe('0.049996');
    expect(formatPValue(0.0501)).toBe('0.050');
    for (const alpha of [0.01, 0.05, 0.1]) {
      for (const p of [alpha * (1 - 1e-9), alpha * (1 - 1e-4), alpha * 0.999, alpha, alpha * 1.001, alpha * (1 + 1e-6)]) {
        expect(Number(formatPValue(p, alpha)) < alpha, `p ${p} at alpha ${alpha}`).toBe(p < alpha);
      }
    }
    // below 0.001 the text is "< 0.001" unless alpha itself is that small
    expect(formatPValue(0.00049, 0.0005)).toBe('0.00049');
  });
});

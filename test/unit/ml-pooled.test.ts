import { describe, expect, it } from 'vitest';
import { delongPairedTest, twoSidedNormalP, Z_975 } from '../../ml/delong.js';
import { poolDifferences } from '../../ml/pooled.js';
import { createRng } from '../../ml/random.js';
import { errorType } from '../support/errors.js';

describe('poolDifferences', () => {
  it('hand-computed: mean of the differences, SE sqrt(Σ se²)/n, a 95 % interval and a two-sided p', () => {
    // the issue-14 figures: seed 1 −0.0003, seed 2 −0.0018, bank +0.0006 with SEs 0.0013, 0.0018, 0.0016
    const p = poolDifferences([
      { name: 'shop 1', diff: -0.0003, se: 0.0013 },
      { name: 'shop 2', diff: -0.0018, se: 0.0018 },
      { name: 'bank', diff: 0.0006, se: 0.0016 },
    ]);
    const se = Math.sqrt(0.0013 ** 2 + 0.0018 ** 2 + 0.0016 ** 2) / 3;
    expect(p.sets).toBe(3);
    expect(p.mean).toBeCloseTo(-0.0005, 15);
    expect(p.se).toBeCloseTo(se, 15);
    expect(p.ci95[0]).toBeCloseTo(-0.0005 - Z_975 * se, 15);
    expect(p.ci95[1]).toBeCloseTo(-0.0005 + Z_975 * se, 15);
    expect(p.z).toBeCloseTo(-0.0005 / se, 12);
    expect(p.pValue).toBeCloseTo(twoSidedNormalP(-0.0005 / se), 15);
    expect(p.withinNoise).toBe(true);
  });

  it('one data set is that set: its difference, its SE and the paired test\'s p-value', () => {
    const rng = createRng(3);
    const y: number[] = [], a: number[] = [], b: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const x = rng.next();
      y.push(rng.next() < x ? 1 : 0);
      a.push(x + 0.2 * rng.next());
      b.push(x + 0.6 * rng.next());
    }
    const t = delongPairedTest(y, a, b);
    const p = poolDifferences([{ name: 'only', diff: t.diff, se: t.se }]);
    expect(p.mean).toBe(t.diff);
    expect(p.se).toBe(t.se);
    expect(p.pValue).toBeCloseTo(t.pValue, 12);
    expect(p.withinNoise).toBe(t.pValue >= 0.05);
  });

  it('tells a clear mean from noise: the interval excludes zero only when the data do', () => {
    const clear = poolDifferences([
      { name: 'a', diff: 0.01, se: 0.002 },
      { name: 'b', diff: 0.012, se: 0.002 },
    ]);
    expect(clear.withinNoise).toBe(false);
    expect(clear.ci95[0]).toBeGreaterThan(0);
    expect(clear.pValue).toBeLessThan(0.001);
    const noisy = poolDifferences([
      { name: 'a', diff: 0.003, se: 0.004 },
      { name: 'b', diff: -0.001, se: 0.004 },
    ]);
    expect(noisy.withinNoise).toBe(true);
    // more sets of the same noise shrink the SE by sqrt(n)
    const four = poolDifferences([0, 1, 2, 3].map((i) => ({ name: `s${i}`, diff: 0.001, se: 0.002 })));
    expect(four.se).toBeCloseTo(0.001, 15);
  });

  it('zero SE: identical rankings give p 1 for a zero mean, and an exact sign otherwise', () => {
    expect(poolDifferences([{ name: 'same', diff: 0, se: 0 }])).toMatchObject({ z: 0, pValue: 1, withinNoise: true });
    expect(poolDifferences([{ name: 'exact', diff: 0.002, se: 0 }])).toMatchObject({ z: Infinity, pValue: 0, withinNoise: false });
  });

  it('bad input is a typed error naming the data set', () => {
    expect(errorType(() => poolDifferences([]))).toBe('InvalidData');
    expect(() => poolDifferences([{ name: 'bank', diff: Number.NaN, se: 0.001 }])).toThrow(/"bank" has a non-finite difference/);
    expect(() => poolDifferences([{ name: 'shop 2', diff: 0.001, se: -1 }])).toThrow(/"shop 2" has standard error -1/);
    expect(errorType(() => poolDifferences([{ name: 'x', diff: 0, se: Number.POSITIVE_INFINITY }]))).toBe('InvalidData');
  });
});

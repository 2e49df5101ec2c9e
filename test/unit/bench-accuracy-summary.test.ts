import { describe, expect, it } from 'vitest';
import type { AccuracyResult } from '../../bench/accuracy.js';
import { pooledVerdict, printAccuracySummary, summarizeAccuracy } from '../../bench/accuracy-summary.js';
import { poolDifferences } from '../../ml/pooled.js';

/** The fields of a `bench accuracy` result the summary reads; the rest of a real result is irrelevant to it. */
const result = (
  dataset: AccuracyResult['dataset'],
  ours: number,
  lightgbm: number,
  versus: { diff: number; se?: number; pValue: number },
  oracle?: { diff: number; se?: number; pValue: number },
  gitCommit = 'abc123',
) =>
  ({
    dataset,
    ours: { testAuc: ours },
    lightgbm: { testAuc: lightgbm },
    delong: { lightgbm: versus, keras: { diff: 0, se: 0, pValue: 1 } },
    ...(oracle ? { versusOracle: oracle } : { versusOracle: null }),
    gitCommit,
  }) as unknown as AccuracyResult;

const shop = (seed: number): AccuracyResult['dataset'] => ({ kind: 'synthetic', users: 100_000, days: 60, seed, horizonDays: 14, cutoff: '2026-10-18T00:00:00.000Z' });
const bank: AccuracyResult['dataset'] = { kind: 'table', config: 'bench/configs/bank-marketing.json', query: 'select * from public_data.bank_marketing' };

describe('bench accuracy over several data sets', () => {
  const three = [
    result(shop(1), 0.8359, 0.8362, { diff: -0.0003, se: 0.0013, pValue: 0.82 }, { diff: -0.0039, se: 0.0011, pValue: 0.0004 }),
    result(shop(2), 0.8628, 0.8647, { diff: -0.0018, se: 0.0018, pValue: 0.3 }, { diff: -0.005, se: 0.0012, pValue: 0.00003 }),
    result(bank, 0.7673, 0.7667, { diff: 0.0006, se: 0.0016, pValue: 0.71 }),
  ];

  it('pools ours − LightGBM over the sets, flags none as worse, and gives each shop its oracle gap with its SE', () => {
    const s = summarizeAccuracy(three, new Date('2026-12-01T00:00:00Z'));
    expect(s.sets.map((r) => r.name)).toEqual(['shop seed 1', 'shop seed 2', 'bench/configs/bank-marketing.json']);
    expect(s.versusLightgbm).toEqual(
      poolDifferences([
        { name: 'shop seed 1', diff: -0.0003, se: 0.0013 },
        { name: 'shop seed 2', diff: -0.0018, se: 0.0018 },
        { name: 'bench/configs/bank-marketing.json', diff: 0.0006, se: 0.0016 },
      ]),
    );
    expect(s.versusLightgbm.mean).toBeCloseTo(-0.0005, 12);
    expect(s.versusLightgbm.withinNoise).toBe(true);
    expect(s.sets.map((r) => r.significantlyWorse)).toEqual([false, false, false]);
    expect(s.sets.map((r) => r.oracleGap)).toEqual([{ gap: 0.0039, se: 0.0011 }, { gap: 0.005, se: 0.0012 }, null]);
    expect(s.gitCommits).toEqual(['abc123']);
    expect(s.date).toBe('2026-12-01T00:00:00.000Z');
  });

  it('flags a set where ours is significantly worse, and only a worse one', () => {
    const s = summarizeAccuracy([
      result(shop(1), 0.83, 0.84, { diff: -0.01, se: 0.003, pValue: 0.0009 }),
      result(shop(2), 0.85, 0.84, { diff: 0.01, se: 0.003, pValue: 0.0009 }),
    ]);
    expect(s.sets.map((r) => r.significantlyWorse)).toEqual([true, false]);
  });

  it('prints the table, the verdict in words and the sets that are significantly worse', () => {
    const lines: string[] = [];
    printAccuracySummary(summarizeAccuracy(three), (l) => lines.push(l));
    const text = lines.join('\n');
    expect(text).toMatch(/accuracy over 3 data sets/);
    expect(text).toMatch(/shop seed 2\s+0\.8628\s+0\.8647\s+-0\.0018\s+0\.0018\s+0\.30\s+0\.0050 \(SE 0\.0012\)/);
    expect(text).toMatch(/mean of 3\s+-\s+-\s+-0\.0005/);
    // SE sqrt(0.0013² + 0.0018² + 0.0016²) / 3 = 0.00091; 1.96 × 0.00091 = 0.0018
    expect(text).toMatch(/mean of 3\s+-\s+-\s+-0\.0005\s+0\.0009\s+0\.58/);
    expect(text).toMatch(/level with LightGBM within the noise: mean -0\.0005, 95 % CI -0\.0023 to \+0\.0013, p 0\.58; the data do not tell which is ahead/);
    expect(text).toMatch(/significantly worse \(p < 0\.05\) on: none/);
  });

  it('says ahead or behind only when the interval excludes zero', () => {
    expect(pooledVerdict(poolDifferences([{ name: 'a', diff: 0.01, se: 0.002 }]))).toBe('ours is ahead of LightGBM on average: mean +0.0100, 95 % CI +0.0061 to +0.0139, p < 0.001');
    expect(pooledVerdict(poolDifferences([{ name: 'a', diff: -0.01, se: 0.002 }]))).toMatch(/^ours is behind LightGBM on average/);
    expect(pooledVerdict(poolDifferences([{ name: 'a', diff: 0.001, se: 0.002 }]))).toMatch(/^level with LightGBM within the noise/);
  });

  it('refuses a data set given twice and a result without SEs, naming it', () => {
    expect(() => summarizeAccuracy([three[0], three[0]])).toThrow(/data set "shop seed 1" appears twice/);
    expect(() => summarizeAccuracy([result(shop(3), 0.83, 0.83, { diff: 0, pValue: 1 })])).toThrow(/shop seed 3: the LightGBM comparison has no DeLong SE .* run the data set again/);
    expect(() => summarizeAccuracy([])).toThrow(/no results/);
  });
});

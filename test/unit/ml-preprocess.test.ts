import { describe, expect, it } from 'vitest';
import { MlError } from '../../ml/errors.js';
import { fitPreprocessor, takeRows, transform, type NumericStep, type CategoricalStep } from '../../ml/preprocess.js';
import type { FeatureSpec, Frame } from '../../ml/types.js';

const specs: FeatureSpec[] = [
  { name: 'age', kind: 'numeric' },
  { name: 'spend', kind: 'numeric' },
  { name: 'region', kind: 'categorical' },
];

function frame(age: number[], spend: number[], region: (string | null)[]): Frame {
  return {
    ids: age.map((_, i) => `u${i}`),
    label: Uint8Array.from(age, (_, i) => i % 2),
    numeric: { age: Float64Array.from(age), spend: Float64Array.from(spend) },
    categorical: { region },
  };
}

// 10 train rows: age has one missing value, spend is heavily right-skewed and non-negative
const train = frame(
  [20, 30, NaN, 40, 50, 60, 25, 35, 45, 55],
  [0, 1, 0, 2, 1, 0, 3, 1, 0, 500],
  ['north', 'north', 'north', 'south', 'south', 'south', 'east', null, 'north', 'south'],
);
const pre = fitPreprocessor(train, specs, { minCategoryCount: 2 });
const step = <T>(name: string) => pre.steps.find((s) => s.name === name) as T;
const col = (m: { x: Float32Array; cols: number; featureNames: string[] }, name: string, row: number) =>
  m.x[row * m.cols + m.featureNames.indexOf(name)];

describe('fitPreprocessor', () => {
  it('fits median imputation, a missing indicator only where train had gaps, and caps', () => {
    const age = step<NumericStep>('age');
    expect(age.median).toBe(40); // median of the 9 observed values
    expect(age.missingIndicator).toBe(true);
    expect(age.clipLo).toBeCloseTo(20 + 0.04 * 5, 10); // p0.5 with linear interpolation (numpy default)
    expect(age.log1p).toBe(false);
    expect(step<NumericStep>('spend').missingIndicator).toBe(false);
    expect(pre.featureNames).toEqual([
      'age', 'age__missing', 'spend', 'region=north', 'region=south', 'region=__other__', 'region=__missing__',
    ]);
  });

  it('log1p-transforms a heavy right-skewed non-negative column and records why', () => {
    const spend = step<NumericStep>('spend');
    expect(spend.log1p).toBe(true);
    expect(spend.skew).toBeGreaterThan(2);
    expect(spend.clipHi).toBeLessThan(500); // p99.5 cap below the outlier
  });

  it('standardizes train columns to mean 0, std 1', () => {
    const m = transform(pre, train);
    for (const name of ['age', 'spend']) {
      const v = Array.from({ length: m.rows }, (_, r) => col(m, name, r));
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
      expect(mean).toBeCloseTo(0, 5);
      expect(std).toBeCloseTo(1, 5);
    }
  });

  it('uses train statistics only: val extremes are capped at the train caps and val never changes the fit', () => {
    const before = JSON.stringify(pre);
    const val = frame([1000, 61], [1e9, 0], ['west', null]);
    const m = transform(pre, val);
    const atCaps = transform(pre, frame([step<NumericStep>('age').clipHi], [step<NumericStep>('spend').clipHi], ['north']));
    expect(col(m, 'age', 0)).toBe(col(atCaps, 'age', 0));
    expect(col(m, 'spend', 0)).toBe(col(atCaps, 'spend', 0));
    expect(col(m, 'region=__other__', 0)).toBe(1);
    expect(JSON.stringify(pre)).toBe(before);
  });

  it('maps a missing numeric to the train median and flags it', () => {
    const m = transform(pre, frame([NaN, 40], [0, 0], ['north', 'north']));
    expect(col(m, 'age', 0)).toBe(col(m, 'age', 1));
    expect(col(m, 'age__missing', 0)).toBe(1);
    expect(col(m, 'age__missing', 1)).toBe(0);
  });

  it('one-hots known categories; unseen and rare ones go to __other__, null to __missing__', () => {
    expect(step<CategoricalStep>('region').vocabulary).toEqual(['north', 'south']); // 'east' seen once < minCategoryCount
    const m = transform(pre, frame([1, 1, 1, 1], [0, 0, 0, 0], ['south', 'west', 'east', null]));
    const oneHot = (r: number) => ['north', 'south', '__other__', '__missing__'].map((v) => col(m, `region=${v}`, r));
    expect([0, 1, 2, 3].map(oneHot)).toEqual([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]]);
  });

  it('caps the vocabulary at maxCategories, most frequent first', () => {
    const p = fitPreprocessor(train, specs, { minCategoryCount: 1, maxCategories: 2 });
    expect((p.steps[2] as CategoricalStep).vocabulary).toEqual(['north', 'south']);
  });

  it('survives a JSON round trip with an identical transform', () => {
    const other = frame([18, NaN, 70], [0, 9, 1e6], ['east', 'south', null]);
    const again = JSON.parse(JSON.stringify(pre));
    expect(transform(again, other).x).toEqual(transform(pre, other).x);
    expect(transform(again, train).x).toEqual(transform(pre, train).x);
  });

  it('reports missing columns, empty train, and ragged frames', () => {
    const typeOf = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return `${(e as MlError).type}: ${(e as Error).message}`;
      }
    };
    expect(typeOf(() => fitPreprocessor(train, [...specs, { name: 'tenure', kind: 'numeric' }]))).toMatch(/^InvalidData: .*'tenure' is missing/);
    expect(typeOf(() => fitPreprocessor(takeRows(train, []), specs))).toMatch(/^EmptyDataset/);
    expect(typeOf(() => transform(pre, { ...train, label: new Uint8Array(3) }))).toMatch(/^InvalidData: .*label has 3 rows/);
  });
});

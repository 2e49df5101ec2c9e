import { describe, expect, it } from 'vitest';
import { FeatureStats, LABEL_MISSING, qualityProblems, quarantineReason } from '../../ml/clean.js';
import type { Frame } from '../../ml/types.js';

const frame = (ids: (string | null)[], labels: number[], x: number[], c: (string | null)[]): Frame => ({
  ids: ids as string[],
  label: Uint8Array.from(labels),
  numeric: { x: Float64Array.from(x) },
  categorical: { c },
});

describe('cleaning rules', () => {
  it('quarantines a missing key, a repeated key (across shards), a missing and an invalid label; keeps the first row of a key', () => {
    const seen = new Set<string>();
    const a = frame(['u1', '', 'u2', 'u1', 'u3', 'u4'], [1, 0, LABEL_MISSING, 0, 7, 0], [1, 2, 3, 4, 5, 6], ['a', 'b', 'a', null, 'b', 'a']);
    expect(a.ids.map((_, i) => quarantineReason(a, i, seen))).toEqual([null, 'null_entity_key', 'missing_label', 'duplicate_entity_key', 'invalid_label', null]);
    const b = frame(['u4', 'u5'], [1, 1], [0, 0], ['a', 'a']);
    expect(b.ids.map((_, i) => quarantineReason(b, i, seen))).toEqual(['duplicate_entity_key', null]);
  });

  it('repairs infinities to missing, counts them, and keeps exact per-feature statistics', () => {
    const stats = new FeatureStats();
    const f = frame(['a', 'b', 'c', 'd'], [0, 1, 0, 1], [1, Infinity, NaN, 5], ['x', null, 'y', 'x']);
    stats.add(f);
    expect(Number.isNaN(f.numeric.x[1])).toBe(true);
    expect(stats.repaired).toEqual({ 'non_finite:x': 1 });
    const out = stats.finish({ x: 0.01 }, { x: 'p' }) as Record<string, Record<string, unknown>>;
    expect(out.x).toEqual({ kind: 'numeric', missingRate: 0.5, min: 1, max: 5, mean: 3, psi: 0.01, profile: 'p' });
    expect(out.c).toEqual({ kind: 'categorical', missingRate: 0.25, distinct: 2, psi: null, profile: undefined });
  });

  it('names every breached limit, and none when the data meets them', () => {
    const limits = { maxQuarantineRate: 0.05, maxPsi: 0.25 };
    expect(qualityProblems({ rowsIn: 100, rowsOut: 99, quarantined: { null_entity_key: 1 }, psi: { x: 0.1 }, baselineRunId: 'r0', limits })).toEqual([]);
    const problems = qualityProblems({ rowsIn: 100, rowsOut: 90, quarantined: { missing_label: 10 }, eventQuarantineRate: 0.2, psi: { x: 0.5, y: 0.1 }, baselineRunId: 'r0', limits });
    expect(problems).toEqual([
      '10.00 % of entity rows were quarantined ({"missing_label":10}), above quality.maxQuarantineRate 0.05',
      '20.00 % of source events were invalid, above quality.maxQuarantineRate 0.05',
      'feature drift against run r0: x PSI 0.500 above quality.maxPsi 0.25',
    ]);
  });
});

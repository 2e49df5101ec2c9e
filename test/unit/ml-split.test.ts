import { describe, expect, it } from 'vitest';
import { MlError } from '../../ml/errors.js';
import { createRng, hashToUnit, shuffleInPlace } from '../../ml/random.js';
import { assignSplit } from '../../ml/split.js';

const keys = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);

describe('random', () => {
  it('the PRNG is reproducible from its seed and differs across seeds', () => {
    const a = createRng(42);
    const b = createRng(42);
    const seqA = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(seqA);
    expect(Array.from({ length: 5 }, () => createRng(43).next())).not.toEqual(seqA);
    expect(seqA.every((u) => u >= 0 && u < 1)).toBe(true);
  });

  it('hashToUnit is in [0,1), deterministic, seed-dependent and roughly uniform', () => {
    const us = keys.map((k) => hashToUnit(k, 7));
    expect(us.every((u) => u >= 0 && u < 1)).toBe(true);
    expect(hashToUnit('user-1', 7)).toBe(us[1]);
    expect(hashToUnit('user-1', 8)).not.toBe(us[1]);
    const deciles = new Array(10).fill(0);
    for (const u of us) deciles[Math.floor(u * 10)]++;
    for (const d of deciles) expect(Math.abs(d / us.length - 0.1)).toBeLessThan(0.01);
  });

  it('shuffle is a seeded permutation', () => {
    const s = shuffleInPlace(Int32Array.from({ length: 100 }, (_, i) => i), createRng(1));
    expect([...s].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect([...shuffleInPlace(Int32Array.from({ length: 100 }, (_, i) => i), createRng(1))]).toEqual([...s]);
  });
});

describe('assignSplit', () => {
  it('hits the 80/10/10 ratios within 1.5 points on 20k keys', () => {
    const counts = { train: 0, val: 0, test: 0 };
    for (const k of keys) counts[assignSplit(k, 2024)]++;
    expect(Math.abs(counts.train / keys.length - 0.8)).toBeLessThan(0.015);
    expect(Math.abs(counts.val / keys.length - 0.1)).toBeLessThan(0.015);
    expect(Math.abs(counts.test / keys.length - 0.1)).toBeLessThan(0.015);
  });

  it('is stable for a seed and changes with the seed', () => {
    const first = keys.map((k) => assignSplit(k, 1));
    expect(keys.map((k) => assignSplit(k, 1))).toEqual(first);
    const moved = keys.filter((k, i) => assignSplit(k, 2) !== first[i]).length;
    // two independent 80/10/10 draws disagree for 1 - (.64 + .01 + .01) = 34 % of keys
    expect(moved / keys.length).toBeGreaterThan(0.3);
  });

  it('honours custom ratios and rejects invalid ones', () => {
    const counts = { train: 0, val: 0, test: 0 };
    for (const k of keys) counts[assignSplit(k, 3, { train: 0.5, val: 0.5, test: 0 })]++;
    expect(counts.test).toBe(0);
    expect(Math.abs(counts.train / keys.length - 0.5)).toBeLessThan(0.015);
    expect(() => assignSplit('u', 1, { train: 0.8, val: 0.1, test: 0.2 })).toThrow(/sum to 1/);
    expect(() => assignSplit('u', 1, { train: 1.1, val: -0.1, test: 0 })).toThrow(MlError);
  });
});

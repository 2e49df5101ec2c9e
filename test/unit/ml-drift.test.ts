import { describe, expect, it } from 'vitest';
import { DriftProfiler, psi } from '../../ml/drift.js';
import { createRng } from '../../ml/random.js';
import type { Frame } from '../../ml/types.js';

const frame = (xs: number[], cats: (string | null)[]): Frame => ({
  ids: xs.map((_, i) => String(i)),
  label: new Uint8Array(xs.length),
  numeric: { x: Float64Array.from(xs) },
  categorical: { c: cats },
});

function sample(n: number, seed: number, shift = 0, pB = 0.3) {
  const rng = createRng(seed);
  const xs: number[] = [];
  const cats: (string | null)[] = [];
  for (let i = 0; i < n; i++) {
    xs.push(rng.next() < 0.05 ? NaN : shift + -Math.log(1 - rng.next()));
    const u = rng.next();
    cats.push(u < 0.02 ? null : u < 0.02 + pB ? 'b' : 'a');
  }
  return frame(xs, cats);
}

describe('population stability index', () => {
  it('matches a hand computation', () => {
    // bins 0.5/0.5 vs 0.6/0.4: (0.6-0.5)·ln(0.6/0.5) + (0.4-0.5)·ln(0.4/0.5) = 0.1·0.18232 + 0.1·0.22314 = 0.040546
    expect(psi([0.5, 0.5], [0.6, 0.4])).toBeCloseTo(0.0405465, 6);
    expect(psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5])).toBe(0);
  });

  it('is about zero for a second sample of the same population and large for a shifted one', () => {
    const base = new DriftProfiler();
    base.add(sample(20_000, 1));
    const { profiles } = base.finish();
    expect(profiles.x.kind).toBe('numeric');
    expect(profiles.x.missing).toBeCloseTo(0.05, 2);

    const same = new DriftProfiler(profiles);
    same.add(sample(10_000, 2));
    same.add(sample(10_000, 3)); // streamed in two shards
    const stable = same.finish().psi;
    expect(stable.x).toBeLessThan(0.01);
    expect(stable.c).toBeLessThan(0.01);

    const shifted = new DriftProfiler(profiles);
    shifted.add(sample(20_000, 4, 1.0, 0.6));
    const drift = shifted.finish().psi;
    expect(drift.x).toBeGreaterThan(0.25);
    expect(drift.c).toBeGreaterThan(0.25);
  });
});

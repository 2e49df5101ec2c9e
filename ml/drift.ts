import { lowerBound } from './sorted.js';
import { createRng } from './random.js';
import type { Frame } from './types.js';

/** How one feature was distributed in a run: enough to measure drift against the next run. */
export type FeatureProfile =
  | { kind: 'numeric'; edges: number[]; props: number[]; missing: number }
  | { kind: 'categorical'; props: Record<string, number>; other: number; missing: number };

const RESERVOIR = 5000;
const MAX_CATEGORIES = 50;
const FLOOR = 1e-4; // PSI is undefined for empty bins; this floor is the usual convention

/** Population stability index: Σ (actual − expected) · ln(actual / expected) over matching bins. */
export function psi(expected: number[], actual: number[]): number {
  let sum = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.max(expected[i], FLOOR);
    const a = Math.max(actual[i], FLOOR);
    sum += (a - e) * Math.log(a / e);
  }
  return sum;
}

/** Index of the bin (-inf, e0], (e0, e1], …, (e_last, inf) that holds v. */
const bin = (edges: number[], v: number): number => lowerBound(edges, v);

interface NumericAcc {
  kind: 'numeric';
  n: number;
  missing: number;
  seen: number;
  sample: number[];
  prevCounts?: number[];
}
interface CategoricalAcc {
  kind: 'categorical';
  n: number;
  missing: number;
  counts: Map<string, number>;
}

/**
 * Streams a data set shard by shard and returns each feature's profile and, where the previous run profiled the
 * same feature, its PSI against that run. Numeric bins are the previous run's deciles (from a seeded reservoir
 * sample, so memory is bounded); a missing value is a bin of its own.
 */
export class DriftProfiler {
  private acc = new Map<string, NumericAcc | CategoricalAcc>();
  private rng = createRng(0x5eed);

  constructor(private readonly previous: Record<string, FeatureProfile> = {}) {}

  add(frame: Frame): void {
    for (const [name, col] of Object.entries(frame.numeric)) {
      let a = this.acc.get(name) as NumericAcc | undefined;
      if (!a) {
        const prev = this.previous[name];
        a = { kind: 'numeric', n: 0, missing: 0, seen: 0, sample: [] };
        if (prev?.kind === 'numeric') a.prevCounts = new Array(prev.edges.length + 1).fill(0);
        this.acc.set(name, a);
      }
      const prev = this.previous[name];
      for (let i = 0; i < col.length; i++) {
        const v = col[i];
        a.n++;
        if (!Number.isFinite(v)) {
          a.missing++;
          continue;
        }
        if (a.prevCounts && prev?.kind === 'numeric') a.prevCounts[bin(prev.edges, v)]++;
        a.seen++;
        if (a.sample.length < RESERVOIR) a.sample.push(v);
        else {
          const j = Math.floor(this.rng.next() * a.seen);
          if (j < RESERVOIR) a.sample[j] = v;
        }
      }
    }
    for (const [name, col] of Object.entries(frame.categorical)) {
      let a = this.acc.get(name) as CategoricalAcc | undefined;
      if (!a) this.acc.set(name, (a = { kind: 'categorical', n: 0, missing: 0, counts: new Map() }));
      for (const v of col) {
        a.n++;
        if (v === null) a.missing++;
        else a.counts.set(v, (a.counts.get(v) ?? 0) + 1);
      }
    }
  }

  finish(): { profiles: Record<string, FeatureProfile>; psi: Record<string, number> } {
    const profiles: Record<string, FeatureProfile> = {};
    const drift: Record<string, number> = {};
    for (const [name, a] of this.acc) {
      const prev = this.previous[name];
      if (a.kind === 'numeric') {
        const sorted = Float64Array.from(a.sample).sort();
        const edges = [...new Set([1, 2, 3, 4, 5, 6, 7, 8, 9].map((d) => sorted[Math.floor((d / 10) * (sorted.length - 1))]))].filter(
          (e) => e !== undefined,
        );
        const props = new Array(edges.length + 1).fill(0);
        for (const v of sorted) props[bin(edges, v)]++;
        const present = a.n ? (a.n - a.missing) / a.n : 0;
        profiles[name] = {
          kind: 'numeric',
          edges,
          props: props.map((c) => (sorted.length ? (c / sorted.length) * present : 0)),
          missing: a.n ? a.missing / a.n : 0,
        };
        if (prev?.kind === 'numeric' && a.prevCounts && a.n) {
          drift[name] = psi([...prev.props, prev.missing], [...a.prevCounts.map((c) => c / a.n), a.missing / a.n]);
        }
      } else {
        const top = [...a.counts.entries()].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1)).slice(0, MAX_CATEGORIES);
        const props = Object.fromEntries(top.map(([k, c]) => [k, a.n ? c / a.n : 0]));
        const other = a.n ? 1 - a.missing / a.n - Object.values(props).reduce((s, p) => s + p, 0) : 0;
        profiles[name] = { kind: 'categorical', props, other: Math.max(0, other), missing: a.n ? a.missing / a.n : 0 };
        if (prev?.kind === 'categorical' && a.n) {
          const keys = Object.keys(prev.props);
          const actual = keys.map((k) => (a.counts.get(k) ?? 0) / a.n);
          const actualOther = 1 - a.missing / a.n - actual.reduce((s, p) => s + p, 0);
          drift[name] = psi([...keys.map((k) => prev.props[k]), prev.other, prev.missing], [...actual, Math.max(0, actualOther), a.missing / a.n]);
        }
      }
    }
    return { profiles, psi: drift };
  }
}

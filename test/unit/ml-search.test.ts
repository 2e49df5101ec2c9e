import { describe, expect, it } from 'vitest';
import { MlError } from '../../ml/errors.js';
import { baselineParams, expectedSeconds, longestFirst, sampleTrials, validateMlpParams, validateSearchSpace, type TrialTiming } from '../../ml/search.js';
import { DEFAULT_SEARCH_SPACE, type SearchSpace } from '../../ml/types.js';

const space = (over: Partial<SearchSpace>): SearchSpace => ({ ...structuredClone(DEFAULT_SEARCH_SPACE), ...over });

describe('sampleTrials', () => {
  it('is deterministic in the seed and stays inside the space', () => {
    const a = sampleTrials(DEFAULT_SEARCH_SPACE, 16, 99);
    expect(sampleTrials(DEFAULT_SEARCH_SPACE, 16, 99)).toEqual(a);
    expect(sampleTrials(DEFAULT_SEARCH_SPACE, 16, 100)).not.toEqual(a);
    expect(a).toHaveLength(16);
    for (const t of a) {
      expect(validateMlpParams(t)).toEqual([]);
      expect(t.hiddenUnits.length).toBeGreaterThanOrEqual(1);
      expect(t.hiddenUnits.length).toBeLessThanOrEqual(3);
      expect(t.hiddenUnits).toEqual([...t.hiddenUnits].sort((x, y) => y - x));
      expect(t.hiddenUnits.every((u) => DEFAULT_SEARCH_SPACE.units.includes(u))).toBe(true);
      expect(t.learningRate).toBeGreaterThanOrEqual(3e-4 * 0.999);
      expect(t.learningRate).toBeLessThanOrEqual(1e-2 * 1.001);
      expect(t.l2).toBeGreaterThanOrEqual(1e-6 * 0.999);
      expect(t.l2).toBeLessThanOrEqual(1e-3 * 1.001);
      expect(t.dropout).toBeGreaterThanOrEqual(0);
      expect(t.dropout).toBeLessThanOrEqual(0.3);
    }
  });

  it('covers each continuous range: one trial per stratum (Latin hypercube)', () => {
    const trials = sampleTrials(DEFAULT_SEARCH_SPACE, 8, 5);
    const [lo, hi] = DEFAULT_SEARCH_SPACE.learningRate;
    const strata = trials.map((t) => Math.floor(((Math.log(t.learningRate) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) * 8));
    expect(new Set(strata.map((s) => Math.min(s, 7))).size).toBe(8);
  });

  it('the code is free of Math.random, Date and imports beyond ml/ (workflow sandbox)', async () => {
    const { readFile } = await import('node:fs/promises');
    for (const f of ['search.ts', 'random.ts', 'errors.ts', 'types.ts']) {
      const src = await readFile(new URL(`../../ml/${f}`, import.meta.url), 'utf8');
      expect(src).not.toMatch(/Math\.random\(|new Date|Date\.now|from '(?!\.\/)|import\(/);
    }
  });

  it('throws InvalidConfig on an invalid space', () => {
    expect(() => sampleTrials(space({ learningRate: [0.01, 0.001] }), 4, 1)).toThrow(MlError);
  });

  it('gives a logistic baseline', () => {
    const b = baselineParams(DEFAULT_SEARCH_SPACE);
    expect(b.hiddenUnits).toEqual([]);
    expect(validateMlpParams(b)).toEqual([]);
  });
});

describe('validateSearchSpace', () => {
  it('accepts the default space', () => {
    expect(validateSearchSpace(DEFAULT_SEARCH_SPACE)).toEqual([]);
  });

  it('names each offending key', () => {
    const problems = validateSearchSpace(
      space({
        hiddenLayers: [3, 1],
        dropout: [0.2, 1],
        l2: [0, 1e-3],
        learningRate: [-1e-3, 1e-2],
        batchSize: [],
        classWeight: ['weighted' as 'none'],
        epochs: 0,
        patience: -1,
        units: [32, 0],
      }),
    );
    const keys = problems.map((p) => p.split(':')[0]);
    expect(keys).toEqual(['hiddenLayers', 'units', 'dropout', 'l2', 'learningRate', 'batchSize', 'classWeight', 'epochs', 'patience']);
    expect(problems[4]).toContain('-0.001');
  });

  it('flags unknown keys (typos in config)', () => {
    expect(validateSearchSpace({ ...DEFAULT_SEARCH_SPACE, learningrate: [1, 2] } as SearchSpace)).toEqual([
      expect.stringMatching(/^learningrate: unknown key/),
    ]);
  });
});

describe('the order of a promoted rung', () => {
  const done = (epochs: number, seconds: number, extra: Partial<TrialTiming> = {}): TrialTiming => ({
    status: 'completed', epochs, resumedFromEpoch: 0, seconds, stopReason: 'maxEpochs', ...extra,
  });

  it('expects the epochs left at the seconds per epoch of the last activity', () => {
    expect(expectedSeconds(done(5, 100), 15)).toBe(200);
    // resumed at epoch 5 and trained to 15 in 50 s: 5 s per epoch, 15 epochs left to 30
    expect(expectedSeconds(done(15, 50, { resumedFromEpoch: 5 }), 30)).toBe(75);
  });

  it('expects nothing of a trial that stopped early, failed, or already has the budget', () => {
    expect(expectedSeconds(done(3, 60, { stopReason: 'earlyStopping' }), 15)).toBe(0);
    expect(expectedSeconds(done(0, 2, { status: 'failed' }), 15)).toBe(0);
    expect(expectedSeconds(done(15, 90), 15)).toBe(0);
  });

  it('puts the longest first, ties in the given order', () => {
    expect(longestFirst(['a', 'b', 'c', 'd'], (x) => ({ a: 1, b: 3, c: 1, d: 2 })[x]!)).toEqual(['b', 'd', 'a', 'c']);
  });

  // The e2e bench's second rung (6 trials promoted from 5 to 15 epochs, two lanes), as it ran on 2026-11-30: the first rung's
  // seconds and the seconds each then took (t010 stopped early after 2 more epochs).
  const rung = [
    { id: 't013', before: 105.9, took: 136.6 },
    { id: 't010', before: 68.4, took: 25.5 },
    { id: 't008', before: 63.8, took: 53.3 },
    { id: 't011', before: 58.5, took: 112.9 },
    { id: 't001', before: 58.9, took: 110.2 },
    { id: 't003', before: 184.0, took: 208.4 },
  ];
  /** When the last of a sliding window of `lanes` ends, each lane taking the next trial as it frees. */
  const makespan = (order: typeof rung, lanes: number) => {
    const free = Array<number>(lanes).fill(0);
    for (const t of order) {
      const lane = free.indexOf(Math.min(...free));
      free[lane] += t.took;
    }
    return Math.max(...free);
  };

  it('shortens the e2e rung that the rank order left to its slowest trial: 400 s to 328 s on two lanes', () => {
    const order = longestFirst(rung, (t) => expectedSeconds(done(5, t.before), 15));
    expect(order.map((t) => t.id)).toEqual(['t003', 't013', 't010', 't008', 't001', 't011']);
    expect(makespan(rung, 2)).toBeCloseTo(400.1, 1);
    expect(makespan(order, 2)).toBeCloseTo(328.3, 1);
  });
});

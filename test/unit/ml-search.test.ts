import { describe, expect, it } from 'vitest';
import { MlError } from '../../ml/errors.js';
import { baselineParams, sampleTrials, validateMlpParams, validateSearchSpace } from '../../ml/search.js';
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

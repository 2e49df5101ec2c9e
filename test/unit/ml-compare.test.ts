import { describe, expect, it } from 'vitest';
import { compareWithBaseline, compareWithChampion, unseenByChampion, type ChampionSplit } from '../../ml/compare.js';
import { createRng } from '../../ml/random.js';
import { assignSplit } from '../../ml/split.js';

/** n rows whose label follows a logistic in a latent x; each model scores x plus its own noise. */
function synthetic(n: number, seed: number, noiseA: number, noiseB: number) {
  const rng = createRng(seed).next;
  const gauss = () => Math.sqrt(-2 * Math.log(rng() + 1e-12)) * Math.cos(2 * Math.PI * rng());
  const labels = new Uint8Array(n);
  const a = new Float64Array(n);
  const b = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const x = gauss();
    labels[i] = rng() < 1 / (1 + Math.exp(-(2 * x - 2))) ? 1 : 0;
    a[i] = x + noiseA * gauss();
    b[i] = x + noiseB * gauss();
  }
  return { labels, a, b };
}

const rule = { alpha: 0.05, margin: 0, requireHigherAuc: false };

describe('compareWithBaseline (non-inferiority by default)', () => {
  it('passes two models within noise of each other, even when the model is a hair lower', () => {
    const { labels, a, b } = synthetic(2000, 1, 0.3, 0.3);
    const c = compareWithBaseline(labels, a, b, rule);
    expect(Math.abs(c.diff)).toBeLessThan(0.02);
    expect(c.passed).toBe(true);
    expect(c.detail).toMatch(/non-inferiority: must not be significantly worse than baseline at alpha 0\.05/);
  });

  it('fails a model that is significantly worse', () => {
    const { labels, a, b } = synthetic(4000, 2, 2.0, 0.2);
    const c = compareWithBaseline(labels, a, b, rule);
    expect(c.diff).toBeLessThan(-0.05);
    expect(c.pValue!).toBeLessThan(0.05);
    expect(c.passed).toBe(false);
    expect(c.status).toBe('failed');
  });

  it('a margin forgives a small significant loss; the strict rule still demands a higher AUC', () => {
    const { labels, a, b } = synthetic(20000, 3, 0.45, 0.3);
    const strictNoMargin = compareWithBaseline(labels, a, b, rule);
    expect(strictNoMargin.diff).toBeLessThan(0);
    expect(strictNoMargin.passed).toBe(false);
    expect(compareWithBaseline(labels, a, b, { ...rule, margin: 0.05 }).passed).toBe(true);
    expect(compareWithBaseline(labels, b, a, { ...rule, requireHigherAuc: true }).passed).toBe(true);
    expect(compareWithBaseline(labels, a, b, { ...rule, margin: 0.05, requireHigherAuc: true }).passed).toBe(false);
  });
});

describe('the champion comparison on unseen rows', () => {
  const ids = Array.from({ length: 30000 }, (_, i) => `user-${i}`);
  const champion: ChampionSplit = { seed: 42, ratios: { train: 0.8, val: 0.1, test: 0.1 }, source: 'lineage' };

  it('keeps exactly the rows the champion held out as test (recomputed from its own seed)', () => {
    const ourTest = ids.filter((id) => assignSplit(id, 7) === 'test');
    const unseen = unseenByChampion(ourTest, champion);
    expect(unseen.length / ourTest.length).toBeGreaterThan(0.08);
    expect(unseen.length / ourTest.length).toBeLessThan(0.12);
    for (const i of unseen) expect(assignSplit(ourTest[i], 42)).toBe('test');
    // with the champion's own seed, its test rows are all unseen
    const sameSeed = ids.filter((id) => assignSplit(id, 42) === 'test');
    expect(unseenByChampion(sameSeed, champion)).toHaveLength(sameSeed.length);
  });

  it('decides on the unseen rows and reports how many were compared and excluded', () => {
    const { labels, a, b } = synthetic(3000, 4, 0.3, 0.3);
    const unseen = Array.from({ length: 3000 }, (_, i) => i).filter((i) => i % 3 === 0);
    const c = compareWithChampion(labels, a, b, unseen, 'champion v1', champion, { alpha: 0.05, minRows: 200, minPositives: 20 });
    expect(c.rows).toBe(1000);
    expect(c.excluded).toBe(2000);
    expect(c.status).toBe('passed');
    expect(c.detail).toMatch(/on 1000 unseen test rows \(2000 excluded: in the champion v1's train or validation split, split seed 42\)/);
  });

  it('skips, never rejects, when too few unseen rows or positives remain', () => {
    const { labels, a, b } = synthetic(3000, 5, 3.0, 0.1); // the challenger is far worse
    const few = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    const c = compareWithChampion(labels, a, b, few, 'champion v3', { ...champion, source: 'assumed' }, { alpha: 0.05, minRows: 200, minPositives: 20 });
    expect(c.status).toBe('skipped');
    expect(c.passed).toBe(true);
    expect(c.skipped).toMatch(/too few unseen rows for a meaningful test: 10 rows/);
    expect(c.detail).toMatch(/assumed from this config/);
    // the same far-worse challenger on enough rows is rejected
    const all = Array.from({ length: 3000 }, (_, i) => i);
    expect(compareWithChampion(labels, a, b, all, 'champion v3', champion, { alpha: 0.05, minRows: 200, minPositives: 20 }).status).toBe('failed');
  });
});

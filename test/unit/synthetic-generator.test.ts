import { describe, expect, it } from 'vitest';
import { createShop, DAY, DIRTY_KINDS, type GeneratedUser, type ShopOptions } from '../../db/synthetic/generator.js';
import { mulberry32 } from '../../db/synthetic/random.js';

const END = new Date('2026-06-01T00:00:00Z');
const NOW = new Date('2026-06-02T12:00:00Z');
const generate = (o: Partial<ShopOptions> = {}): GeneratedUser[] =>
  [...createShop({ users: 300, days: 40, seed: 11, end: END, now: NOW, ...o }).users()];

function auc(scores: number[], labels: boolean[]): number {
  const idx = scores.map((_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let rankSum = 0;
  let pos = 0;
  idx.forEach((i, rank) => { if (labels[i]) { rankSum += rank + 1; pos++; } });
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * (labels.length - pos));
}

describe('synthetic shop generator', () => {
  it('is deterministic: the same seed gives identical rows, another seed different ones', () => {
    const a = generate();
    expect(JSON.stringify(generate())).toBe(JSON.stringify(a));
    expect(JSON.stringify(generate({ seed: 12 }))).not.toBe(JSON.stringify(a));
    expect(createShop({ users: 300, days: 40, seed: 11, end: END }).products)
      .toEqual(createShop({ users: 300, days: 40, seed: 11, end: END }).products);
  });

  it('mulberry32 is a reproducible uniform stream', () => {
    const r = mulberry32(1);
    const xs = Array.from({ length: 10_000 }, r);
    expect(xs.slice(0, 3)).toEqual(Array.from({ length: 3 }, mulberry32(1)));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(xs.reduce((s, x) => s + x, 0) / xs.length).toBeCloseTo(0.5, 1);
  });

  it('draws labels at a realistic positive rate with a strong but imperfect oracle', () => {
    const users = generate({ users: 4000, days: 60 });
    const truths = users.flatMap((u) => (u.truth ? [u.truth] : []));
    const rate = truths.filter((t) => t.label).length / truths.length;
    expect(rate).toBeGreaterThan(0.03);
    expect(rate).toBeLessThan(0.1);
    const oracle = auc(truths.map((t) => t.probability), truths.map((t) => t.label));
    expect(oracle).toBeGreaterThan(0.75);
    expect(oracle).toBeLessThan(0.95);
    const bots = truths.filter((t) => t.isBot);
    expect(bots.length).toBeGreaterThan(5);
    expect(Math.max(...bots.map((t) => t.probability))).toBeLessThan(0.01);
  });

  it('makes the label window agree with the drawn label, and keeps every clean event inside [start, end)', () => {
    const shop = createShop({ users: 1500, days: 30, seed: 3, end: END, now: NOW });
    const cutoff = shop.timeline.cutoff.getTime();
    for (const u of shop.users()) {
      const clean = u.events.slice(0).filter((e) => e.userId !== null && e.at < END.getTime());
      expect(clean.every((e) => e.at >= shop.timeline.start.getTime() && e.at >= u.user.signupAt)).toBe(true);
      if (!u.truth) continue;
      const bought = clean.some((e) => e.eventType === 'purchase' && (e.priceCents ?? 0) >= 0 && e.at >= cutoff);
      expect(bought).toBe(u.truth.label);
    }
  });

  it('adds dirty rows of every kind at about the configured rate', () => {
    const users = generate({ users: 2000, days: 30, dirtyRate: 0.02 });
    const clean = users.reduce((s, u) => s + u.clean, 0);
    const perKind = DIRTY_KINDS.map((k) => users.reduce((s, u) => s + u.dirty[k], 0));
    const dirty = perKind.reduce((s, n) => s + n, 0);
    expect(dirty / clean).toBeGreaterThan(0.016);
    expect(dirty / clean).toBeLessThan(0.024);
    for (const n of perKind) expect(n).toBeGreaterThan(dirty / 12);
    expect(users.reduce((s, u) => s + u.events.length, 0)).toBe(clean + dirty);
    const future = users.flatMap((u) => u.events).filter((e) => e.at > NOW.getTime());
    expect(future.length).toBe(perKind[DIRTY_KINDS.indexOf('future')]);
    expect(Math.min(...future.map((e) => e.at))).toBeGreaterThan(NOW.getTime() + DAY / 2);
    expect(generate({ dirtyRate: 0 }).every((u) => u.events.length === u.clean)).toBe(true);
  });
});

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createShop, DAY, SHOP_ANCHOR } from '../../db/synthetic/generator.js';

// The demo's shop ends on SHOP_ANCHOR and the demo runs as of that day, so what it reads must not depend on the
// clock of the day it runs: two clocks a year apart must give the same rows before the end (only the "future" dirty
// rows, placed after the wall clock so that they stay in the future, may move, and the run never reads them).
const digest = (now: Date, end: Date, seed = 1) => {
  const shop = createShop({ users: 400, days: 30, seed, horizonDays: 14, end, now });
  const h = createHash('sha256');
  let rows = 0;
  let future = 0;
  for (const u of shop.users()) {
    h.update(JSON.stringify([u.user, u.truth, u.features]));
    for (const e of u.events) {
      if (e.at >= end.getTime()) {
        future++;
        continue;
      }
      h.update(JSON.stringify(e));
      rows++;
    }
  }
  return { sha: h.digest('hex'), rows, future, timeline: shop.timeline };
};

describe('the anchored synthetic shop', () => {
  const end = new Date(`${SHOP_ANCHOR}T00:00:00Z`);

  it('gives the same rows before its end on two days a year apart', () => {
    const a = digest(new Date(end.getTime() + 28 * DAY), end);
    const b = digest(new Date(end.getTime() + 393 * DAY), end);
    expect(a.rows).toBeGreaterThan(1000);
    expect(a.future).toBeGreaterThan(0);
    expect(b).toEqual({ ...a, future: b.future });
    expect(a.timeline.end.toISOString().slice(0, 10)).toBe(SHOP_ANCHOR);
    expect(a.timeline.cutoff.getTime()).toBe(end.getTime() - 14 * DAY);
  });

  it('differs with another seed (the digest sees the data)', () => {
    const now = new Date(end.getTime() + DAY);
    expect(digest(now, end, 2).sha).not.toBe(digest(now, end, 1).sha);
  });

  it('is in the past, so its label window has ended on any day from now on', () => {
    expect(end.getTime()).toBeLessThanOrEqual(Date.now());
  });
});

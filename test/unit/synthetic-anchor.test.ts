import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { anchorWeekday, createShop, DAY, SHOP_ANCHOR } from '../../db/synthetic/generator.js';

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

// The tests' shops end on anchorWeekday(): the anchor's rows shifted by whole weeks, so the same models on any day.
// Timestamps are hashed relative to the shop's end; session ids (which spell their start time) are left out.
const shifted = (end: Date, days = 40) => {
  const shop = createShop({ users: 400, days, seed: 1, horizonDays: 14, end, now: end });
  const h = createHash('sha256');
  for (const u of shop.users()) {
    h.update(JSON.stringify([u.user.userId, u.user.signupAt - end.getTime(), u.truth, u.features]));
    for (const e of u.events) h.update(JSON.stringify([e.userId, e.productId, e.eventType, e.priceCents, e.rating, e.at - end.getTime()]));
  }
  return h.digest('hex');
};

describe('anchorWeekday', () => {
  const anchor = new Date(`${SHOP_ANCHOR}T00:00:00Z`);

  it('is the latest midnight on or before now on the anchor weekday', () => {
    for (const offsetHours of [0, 1, 23.5, 24, 6 * 24 + 23, 7 * 24, 400 * 24 + 5, -1, -30 * 24 - 7]) {
      const now = new Date(anchor.getTime() + offsetHours * 3_600_000);
      const day = anchorWeekday(now);
      expect(day.getUTCDay()).toBe(anchor.getUTCDay());
      expect(day.getTime() % DAY).toBe(0);
      expect(day.getTime()).toBeLessThanOrEqual(now.getTime());
      expect(now.getTime() - day.getTime()).toBeLessThan(7 * DAY);
    }
    expect(anchorWeekday(anchor).toISOString().slice(0, 10)).toBe(SHOP_ANCHOR);
    expect(anchorWeekday(new Date(anchor.getTime() - 1)).toISOString().slice(0, 10)).toBe('2026-10-25');
  });

  it('gives the anchor shop shifted by whole weeks, and another weekday gives other rows', () => {
    const a = shifted(anchor);
    expect(shifted(anchorWeekday(new Date(anchor.getTime() + 60 * DAY)))).toBe(a);
    expect(shifted(new Date(anchor.getTime() + 364 * DAY))).toBe(a);
    expect(shifted(new Date(anchor.getTime() + DAY))).not.toBe(a);
  });

  it("is the generator's default end, so shops seeded without one (the tests') are the same on every day", () => {
    expect(createShop({ users: 10, days: 30, seed: 1 }).timeline.end.getTime()).toBe(anchorWeekday().getTime());
  });
});

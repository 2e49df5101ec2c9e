/**
 * JS mirror of db/features.ts (eventFeatureQuery) for ONE user's valid events. The synthetic shop computes its
 * truth from these values, and the integration test proves the SQL returns the same numbers.
 */
import { VALID_EVENT_TYPES } from '../features.js';

export type FeatureValue = number | string | null;
export type FeatureRow = Record<string, FeatureValue>;

export interface MirrorEvent {
  eventType: string;
  at: number; // epoch ms
  priceCents: number | null;
  productId: number | null;
  sessionId: string | null;
}

export interface MirrorInput {
  cutoff: number; // epoch ms
  signupAt: number;
  gender: string | null;
  ageBand: string | null;
  region: string | null;
  /** The user's events; invalid ones must already be removed (the generator only passes clean events). */
  events: readonly MirrorEvent[];
  product: (productId: number) => { category: string | null; brand: string | null } | undefined;
}

const DAY = 86_400_000;
const VALID = new Set<string>(VALID_EVENT_TYPES);

export function computeEventFeatures(u: MirrorInput): FeatureRow {
  const c = u.cutoff;
  const last: Record<string, number> = {};
  const n = (type: string, days: number) => `${type}_${days}`;
  const counts = new Map<string, number>();
  const inc = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
  let spend90 = 0;
  let viewPriceSum = 0;
  let viewPriceN = 0;
  let sessionEvents30 = 0;
  const cats = new Map<string, number>();
  const brands = new Map<string, number>();
  const sessions = new Map<string, { first: number; last: number }>();
  for (const e of u.events) {
    if (e.at >= c || !VALID.has(e.eventType)) continue;
    last[e.eventType] = Math.max(last[e.eventType] ?? -Infinity, e.at);
    for (const d of [1, 7, 30, 90]) if (e.at >= c - d * DAY) inc(n(e.eventType, d));
    if (e.at >= c - 90 * DAY && e.eventType === 'purchase' && e.priceCents !== null) spend90 += e.priceCents;
    if (e.at < c - 30 * DAY) continue;
    if (e.sessionId !== null) {
      const s = sessions.get(e.sessionId);
      if (s) (s.first = Math.min(s.first, e.at)), (s.last = Math.max(s.last, e.at));
      else sessions.set(e.sessionId, { first: e.at, last: e.at });
      sessionEvents30++;
    }
    if (e.eventType === 'view') {
      if (e.priceCents !== null) {
        viewPriceSum += e.priceCents;
        viewPriceN++;
      }
      const p = e.productId === null ? undefined : u.product(e.productId);
      if (p?.category != null) cats.set(p.category, (cats.get(p.category) ?? 0) + 1);
      if (p?.brand != null) brands.set(p.brand, (brands.get(p.brand) ?? 0) + 1);
    }
  }
  const k = (type: string, days: number) => counts.get(n(type, days)) ?? 0;
  const ago = (type: string) => (last[type] === undefined ? null : (c - last[type]) / DAY);
  const ratio = (a: number, b: number) => (b === 0 ? null : a / b);
  // Share of the views with a known category (brand) that went to the most viewed one.
  const concentration = (m: Map<string, number>) => {
    let top = 0;
    let all = 0;
    for (const v of m.values()) (top = Math.max(top, v)), (all += v);
    return ratio(top, all);
  };
  let sessionMs = 0;
  for (const s of sessions.values()) sessionMs += s.last - s.first;
  return {
    days_since_last_view: ago('view'),
    days_since_last_cart: ago('cart'),
    days_since_last_purchase: ago('purchase'),
    views_1d: k('view', 1), views_7d: k('view', 7), views_30d: k('view', 30), views_90d: k('view', 90),
    carts_1d: k('cart', 1), carts_7d: k('cart', 7), carts_30d: k('cart', 30),
    removes_30d: k('remove_from_cart', 30),
    purchases_1d: k('purchase', 1), purchases_7d: k('purchase', 7),
    purchases_30d: k('purchase', 30), purchases_90d: k('purchase', 90),
    spend_90d: spend90 / 100,
    cart_view_ratio_30d: ratio(k('cart', 30), k('view', 30)),
    purchase_cart_ratio_90d: ratio(k('purchase', 90), k('cart', 90)),
    distinct_categories_30d: cats.size,
    distinct_brands_30d: brands.size,
    category_concentration_30d: concentration(cats),
    brand_concentration_30d: concentration(brands),
    sessions_30d: sessions.size,
    events_per_session_30d: ratio(sessionEvents30, sessions.size),
    mean_session_minutes_30d: sessions.size === 0 ? null : sessionMs / 1000 / sessions.size / 60,
    mean_view_price_30d: viewPriceN === 0 ? null : viewPriceSum / viewPriceN / 100,
    reviews_90d: k('review', 90),
    tenure_days: (c - u.signupAt) / DAY,
    gender: u.gender,
    age_band: u.ageBand,
    region: u.region,
  };
}

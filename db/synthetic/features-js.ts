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
  const cats = new Set<string>();
  const brands = new Set<string>();
  const sessions = new Set<string>();
  for (const e of u.events) {
    if (e.at >= c || !VALID.has(e.eventType)) continue;
    last[e.eventType] = Math.max(last[e.eventType] ?? -Infinity, e.at);
    for (const d of [1, 7, 30, 90]) if (e.at >= c - d * DAY) inc(n(e.eventType, d));
    if (e.at >= c - 90 * DAY && e.eventType === 'purchase' && e.priceCents !== null) spend90 += e.priceCents;
    if (e.at < c - 30 * DAY) continue;
    if (e.sessionId !== null) {
      sessions.add(e.sessionId);
      sessionEvents30++;
    }
    if (e.eventType === 'view') {
      if (e.priceCents !== null) {
        viewPriceSum += e.priceCents;
        viewPriceN++;
      }
      const p = e.productId === null ? undefined : u.product(e.productId);
      if (p?.category != null) cats.add(p.category);
      if (p?.brand != null) brands.add(p.brand);
    }
  }
  const k = (type: string, days: number) => counts.get(n(type, days)) ?? 0;
  const ago = (type: string) => (last[type] === undefined ? null : (c - last[type]) / DAY);
  const ratio = (a: number, b: number) => (b === 0 ? null : a / b);
  return {
    days_since_last_view: ago('view'),
    days_since_last_cart: ago('cart'),
    days_since_last_purchase: ago('purchase'),
    views_1d: k('view', 1), views_7d: k('view', 7), views_30d: k('view', 30),
    carts_1d: k('cart', 1), carts_7d: k('cart', 7), carts_30d: k('cart', 30),
    removes_30d: k('remove_from_cart', 30),
    purchases_1d: k('purchase', 1), purchases_7d: k('purchase', 7),
    purchases_30d: k('purchase', 30), purchases_90d: k('purchase', 90),
    spend_90d: spend90 / 100,
    cart_view_ratio_30d: ratio(k('cart', 30), k('view', 30)),
    purchase_cart_ratio_90d: ratio(k('purchase', 90), k('cart', 90)),
    distinct_categories_30d: cats.size,
    distinct_brands_30d: brands.size,
    sessions_30d: sessions.size,
    events_per_session_30d: ratio(sessionEvents30, sessions.size),
    mean_view_price_30d: viewPriceN === 0 ? null : viewPriceSum / viewPriceN / 100,
    reviews_90d: k('review', 90),
    tenure_days: (c - u.signupAt) / DAY,
    gender: u.gender,
    age_band: u.ageBand,
    region: u.region,
  };
}

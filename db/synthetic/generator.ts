/**
 * Pure, seeded synthetic shop: users, products and events with a known purchase probability per user.
 * Pre-cutoff behaviour comes from latent traits; the label is drawn from truthProbability(features before the
 * cutoff), and the label-window events are then made consistent with it (see truth.ts for why).
 */
import { computeEventFeatures, type FeatureRow, type MirrorEvent } from './features-js.js';
import {
  geometric, int, logNormal, mixSeed, mulberry32, pick, pickWeighted, poisson, uniform, type Rng,
} from './random.js';
import { truthProbability } from './truth.js';

export const DAY = 86_400_000;

/**
 * Where the shops that people see end by default (`propensity seed`, the demo, the benchmarks): a fixed day, so
 * that the demo trains on the same data on every machine and every day and prints the same metrics (README, "Run
 * the demo"). The generator's own default end is anchorWeekday(), which the tests use.
 */
export const SHOP_ANCHOR = '2026-11-01';

/** The UTC midnight at or before `now`: the start of its day, where the generator's days begin. */
export const utcMidnight = (now: Date = new Date()): Date => new Date(Math.floor(now.getTime() / DAY) * DAY);

/**
 * The latest day at or before `now` (UTC midnight) that falls on SHOP_ANCHOR's weekday. A shop's rows depend on its
 * end only through the weekday its days fall on (weekend peaks) and their offsets from it, so every shop ending on
 * such a day holds the rows of the shop ending on SHOP_ANCHOR, shifted by whole weeks, while its data stays within a
 * week of the wall clock. It is the generator's default end, so the tests' shops end here: the same rows and models
 * on every day they run, and recent enough that scoring "active users" as of now finds them.
 */
export function anchorWeekday(now: Date = new Date()): Date {
  const today = utcMidnight(now).getTime();
  const anchor = Date.parse(`${SHOP_ANCHOR}T00:00:00Z`);
  const back = (((today - anchor) / DAY) % 7 + 7) % 7;
  return new Date(today - back * DAY);
}

export interface ShopOptions {
  users: number;
  days: number;
  seed: number;
  horizonDays?: number;
  dirtyRate?: number;
  /** End of the data (exclusive); default: anchorWeekday(), the latest day on SHOP_ANCHOR's weekday. */
  end?: Date;
  /** Wall clock used only to place "future" dirty rows after it; default: now. */
  now?: Date;
}

export interface Timeline {
  start: Date;
  cutoff: Date;
  end: Date;
}

export interface Product {
  productId: number;
  category: string;
  categoryId: string;
  brand: string;
  priceCents: number;
}

export interface User {
  userId: number;
  signupAt: number;
  gender: string | null;
  ageBand: string | null;
  region: string | null;
}

export interface ShopEvent {
  eventId: number;
  userId: number | null;
  sessionId: string | null;
  productId: number | null;
  eventType: string | null;
  priceCents: number | null;
  rating: number | null;
  at: number; // epoch ms
}

export const DIRTY_KINDS = ['duplicate', 'null_user', 'null_type', 'negative_price', 'unknown_type', 'future'] as const;
export type DirtyKind = (typeof DIRTY_KINDS)[number];

export interface UserTruth {
  userId: number;
  probability: number;
  label: boolean;
  isBot: boolean;
}

export interface GeneratedUser {
  user: User;
  /** Every row to load, dirty ones included, in load order. */
  events: ShopEvent[];
  clean: number;
  dirty: Record<DirtyKind, number>;
  /** Only for users who signed up before the cutoff (the ones the feature query returns). */
  truth: UserTruth | null;
  features: FeatureRow | null;
}

export interface Shop {
  timeline: Timeline;
  products: Product[];
  users(): Generator<GeneratedUser>;
}

const CATEGORIES: [string, number][] = [
  ['electronics.smartphone', 350], ['electronics.audio.headphone', 80], ['electronics.video.tv', 520],
  ['computers.notebook', 750], ['computers.peripherals.mouse', 25], ['appliances.kitchen.blender', 60],
  ['appliances.environment.vacuum', 180], ['apparel.shoes', 75], ['apparel.tshirt', 20],
  ['furniture.living_room.sofa', 640], ['furniture.bedroom.pillow', 25], ['kids.toys', 30], ['sport.bicycle', 420],
  ['beauty.skincare', 18], ['accessories.bag', 45], ['construction.tools.drill', 95], ['auto.accessories.player', 120],
  ['country_yard.garden', 35], ['stationery.cartridge', 12], ['food.coffee', 15],
];
const BRANDS = [
  'samsung', 'apple', 'xiaomi', 'huawei', 'sony', 'lg', 'bosch', 'philips', 'nike', 'adidas', 'puma', 'ikea',
  'lego', 'hasbro', 'makita', 'dewalt', 'loreal', 'nivea', 'canon', 'hp', 'lenovo', 'asus', 'acer', 'dell',
  'tefal', 'braun', 'dyson', 'kenwood', 'trek', 'giant', 'pioneer', 'jbl', 'gardena', 'lavazza', 'epson', 'zara',
];
const GENDERS = ['F', 'M'];
const AGE_BANDS = ['18-24', '25-34', '35-44', '45-54', '55-64', '65+'];
const AGE_WEIGHTS = [0.16, 0.27, 0.23, 0.16, 0.11, 0.07];
const REGIONS = ['north', 'south', 'east', 'west', 'central', 'metro', 'coastal', 'rural'];
const REGION_WEIGHTS = [0.12, 0.14, 0.1, 0.11, 0.09, 0.26, 0.1, 0.08];
const UNKNOWN_TYPES = ['wishlist', 'page_view', 'add_to_compare', 'click'];
const RATING_WEIGHTS = [0.05, 0.07, 0.13, 0.3, 0.45];
const BOT_RATE = 0.005;

export function shopTimeline(o: Pick<ShopOptions, 'days' | 'horizonDays' | 'end'>): Timeline {
  const horizonDays = o.horizonDays ?? 14;
  if (!(o.days > horizonDays)) throw new Error(`synthetic shop: days (${o.days}) must exceed horizonDays (${horizonDays})`);
  const end = o.end ?? anchorWeekday();
  return {
    start: new Date(end.getTime() - o.days * DAY),
    cutoff: new Date(end.getTime() - horizonDays * DAY),
    end,
  };
}

function makeProducts(seed: number, users: number): Product[] {
  const r = mulberry32(mixSeed(seed, 0x9e3779b9));
  const n = Math.min(20_000, Math.max(400, Math.round(users / 8)));
  const brandFactor = new Map(BRANDS.map((b) => [b, logNormal(r, 0, 0.3)]));
  const catBrands = CATEGORIES.map(() => Array.from({ length: 6 }, () => pick(r, BRANDS)));
  const products: Product[] = [];
  for (let i = 0; i < n; i++) {
    const c = int(r, 0, CATEGORIES.length);
    const [category, median] = CATEGORIES[c];
    const brand = pick(r, catBrands[c]);
    const price = median * brandFactor.get(brand)! * logNormal(r, 0, 0.5);
    products.push({
      productId: 1_000_000 + i,
      category,
      categoryId: `20530135${String(c * 7919 + 104729).padStart(11, '0')}`,
      brand,
      priceCents: Math.max(99, Math.round(price * 100)),
    });
  }
  return products;
}

interface Traits {
  isBot: boolean;
  activity: number; // sessions per day at full engagement
  churnAt: number; // engagement fades after this time…
  churnTau: number; // …with this time constant (days)
  intent: number;
  priceSensitivity: number; // 0..1, pulls choices towards the cheap end of a category
  favorites: number[];
  sessionLength: number; // mean views per session
}

export function createShop(options: ShopOptions): Shop {
  const { users, seed } = options;
  const dirtyRate = options.dirtyRate ?? 0.01;
  const timeline = shopTimeline(options);
  const start = timeline.start.getTime();
  const cutoff = timeline.cutoff.getTime();
  const end = timeline.end.getTime();
  const nowMs = (options.now ?? new Date()).getTime();
  // "Future" rows must stay in the future when the pipeline runs later, so place them well after both clocks.
  const futureBase = Math.max(end, Math.floor(nowMs / DAY) * DAY) + DAY;
  const products = makeProducts(seed, users);
  const productById = new Map(products.map((p) => [p.productId, p]));
  const byCategory = CATEGORIES.map((_, c) =>
    products.filter((p) => p.category === CATEGORIES[c][0]).sort((a, b) => a.priceCents - b.priceCents));
  const lookup = (id: number) => productById.get(id);

  function* generate(): Generator<GeneratedUser> {
    let nextEventId = 1;
    for (let i = 0; i < users; i++) {
      const userId = 10_000_000 + i;
      const r = mulberry32(mixSeed(seed, userId));
      const user = makeUser(r, userId);
      const traits = makeTraits(r);
      const labelled = user.signupAt < cutoff;
      const from = Math.max(start, user.signupAt);
      const pre = simulate(r, traits, user, from, labelled ? cutoff : end);
      let truth: UserTruth | null = null;
      let features: FeatureRow | null = null;
      let clean = pre;
      if (labelled) {
        features = computeEventFeatures({ ...user, cutoff, events: pre.map(toMirror), product: lookup });
        const probability = truthProbability(features);
        const label = r() < probability;
        truth = { userId, probability, label, isBot: traits.isBot };
        clean = pre.concat(labelWindow(r, traits, user, label));
      }
      clean.sort((a, b) => a.at - b.at);
      for (const e of clean) e.eventId = nextEventId++;
      const dirty = Object.fromEntries(DIRTY_KINDS.map((k) => [k, 0])) as Record<DirtyKind, number>;
      const events: ShopEvent[] = [];
      for (const e of clean) {
        events.push(e);
        if (r() >= dirtyRate) continue;
        const kind = pick(r, DIRTY_KINDS);
        dirty[kind]++;
        const copy = { ...e, eventId: nextEventId++ };
        if (kind === 'duplicate') copy.eventId = e.eventId;
        else if (kind === 'null_user') copy.userId = null;
        else if (kind === 'null_type') copy.eventType = null;
        else if (kind === 'negative_price') copy.priceCents = -Math.max(1, e.priceCents ?? 100);
        else if (kind === 'unknown_type') copy.eventType = pick(r, UNKNOWN_TYPES);
        else copy.at = futureBase + Math.floor(r() * 365 * DAY);
        events.push(copy);
      }
      yield { user, events, clean: clean.length, dirty, truth, features };
    }
  }

  function makeUser(r: Rng, userId: number): User {
    // Three quarters are existing customers (up to two years before the data starts), the rest sign up during it.
    const signupAt = r() < 0.75 ? start - Math.floor(r() * 720 * DAY) - 1 : start + Math.floor(r() * (end - start));
    const maybe = <T>(v: T) => (r() < 0.02 ? null : v);
    return {
      userId,
      signupAt: Math.floor(signupAt / 1000) * 1000,
      gender: maybe(r() < 0.53 ? GENDERS[0] : GENDERS[1]),
      ageBand: maybe(pickWeighted(r, AGE_BANDS, AGE_WEIGHTS)),
      region: maybe(pickWeighted(r, REGIONS, REGION_WEIGHTS)),
    };
  }

  function makeTraits(r: Rng): Traits {
    const nFav = int(r, 1, 4);
    return {
      isBot: r() < BOT_RATE,
      activity: logNormal(r, -2.45, 1.0),
      churnAt: r() < 0.4 ? uniform(r, start - 30 * DAY, end + 30 * DAY) : Infinity,
      churnTau: uniform(r, 2, 12),
      intent: logNormal(r, 0, 0.6),
      priceSensitivity: r(),
      favorites: Array.from({ length: nFav }, () => int(r, 0, CATEGORIES.length)),
      sessionLength: 2 + logNormal(r, 1, 0.5),
    };
  }

  function chooseProduct(r: Rng, t: Traits): Product {
    const c = r() < 0.7 ? pick(r, t.favorites) : int(r, 0, CATEGORIES.length);
    const list = byCategory[c].length > 0 ? byCategory[c] : products;
    // Price-sensitive users skew towards the cheap end of the (price-sorted) category.
    return list[Math.floor(list.length * Math.pow(r(), 1 + 3 * t.priceSensitivity))];
  }

  /** Sessions in [from, until): daily Poisson counts with weekend peaks and churn decay. */
  function simulate(r: Rng, t: Traits, u: User, from: number, until: number, noPurchase = false): ShopEvent[] {
    const out: ShopEvent[] = [];
    if (t.isBot) return botSessions(r, u, from, until);
    for (let day = Math.floor(from / DAY) * DAY; day < until; day += DAY) {
      const dow = new Date(day).getUTCDay();
      const weekly = dow === 0 || dow === 6 ? 1.5 : dow === 5 ? 1.15 : 0.9;
      const fade = day > t.churnAt ? Math.exp(-(day - t.churnAt) / DAY / t.churnTau) : 1;
      const n = poisson(r, t.activity * weekly * fade);
      for (let s = 0; s < n; s++) {
        const at = day + Math.floor(r() * DAY);
        if (at >= from && at < until) session(r, t, u, at, until, noPurchase, out);
      }
    }
    return out;
  }

  /** One visit: views, some carted; at the end carts are bought, removed or abandoned. Purchases may be reviewed. */
  function session(r: Rng, t: Traits, u: User, at: number, until: number, noPurchase: boolean, out: ShopEvent[]) {
    const sessionId = `${u.userId.toString(36)}-${Math.floor(at / 1000).toString(36)}`;
    const ev = (eventType: string, p: Product, when: number): ShopEvent => ({
      eventId: 0, userId: u.userId, sessionId, productId: p.productId, eventType, priceCents: p.priceCents, rating: null,
      at: when,
    });
    const views = 1 + geometric(r, 1 / t.sessionLength);
    const carted: Product[] = [];
    let now = at;
    for (let v = 0; v < views && now < until; v++) {
      const p = chooseProduct(r, t);
      out.push(ev('view', p, now));
      if (r() < Math.min(0.6, 0.07 * t.intent)) {
        now += 5000 + Math.floor(r() * 55_000);
        if (now < until) out.push(ev('cart', p, now)), carted.push(p);
      }
      now += 10_000 + Math.floor(r() * 140_000);
    }
    for (const p of carted) {
      now += 20_000 + Math.floor(r() * 200_000);
      if (now >= until) break;
      if (!noPurchase && r() < Math.min(0.8, 0.3 * Math.sqrt(t.intent))) {
        out.push(ev('purchase', p, now));
        review(r, u, p, now, out);
      } else if (r() < 0.5) out.push(ev('remove_from_cart', p, now));
    }
  }

  function review(r: Rng, u: User, p: Product, purchasedAt: number, out: ShopEvent[]) {
    if (r() >= 0.2) return;
    const at = purchasedAt + Math.floor(uniform(r, 1, 10) * DAY);
    if (at >= end) return;
    out.push({
      eventId: 0, userId: u.userId, sessionId: null, productId: p.productId, eventType: 'review', priceCents: null,
      rating: 1 + RATING_WEIGHTS.indexOf(pickWeighted(r, RATING_WEIGHTS, RATING_WEIGHTS)), at,
    });
  }

  /** Scrapers: a burst of days with hundreds of fast views a day, never a cart or a purchase. */
  function botSessions(r: Rng, u: User, from: number, until: number): ShopEvent[] {
    const out: ShopEvent[] = [];
    const burst = uniform(r, Math.max(from, cutoff - 25 * DAY), cutoff + 3 * DAY);
    const burstEnd = burst + uniform(r, 2, 10) * DAY;
    for (let day = Math.floor(burst / DAY) * DAY; day < Math.min(burstEnd, until); day += DAY) {
      for (let s = int(r, 1, 5); s > 0; s--) {
        let at = day + Math.floor(r() * DAY);
        const sessionId = `b${u.userId.toString(36)}-${Math.floor(at / 1000).toString(36)}`;
        for (let v = int(r, 30, 120); v > 0 && at >= from && at < until; v--) {
          const p = pick(r, products);
          out.push({ eventId: 0, userId: u.userId, sessionId, productId: p.productId, eventType: 'view',
            priceCents: p.priceCents, rating: null, at });
          at += 1000 + Math.floor(r() * 9000);
        }
      }
    }
    return out;
  }

  /** Events in [cutoff, end) consistent with the drawn label: a valid purchase if and only if label is true. */
  function labelWindow(r: Rng, t: Traits, u: User, label: boolean): ShopEvent[] {
    const out = simulate(r, t, u, cutoff, end, true);
    if (!label) return out;
    const sessions = [...new Set(out.map((e) => e.sessionId))];
    const sid = sessions.length > 0 && r() < 0.8 ? pick(r, sessions) : null;
    const inSession = out.filter((e) => e.sessionId === sid);
    let at = inSession.length > 0 ? inSession[inSession.length - 1].at + 30_000 : Math.floor(uniform(r, cutoff, end - 3_600_000));
    at = Math.min(Math.max(at, cutoff + 10_000), end - 1000);
    const seen = inSession.find((e) => e.eventType === 'view');
    const p = seen ? productById.get(seen.productId!)! : chooseProduct(r, t);
    const sessionId = sid ?? `${u.userId.toString(36)}-${Math.floor(at / 1000).toString(36)}`;
    const ev = (eventType: string, when: number): ShopEvent => ({
      eventId: 0, userId: u.userId, sessionId, productId: p.productId, eventType, priceCents: p.priceCents,
      rating: null, at: when,
    });
    if (!seen) out.push(ev('view', at - 2000));
    out.push(ev('cart', at - 1000), ev('purchase', at));
    review(r, u, p, at, out);
    return out;
  }

  return { timeline, products, users: generate };
}

function toMirror(e: ShopEvent): MirrorEvent {
  return { eventType: e.eventType!, at: e.at, priceCents: e.priceCents, productId: e.productId, sessionId: e.sessionId };
}

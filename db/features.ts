/**
 * Event mode: point-in-time features per user from shop.events, computed set-based in Postgres.
 * db/synthetic/features-js.ts mirrors these definitions exactly (the synthetic shop's truth depends on it);
 * change both together.
 */

export const VALID_EVENT_TYPES = ['view', 'cart', 'remove_from_cart', 'purchase', 'review'] as const;

export interface FeatureSpec {
  name: string;
  kind: 'numeric' | 'categorical';
}

/** Feature columns returned by eventFeatureQuery, in order (after user_id and label). */
export const EVENT_FEATURES: FeatureSpec[] = [
  'days_since_last_view', 'days_since_last_cart', 'days_since_last_purchase',
  'views_1d', 'views_7d', 'views_30d',
  'carts_1d', 'carts_7d', 'carts_30d', 'removes_30d',
  'purchases_1d', 'purchases_7d', 'purchases_30d', 'purchases_90d', 'spend_90d',
  'cart_view_ratio_30d', 'purchase_cart_ratio_90d',
  'distinct_categories_30d', 'distinct_brands_30d',
  'sessions_30d', 'events_per_session_30d', 'mean_view_price_30d',
  'reviews_90d', 'tenure_days',
].map((name): FeatureSpec => ({ name, kind: 'numeric' }))
  .concat(['gender', 'age_band', 'region'].map((name) => ({ name, kind: 'categorical' })));

export interface EventFeatureQueryInput {
  cutoff: Date;
  horizonDays: number;
  /** Run time: events stamped after it are invalid (clock skew, bad exports). Defaults to the current time. */
  now?: Date;
}

export interface SqlQuery {
  sql: string;
  params: unknown[];
}

const DAY_MS = 86_400_000;
const TYPES = VALID_EVENT_TYPES.map((t) => `'${t}'`).join(', ');

// Windows are in hours, not days: `timestamptz - interval 'N days'` follows the session's DST rules.
const since = (days: number) => `v.occurred_at >= $1::timestamptz - interval '${days * 24} hours'`;
const pre = 'v.occurred_at < $1::timestamptz';
const is = (type: string) => `v.event_type = '${type}'`;
const count = (type: string, days: number) => `count(*) FILTER (WHERE ${is(type)} AND ${pre} AND ${since(days)})`;
const daysSince = (type: string) =>
  `(extract(epoch FROM $1::timestamptz - max(v.occurred_at) FILTER (WHERE ${is(type)} AND ${pre})) / 86400)::float8`;

/**
 * One row per user who signed up before the cutoff: user_id (text), label (0/1: a valid purchase in
 * [cutoff, cutoff + horizon)), then EVENT_FEATURES from valid events strictly before the cutoff.
 * Counts are 0 when there is no activity; recency, ratios and means are NULL when undefined (imputed later).
 */
export function eventFeatureQuery({ cutoff, horizonDays, now = new Date() }: EventFeatureQueryInput): SqlQuery {
  if (!(horizonDays > 0)) throw new Error(`eventFeatureQuery: horizonDays must be > 0, got ${horizonDays}`);
  const labelEnd = new Date(cutoff.getTime() + horizonDays * DAY_MS);
  const sql = `
WITH valid AS (
  -- one row per (user_id, event_id): an exported event id names one event of one user, and ordering by user
  -- lets the dedup stream off the (user_id, occurred_at) index into the per-user aggregate without a global sort.
  -- Nothing at or after cutoff + horizon is read at all.
  SELECT DISTINCT ON (e.user_id, e.event_id) e.event_id, e.user_id, e.session_id, e.event_type, e.price, e.occurred_at,
         p.category, p.brand
  FROM shop.events e
  LEFT JOIN shop.products p ON p.product_id = e.product_id
  WHERE e.occurred_at < $2::timestamptz AND e.occurred_at <= $3::timestamptz
    AND e.event_id IS NOT NULL AND e.user_id IS NOT NULL
    AND e.event_type IN (${TYPES})
    AND (e.price IS NULL OR e.price >= 0)
  ORDER BY e.user_id, e.event_id, e.occurred_at, e.event_type, e.price, e.session_id
),
agg AS (
  SELECT v.user_id,
    bool_or(${is('purchase')} AND v.occurred_at >= $1::timestamptz) AS label,
    ${daysSince('view')} AS days_since_last_view,
    ${daysSince('cart')} AS days_since_last_cart,
    ${daysSince('purchase')} AS days_since_last_purchase,
    ${count('view', 1)} AS views_1d, ${count('view', 7)} AS views_7d, ${count('view', 30)} AS views_30d,
    ${count('cart', 1)} AS carts_1d, ${count('cart', 7)} AS carts_7d, ${count('cart', 30)} AS carts_30d,
    ${count('remove_from_cart', 30)} AS removes_30d,
    ${count('purchase', 1)} AS purchases_1d, ${count('purchase', 7)} AS purchases_7d,
    ${count('purchase', 30)} AS purchases_30d, ${count('purchase', 90)} AS purchases_90d,
    ${count('cart', 90)} AS carts_90d,
    coalesce(sum(v.price) FILTER (WHERE ${is('purchase')} AND ${pre} AND ${since(90)}), 0) AS spend_90d,
    count(DISTINCT v.category) FILTER (WHERE ${is('view')} AND ${pre} AND ${since(30)}) AS distinct_categories_30d,
    count(DISTINCT v.brand) FILTER (WHERE ${is('view')} AND ${pre} AND ${since(30)}) AS distinct_brands_30d,
    count(DISTINCT v.session_id) FILTER (WHERE ${pre} AND ${since(30)}) AS sessions_30d,
    count(v.session_id) FILTER (WHERE ${pre} AND ${since(30)}) AS session_events_30d,
    avg(v.price) FILTER (WHERE ${is('view')} AND ${pre} AND ${since(30)}) AS mean_view_price_30d,
    ${count('review', 90)} AS reviews_90d
  FROM valid v
  GROUP BY v.user_id
)
SELECT u.user_id::text AS user_id,
  coalesce(a.label, false)::int AS label,
  a.days_since_last_view, a.days_since_last_cart, a.days_since_last_purchase,
  ${['views_1d', 'views_7d', 'views_30d', 'carts_1d', 'carts_7d', 'carts_30d', 'removes_30d',
    'purchases_1d', 'purchases_7d', 'purchases_30d', 'purchases_90d', 'spend_90d']
    .map((c) => `coalesce(a.${c}, 0)::float8 AS ${c}`).join(', ')},
  a.carts_30d::float8 / nullif(a.views_30d, 0) AS cart_view_ratio_30d,
  a.purchases_90d::float8 / nullif(a.carts_90d, 0) AS purchase_cart_ratio_90d,
  coalesce(a.distinct_categories_30d, 0)::float8 AS distinct_categories_30d,
  coalesce(a.distinct_brands_30d, 0)::float8 AS distinct_brands_30d,
  coalesce(a.sessions_30d, 0)::float8 AS sessions_30d,
  a.session_events_30d::float8 / nullif(a.sessions_30d, 0) AS events_per_session_30d,
  a.mean_view_price_30d::float8 AS mean_view_price_30d,
  coalesce(a.reviews_90d, 0)::float8 AS reviews_90d,
  (extract(epoch FROM $1::timestamptz - u.signup_at) / 86400)::float8 AS tenure_days,
  u.gender, u.age_band, u.region
FROM shop.users u
LEFT JOIN agg a ON a.user_id = u.user_id
WHERE u.signup_at < $1::timestamptz
ORDER BY u.user_id`;
  return { sql, params: [cutoff.toISOString(), labelEnd.toISOString(), now.toISOString()] };
}

export interface EventQualityQueryInput {
  cutoff: Date;
  now?: Date;
}

/**
 * Invalid rows in shop.events, one reason per row (first that applies, in column order), so
 * total_rows = valid_rows + the five reason counts; duplicate_event_id counts the extra copies of a
 * (user_id, event_id) that are otherwise valid, as eventFeatureQuery drops them. Columns (all float8): total_rows, valid_rows,
 * null_key, unknown_event_type, negative_price, future_timestamp, duplicate_event_id, valid_before_cutoff.
 */
export function eventQualityQuery({ cutoff, now = new Date() }: EventQualityQueryInput): SqlQuery {
  const sql = `
WITH classified AS (
  SELECT e.user_id, e.event_id, e.occurred_at,
    CASE
      WHEN e.event_id IS NULL OR e.user_id IS NULL OR e.event_type IS NULL OR e.occurred_at IS NULL THEN 'null_key'
      WHEN e.event_type NOT IN (${TYPES}) THEN 'unknown_event_type'
      WHEN e.price < 0 THEN 'negative_price'
      WHEN e.occurred_at > $2::timestamptz THEN 'future_timestamp'
    END AS reason
  FROM shop.events e
),
per_key AS (
  -- one pass: grouping by key and reason counts duplicates without a count(DISTINCT) over the whole table
  SELECT reason, count(*) AS copies, min(occurred_at) < $1::timestamptz AS before_cutoff
  FROM classified
  GROUP BY user_id, event_id, reason
)
SELECT coalesce(sum(copies), 0)::float8 AS total_rows,
  count(*) FILTER (WHERE reason IS NULL)::float8 AS valid_rows,
  coalesce(sum(copies) FILTER (WHERE reason = 'null_key'), 0)::float8 AS null_key,
  coalesce(sum(copies) FILTER (WHERE reason = 'unknown_event_type'), 0)::float8 AS unknown_event_type,
  coalesce(sum(copies) FILTER (WHERE reason = 'negative_price'), 0)::float8 AS negative_price,
  coalesce(sum(copies) FILTER (WHERE reason = 'future_timestamp'), 0)::float8 AS future_timestamp,
  coalesce(sum(copies - 1) FILTER (WHERE reason IS NULL), 0)::float8 AS duplicate_event_id,
  count(*) FILTER (WHERE reason IS NULL AND before_cutoff)::float8 AS valid_before_cutoff
FROM per_key`;
  return { sql, params: [cutoff.toISOString(), now.toISOString()] };
}

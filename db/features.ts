/**
 * Event mode: point-in-time features per user from shop.events, computed set-based in Postgres.
 * db/synthetic/features-js.ts mirrors these definitions exactly (the synthetic shop's truth depends on it);
 * change both together.
 */

import { checkSequenceLength, sequenceAggregatesSql, sequenceColumnsSql } from './sequences.js';

export const VALID_EVENT_TYPES = ['view', 'cart', 'remove_from_cart', 'purchase', 'review'] as const;

export interface FeatureSpec {
  name: string;
  kind: 'numeric' | 'categorical';
  /** a column of the last-N-events sequence (db/sequences.ts): its position (1 = most recent) and field */
  sequence?: { position: number; field: string };
}

/** Feature columns returned by eventFeatureQuery, in order (after user_id and label). */
export const EVENT_FEATURES: FeatureSpec[] = [
  'days_since_last_view', 'days_since_last_cart', 'days_since_last_purchase',
  'views_1d', 'views_7d', 'views_30d', 'views_90d',
  'carts_1d', 'carts_7d', 'carts_30d', 'removes_30d',
  'purchases_1d', 'purchases_7d', 'purchases_30d', 'purchases_90d', 'spend_90d',
  'cart_view_ratio_30d', 'purchase_cart_ratio_90d',
  'distinct_categories_30d', 'distinct_brands_30d', 'category_concentration_30d', 'brand_concentration_30d',
  'sessions_30d', 'events_per_session_30d', 'mean_session_minutes_30d', 'mean_view_price_30d',
  'reviews_90d', 'tenure_days',
].map((name): FeatureSpec => ({ name, kind: 'numeric' }))
  .concat(['gender', 'age_band', 'region'].map((name) => ({ name, kind: 'categorical' })));

/**
 * Why an event row is invalid, in the order they are checked: a row gets the first reason that applies, so the
 * counts of eventQualityQuery sum to total - valid. duplicate_event_id (an extra copy of an otherwise valid
 * (user_id, event_id)) comes last.
 */
export const EVENT_INVALID_REASONS = [
  'null_key', 'unknown_event_type', 'non_finite_price', 'negative_price', 'future_timestamp', 'before_shop_opened',
  'duplicate_event_id',
] as const;
export type EventInvalidReason = (typeof EVENT_INVALID_REASONS)[number];

export interface SqlQuery {
  sql: string;
  /** Bind parameters for `$1…`; empty when the query was built with `inline: true`. */
  params: unknown[];
}

export interface QueryOptions {
  /**
   * Inline every value as a quoted literal instead of `$n` bind parameters, for `COPY (query) TO STDOUT`
   * (which takes none). Timestamps become `'2026-01-01T00:00:00.000Z'::timestamptz`.
   */
  inline?: boolean;
}

export interface EventValidityInput {
  /** Run time: events stamped after it are invalid (clock skew, bad exports). Defaults to the current time. */
  now?: Date;
  /**
   * When the shop opened: events before it are invalid (test data, epoch-zero timestamps). null or absent:
   * the earliest shop.users.signup_at.
   */
  openedAt?: Date | null;
}

export interface SequenceInput {
  /**
   * Also return each user's last N valid events before the cutoff as the columns of sequenceFeatureSpecs(N),
   * after EVENT_FEATURES. 0 or absent: off, and the SQL is exactly what it was without the option.
   */
  sequenceLength?: number;
}

export interface EventFeatureQueryInput extends EventValidityInput, QueryOptions, SequenceInput {
  cutoff: Date;
  horizonDays: number;
}

const DAY_MS = 86_400_000;
const TYPES = VALID_EVENT_TYPES.map((t) => `'${t}'`).join(', ');

/**
 * A SQL literal for a value of ours (never for an identifier). Strings are single-quoted with quotes doubled, and
 * written as E'' strings with doubled backslashes when they hold one, so the result is the same whatever
 * standard_conforming_strings says. Dates become timestamptz literals.
 */
export function sqlLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new Error('sqlLiteral: invalid Date');
    return `'${value.toISOString()}'::timestamptz`;
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`sqlLiteral: ${value} is not a finite number`);
    return String(value);
  }
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE';
  if (typeof value === 'string') {
    if (value.includes('\0')) throw new Error('sqlLiteral: a string may not contain a NUL character');
    const quoted = value.replace(/'/g, "''");
    return value.includes('\\') ? `E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
  }
  throw new Error(`sqlLiteral: cannot write a ${typeof value} as a SQL literal`);
}

/** Replaces `$n` in SQL we generated ourselves (it has no `$` anywhere else) by the literal of params[n - 1]. */
function build(sql: string, params: unknown[], inline: boolean | undefined): SqlQuery {
  if (!inline) return { sql, params };
  const out = sql.replace(/\$(\d+)/g, (_, n: string) => {
    const i = Number(n) - 1;
    if (i < 0 || i >= params.length) throw new Error(`query refers to $${n} but has ${params.length} parameters`);
    return sqlLiteral(params[i]);
  });
  return { sql: out, params: [] };
}

const iso = (d: Date) => {
  if (Number.isNaN(d.getTime())) throw new Error('invalid Date in a feature query input');
  return d.toISOString();
};

/** The shop's opening time in SQL: the given one, else the first signup, else no lower bound. */
const openedSql = (param: string) =>
  `coalesce(${param}::timestamptz, (SELECT min(su.signup_at) FROM shop.users su), '-infinity'::timestamptz)`;

/**
 * The validity checks on a shop.events row aliased `e`, each as the condition that makes it invalid and its
 * NULL-safe negation (written out so the planner sees plain predicates). `now` and `opened` are SQL expressions.
 */
function validityChecks(now: string, opened: string): { reason: EventInvalidReason; invalid: string; valid: string }[] {
  const NON_FINITE = `('NaN', 'Infinity', '-Infinity')`;
  return [
    {
      reason: 'null_key',
      invalid: 'e.event_id IS NULL OR e.user_id IS NULL OR e.event_type IS NULL OR e.occurred_at IS NULL',
      valid: 'e.event_id IS NOT NULL AND e.user_id IS NOT NULL AND e.event_type IS NOT NULL AND e.occurred_at IS NOT NULL',
    },
    { reason: 'unknown_event_type', invalid: `e.event_type NOT IN (${TYPES})`, valid: `e.event_type IN (${TYPES})` },
    // Before negative_price: -Infinity is < 0, but it is a broken value rather than a refund-like one.
    { reason: 'non_finite_price', invalid: `e.price IN ${NON_FINITE}`, valid: `(e.price IS NULL OR e.price NOT IN ${NON_FINITE})` },
    { reason: 'negative_price', invalid: 'e.price < 0', valid: '(e.price IS NULL OR e.price >= 0)' },
    { reason: 'future_timestamp', invalid: `e.occurred_at > ${now}`, valid: `e.occurred_at <= ${now}` },
    // Not `occurred_at >= opened`: with an upper bound beside it and an unknown lower bound (the subquery), the
    // planner assumes a 0.5 % range, and sorts 5 M rows instead of streaming them off the (user_id, …) index.
    { reason: 'before_shop_opened', invalid: `e.occurred_at < ${opened}`, valid: `(e.occurred_at < ${opened}) IS NOT TRUE` },
  ];
}

const reasonCase = (now: string, opened: string) =>
  `CASE\n${validityChecks(now, opened).map((c) => `      WHEN ${c.invalid} THEN '${c.reason}'`).join('\n')}\n    END`;
const validWhere = (now: string, opened: string) =>
  validityChecks(now, opened).map((c) => c.valid).join('\n    AND ');

// Windows are in hours, not days: `timestamptz - interval 'N days'` follows the session's DST rules.
const since = (days: number) => `v.occurred_at >= $1::timestamptz - interval '${days * 24} hours'`;
const pre = 'v.occurred_at < $1::timestamptz';
const is = (type: string) => `v.event_type = '${type}'`;
const count = (type: string, days: number) => `count(*) FILTER (WHERE ${is(type)} AND ${pre} AND ${since(days)})`;
const daysSince = (type: string) =>
  `(extract(epoch FROM $1::timestamptz - max(v.occurred_at) FILTER (WHERE ${is(type)} AND ${pre})) / 86400)::float8`;
const views30 = `${is('view')} AND ${pre} AND ${since(30)}`;
const in30 = `${pre} AND ${since(30)}`;
// The user's 30-day views of the top category (or brand): the largest group of the user's own small array,
// evaluated per user inside the one aggregate pass rather than by a second pass over the events.
const topShare = (col: string) => `(SELECT max(n) FROM (SELECT count(*) AS n FROM unnest(
      array_agg(v.${col}) FILTER (WHERE ${views30} AND v.${col} IS NOT NULL)) AS x(k) GROUP BY k) AS g)`;

/**
 * One row per user who signed up before the cutoff: user_id (text), label (0/1: a valid purchase in
 * [cutoff, cutoff + horizon)), then EVENT_FEATURES from valid events strictly before the cutoff.
 * Counts are 0 when there is no activity; recency, ratios, shares and means are NULL when undefined (imputed
 * later). Validity is that of eventQualityQuery: rows with any reason are dropped, duplicates kept once.
 */
export function eventFeatureQuery({
  cutoff, horizonDays, now = new Date(), openedAt = null, inline, sequenceLength = 0,
}: EventFeatureQueryInput): SqlQuery {
  if (!(horizonDays > 0)) throw new Error(`eventFeatureQuery: horizonDays must be > 0, got ${horizonDays}`);
  const labelEnd = new Date(cutoff.getTime() + horizonDays * DAY_MS);
  return build(userFeatureSql('train', checkSequenceLength(sequenceLength, 'sequenceLength')), [iso(cutoff), iso(labelEnd), iso(now), openedAt ? iso(openedAt) : null], inline);
}

export interface EventScoringQueryInput extends EventValidityInput, QueryOptions, SequenceInput {
  /** the point in time scored: features from valid events strictly before it, nothing at or after it read */
  cutoff: Date;
  /** a user is active with at least one valid event in [cutoff - activeDays, cutoff) */
  activeDays: number;
}

/**
 * The scoring variant of eventFeatureQuery: the same columns (user_id, label, EVENT_FEATURES) with the same
 * definitions, for the *active* users only — signed up before the cutoff, with a valid event in
 * [cutoff - activeDays, cutoff). label is always 0 (there is no label window); no event at or after the cutoff is
 * read.
 */
export function eventScoringQuery({
  cutoff, activeDays, now = new Date(), openedAt = null, inline, sequenceLength = 0,
}: EventScoringQueryInput): SqlQuery {
  if (!(Number.isInteger(activeDays) && activeDays > 0)) {
    throw new Error(`eventScoringQuery: activeDays must be a positive integer, got ${activeDays}`);
  }
  // In hours like the feature windows (a JS Date difference is exact; `interval 'N days'` would follow DST).
  const activeFrom = new Date(cutoff.getTime() - activeDays * DAY_MS);
  return build(userFeatureSql('score', checkSequenceLength(sequenceLength, 'sequenceLength')), [iso(cutoff), iso(activeFrom), iso(now), openedAt ? iso(openedAt) : null], inline);
}

/**
 * The per-user feature SQL. Parameters: $1 cutoff, $2 label end ('train') or start of the activity window
 * ('score'), $3 run time, $4 opening time. The 'train' text is exactly what eventFeatureQuery always returned.
 * With sequenceLength > 0 the same aggregate pass also collects the user's last events before the cutoff (never
 * the label window's) and the SELECT appends their columns; with 0 the text is unchanged.
 */
function userFeatureSql(mode: 'train' | 'score', sequenceLength: number): string {
  const train = mode === 'train';
  const seqAgg = sequenceLength ? `,\n    ${sequenceAggregatesSql(sequenceLength, pre)}` : '';
  const seqCols = sequenceLength ? `,\n  ${sequenceColumnsSql(sequenceLength)}` : '';
  return `
WITH valid AS (
  -- one row per (user_id, event_id): an exported event id names one event of one user, and ordering by user
  -- lets the dedup stream off the (user_id, occurred_at) index into the per-user aggregate without a global sort.
  -- ${train ? 'Nothing at or after cutoff + horizon is read at all.' : 'Nothing at or after the cutoff is read at all.'}
  SELECT DISTINCT ON (e.user_id, e.event_id) e.event_id, e.user_id, e.session_id, e.event_type, e.price, e.occurred_at,
         p.category, p.brand
  FROM shop.events e
  LEFT JOIN shop.products p ON p.product_id = e.product_id
  WHERE e.occurred_at < ${train ? '$2' : '$1'}::timestamptz
    AND ${validWhere('$3::timestamptz', openedSql('$4'))}
  ORDER BY e.user_id, e.event_id, e.occurred_at, e.event_type, e.price, e.session_id, e.product_id, e.rating
),
agg AS (
  SELECT v.user_id,
    ${train ? `bool_or(${is('purchase')} AND v.occurred_at >= $1::timestamptz) AS label` : 'max(v.occurred_at) AS last_valid_at'},
    ${daysSince('view')} AS days_since_last_view,
    ${daysSince('cart')} AS days_since_last_cart,
    ${daysSince('purchase')} AS days_since_last_purchase,
    ${count('view', 1)} AS views_1d, ${count('view', 7)} AS views_7d, ${count('view', 30)} AS views_30d,
    ${count('view', 90)} AS views_90d,
    ${count('cart', 1)} AS carts_1d, ${count('cart', 7)} AS carts_7d, ${count('cart', 30)} AS carts_30d,
    ${count('remove_from_cart', 30)} AS removes_30d,
    ${count('purchase', 1)} AS purchases_1d, ${count('purchase', 7)} AS purchases_7d,
    ${count('purchase', 30)} AS purchases_30d, ${count('purchase', 90)} AS purchases_90d,
    ${count('cart', 90)} AS carts_90d,
    coalesce(sum(v.price) FILTER (WHERE ${is('purchase')} AND ${pre} AND ${since(90)}), 0) AS spend_90d,
    count(DISTINCT v.category) FILTER (WHERE ${views30}) AS distinct_categories_30d,
    count(DISTINCT v.brand) FILTER (WHERE ${views30}) AS distinct_brands_30d,
    count(*) FILTER (WHERE ${views30} AND v.category IS NOT NULL) AS category_views_30d,
    count(*) FILTER (WHERE ${views30} AND v.brand IS NOT NULL) AS brand_views_30d,
    ${topShare('category')} AS top_category_views_30d,
    ${topShare('brand')} AS top_brand_views_30d,
    count(DISTINCT v.session_id) FILTER (WHERE ${in30}) AS sessions_30d,
    count(v.session_id) FILTER (WHERE ${in30}) AS session_events_30d,
    -- per session (its events in the window): last - first event time
    (SELECT sum(extract(epoch FROM s.last - s.first)) FROM (SELECT max(t) AS last, min(t) AS first FROM unnest(
      array_agg(v.session_id) FILTER (WHERE ${in30} AND v.session_id IS NOT NULL),
      array_agg(v.occurred_at) FILTER (WHERE ${in30} AND v.session_id IS NOT NULL)) AS x(sid, t) GROUP BY sid) AS s
    ) AS session_seconds_30d,
    avg(v.price) FILTER (WHERE ${views30}) AS mean_view_price_30d,
    ${count('review', 90)} AS reviews_90d${seqAgg}
  FROM valid v
  GROUP BY v.user_id
)
SELECT u.user_id::text AS user_id,
  ${train ? 'coalesce(a.label, false)::int' : '0'} AS label,
  a.days_since_last_view, a.days_since_last_cart, a.days_since_last_purchase,
  ${['views_1d', 'views_7d', 'views_30d', 'views_90d', 'carts_1d', 'carts_7d', 'carts_30d', 'removes_30d',
    'purchases_1d', 'purchases_7d', 'purchases_30d', 'purchases_90d', 'spend_90d']
    .map((c) => `coalesce(a.${c}, 0)::float8 AS ${c}`).join(', ')},
  a.carts_30d::float8 / nullif(a.views_30d, 0) AS cart_view_ratio_30d,
  a.purchases_90d::float8 / nullif(a.carts_90d, 0) AS purchase_cart_ratio_90d,
  coalesce(a.distinct_categories_30d, 0)::float8 AS distinct_categories_30d,
  coalesce(a.distinct_brands_30d, 0)::float8 AS distinct_brands_30d,
  a.top_category_views_30d::float8 / nullif(a.category_views_30d, 0) AS category_concentration_30d,
  a.top_brand_views_30d::float8 / nullif(a.brand_views_30d, 0) AS brand_concentration_30d,
  coalesce(a.sessions_30d, 0)::float8 AS sessions_30d,
  a.session_events_30d::float8 / nullif(a.sessions_30d, 0) AS events_per_session_30d,
  a.session_seconds_30d::float8 / nullif(a.sessions_30d, 0) / 60 AS mean_session_minutes_30d,
  a.mean_view_price_30d::float8 AS mean_view_price_30d,
  coalesce(a.reviews_90d, 0)::float8 AS reviews_90d,
  (extract(epoch FROM $1::timestamptz - u.signup_at) / 86400)::float8 AS tenure_days,
  u.gender, u.age_band, u.region${seqCols}
FROM shop.users u
${train ? 'LEFT JOIN agg a ON a.user_id = u.user_id' : 'JOIN agg a ON a.user_id = u.user_id'}
WHERE u.signup_at < $1::timestamptz${train ? '' : '\n  AND a.last_valid_at >= $2::timestamptz'}
ORDER BY u.user_id`;
}

export interface EventQualityQueryInput extends EventValidityInput, QueryOptions {
  cutoff: Date;
}

/**
 * Invalid rows in shop.events, one reason per row (the first of EVENT_INVALID_REASONS that applies), so
 * total_rows = valid_rows + the reason counts; duplicate_event_id counts the extra copies of a (user_id, event_id)
 * that are otherwise valid, as eventFeatureQuery drops them. Columns (all float8): total_rows, valid_rows, then
 * one per EVENT_INVALID_REASONS in that order, then valid_before_cutoff.
 */
export function eventQualityQuery({ cutoff, now = new Date(), openedAt = null, inline }: EventQualityQueryInput): SqlQuery {
  const sql = `
WITH classified AS (
  SELECT e.user_id, e.event_id, e.occurred_at,
    ${reasonCase('$2::timestamptz', openedSql('$3'))} AS reason
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
  ${EVENT_INVALID_REASONS.filter((r) => r !== 'duplicate_event_id')
    .map((r) => `coalesce(sum(copies) FILTER (WHERE reason = '${r}'), 0)::float8 AS ${r}`).join(',\n  ')},
  coalesce(sum(copies - 1) FILTER (WHERE reason IS NULL), 0)::float8 AS duplicate_event_id,
  count(*) FILTER (WHERE reason IS NULL AND before_cutoff)::float8 AS valid_before_cutoff
FROM per_key`;
  return build(sql, [iso(cutoff), iso(now), openedAt ? iso(openedAt) : null], inline);
}

export interface EventQuarantineQueryInput extends EventValidityInput, QueryOptions {
  /** Only fills the before_cutoff column; every invalid row is returned either way. */
  cutoff?: Date | null;
  /**
   * The run's as-of time (the end of its label window): events stamped at or after it are not this run's data and
   * are left out, so a backfilled night counts what that night saw. Events without a timestamp always count.
   */
  until?: Date | null;
}

/**
 * Every invalid shop.events row, for export (e.g. COPY to S3): event_id, user_id, session_id, product_id (ids as
 * text), event_type, price, rating, occurred_at, reason (one of EVENT_INVALID_REASONS, as counted by
 * eventQualityQuery), before_cutoff (NULL without a cutoff). Of the copies of a valid (user_id, event_id), the one
 * eventFeatureQuery keeps is not returned; the others are, as duplicate_event_id. Deterministic order.
 */
export function eventQuarantineQuery({
  cutoff = null, now = new Date(), openedAt = null, until = null, inline,
}: EventQuarantineQueryInput): SqlQuery {
  const sql = `
WITH classified AS (
  SELECT e.*, ${reasonCase('$2::timestamptz', openedSql('$3'))} AS reason
  FROM shop.events e
  WHERE $4::timestamptz IS NULL OR e.occurred_at IS NULL OR e.occurred_at < $4::timestamptz
),
ranked AS (
  SELECT c.*, CASE WHEN c.reason IS NULL THEN row_number() OVER (
      PARTITION BY c.reason IS NULL, c.user_id, c.event_id
      -- the same order as eventFeatureQuery's DISTINCT ON: the copy it keeps is the first
      ORDER BY c.occurred_at, c.event_type, c.price, c.session_id, c.product_id, c.rating) END AS copy
  FROM classified c
)
SELECT r.event_id::text AS event_id, r.user_id::text AS user_id, r.session_id, r.product_id::text AS product_id,
  r.event_type, r.price, r.rating, r.occurred_at,
  coalesce(r.reason, 'duplicate_event_id') AS reason,
  r.occurred_at < $1::timestamptz AS before_cutoff
FROM ranked r
WHERE r.reason IS NOT NULL OR r.copy > 1
ORDER BY reason, r.user_id, r.event_id, r.occurred_at, r.event_type, r.price, r.session_id, r.product_id, r.rating`;
  return build(sql, [cutoff ? iso(cutoff) : null, iso(now), openedAt ? iso(openedAt) : null, until ? iso(until) : null], inline);
}

/** How many shop.events rows a run's window holds: those stamped before its as-of time, and those without a timestamp. */
export function eventCountQuery(until: Date | null): SqlQuery {
  return {
    sql: 'SELECT count(*)::float8 AS n FROM shop.events e WHERE $1::timestamptz IS NULL OR e.occurred_at IS NULL OR e.occurred_at < $1::timestamptz',
    params: [until ? iso(until) : null],
  };
}

export interface CutoffCheckQueryInput extends EventValidityInput, QueryOptions {
  cutoff: Date;
  horizonDays: number;
}

/**
 * One row to judge a cutoff before building features: valid_before_cutoff and valid_in_window (valid, deduplicated
 * events before the cutoff and in [cutoff, cutoff + horizon); float8) and last_valid_at (timestamptz, NULL when
 * there is no valid event).
 */
export function cutoffCheckQuery({
  cutoff, horizonDays, now = new Date(), openedAt = null, inline,
}: CutoffCheckQueryInput): SqlQuery {
  if (!(horizonDays > 0)) throw new Error(`cutoffCheckQuery: horizonDays must be > 0, got ${horizonDays}`);
  const labelEnd = new Date(cutoff.getTime() + horizonDays * DAY_MS);
  const sql = `
WITH valid AS (
  -- the copy eventFeatureQuery keeps is the earliest
  SELECT min(e.occurred_at) AS occurred_at
  FROM shop.events e
  WHERE ${validWhere('$3::timestamptz', openedSql('$4'))}
  GROUP BY e.user_id, e.event_id
)
SELECT count(*) FILTER (WHERE occurred_at < $1::timestamptz)::float8 AS valid_before_cutoff,
  count(*) FILTER (WHERE occurred_at >= $1::timestamptz AND occurred_at < $2::timestamptz)::float8 AS valid_in_window,
  max(occurred_at) AS last_valid_at
FROM valid`;
  return build(sql, [iso(cutoff), iso(labelEnd), iso(now), openedAt ? iso(openedAt) : null], inline);
}

/**
 * The fast form of cutoffCheckQuery for the pipeline: whether any valid event lies before the cutoff and in the
 * label window (EXISTS probes that stop at the first match on the occurred_at index; a duplicate's first copy
 * is valid, so existence needs no dedup), and the last valid event time (a backward index scan).
 * Columns: has_valid_before (bool), has_valid_in_window (bool), last_valid_at (timestamptz | NULL).
 */
export function cutoffProbeQuery({
  cutoff, horizonDays, now = new Date(), openedAt = null, inline,
}: CutoffCheckQueryInput): SqlQuery {
  if (!(horizonDays > 0)) throw new Error(`cutoffProbeQuery: horizonDays must be > 0, got ${horizonDays}`);
  const labelEnd = new Date(cutoff.getTime() + horizonDays * DAY_MS);
  const valid = validWhere('$3::timestamptz', openedSql('$4'));
  const sql = `
SELECT
  EXISTS (SELECT 1 FROM shop.events e WHERE e.occurred_at < $1::timestamptz AND ${valid}) AS has_valid_before,
  EXISTS (SELECT 1 FROM shop.events e WHERE e.occurred_at >= $1::timestamptz AND e.occurred_at < $2::timestamptz AND ${valid}) AS has_valid_in_window,
  (SELECT e.occurred_at FROM shop.events e WHERE e.occurred_at IS NOT NULL AND ${valid} ORDER BY e.occurred_at DESC LIMIT 1) AS last_valid_at`;
  return build(sql, [iso(cutoff), iso(labelEnd), iso(now), openedAt ? iso(openedAt) : null], inline);
}

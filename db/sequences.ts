/**
 * Event mode, optional: each user's last N valid events strictly before the cutoff as flat columns
 * `seq_<i>_<field>` (i = 1 the most recent), for sequence models. eventFeatureQuery and eventScoringQuery compute
 * them inside their one per-user aggregate pass (the `agg` CTE over the `valid` events aliased `v`).
 */
import { ErrorType, PipelineError } from '../pipeline/errors.js';
import type { FeatureSpec } from './features.js';

/** The fields of one event in a sequence, in column order within a position. */
export const SEQUENCE_FIELDS = [
  { field: 'event_type', kind: 'categorical' },
  /** the product's category (NULL without a product or a category) */
  { field: 'category', kind: 'categorical' },
  { field: 'price', kind: 'numeric' },
  /** hours back to the user's previous (older) valid event before the cutoff; NULL for the oldest one */
  { field: 'hours_since_prev', kind: 'numeric' },
] as const satisfies readonly { field: string; kind: FeatureSpec['kind'] }[];
export type SequenceField = (typeof SEQUENCE_FIELDS)[number]['field'];

/** The longest sequence a run may ask for: every position adds SEQUENCE_FIELDS.length columns. */
export const MAX_SEQUENCE_LENGTH = 64;

export const sequenceColumn = (position: number, field: SequenceField): string => `seq_${position}_${field}`;

const COLUMN = new RegExp(`^seq_([1-9][0-9]*)_(${SEQUENCE_FIELDS.map((f) => f.field).join('|')})$`);

/**
 * The position and field a column name stands for, or null. Exact for event-mode data (whose columns are ours);
 * a table-mode query may name its own columns anything.
 */
export function sequenceColumnOf(name: string): { position: number; field: SequenceField } | null {
  const m = COLUMN.exec(name);
  return m ? { position: Number(m[1]), field: m[2] as SequenceField } : null;
}

/** Whether n is a sequence length a run may use (0 = off); throws InvalidConfig naming `key` otherwise. */
export function checkSequenceLength(n: unknown, key = 'source.sequenceLength'): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_SEQUENCE_LENGTH) {
    throw new PipelineError(
      ErrorType.InvalidConfig,
      `${key} must be an integer from 0 (off) to ${MAX_SEQUENCE_LENGTH}, got ${typeof n === 'number' ? n : typeof n}`,
    );
  }
  return n;
}

/** The columns of the last n events, position-major (seq_1_event_type … seq_n_hours_since_prev); [] for 0. */
export function sequenceFeatureSpecs(n: number): FeatureSpec[] {
  checkSequenceLength(n);
  return Array.from({ length: n }, (_, i) =>
    SEQUENCE_FIELDS.map(({ field, kind }): FeatureSpec => ({ name: sequenceColumn(i + 1, field), kind, sequence: { position: i + 1, field } })),
  ).flat();
}

// Most recent first; event_id breaks ties between events of the same instant (one row per (user, event_id) by then).
const RECENT_FIRST = 'ORDER BY v.occurred_at DESC, v.event_id DESC';

/**
 * The `agg` CTE's extra aggregates: per user, arrays of the valid events matching `before` (the strictly
 * before-the-cutoff condition on `v`), most recent first, cut to n (times to n + 1: the n-th event's gap needs
 * the one before it). A user without such events gets NULL arrays.
 */
export function sequenceAggregatesSql(n: number, before: string): string {
  checkSequenceLength(n);
  const agg = (col: string, len: number, as: string) =>
    `(array_agg(v.${col} ${RECENT_FIRST}) FILTER (WHERE ${before}))[1:${len}] AS ${as}`;
  return [
    agg('event_type', n, 'seq_event_types'),
    agg('category', n, 'seq_categories'),
    agg('price', n, 'seq_prices'),
    agg('occurred_at', n + 1, 'seq_times'),
  ].join(',\n    ');
}

/**
 * The flattened columns of the final SELECT over `agg a`, in sequenceFeatureSpecs order. A subscript past an
 * array's end is NULL, so users with fewer than n events are padded with NULLs.
 */
export function sequenceColumnsSql(n: number): string {
  checkSequenceLength(n);
  const sql: Record<SequenceField, (i: number) => string> = {
    event_type: (i) => `a.seq_event_types[${i}]`,
    category: (i) => `a.seq_categories[${i}]`,
    price: (i) => `a.seq_prices[${i}]::float8`,
    hours_since_prev: (i) => `(extract(epoch FROM a.seq_times[${i}] - a.seq_times[${i + 1}]) / 3600)::float8`,
  };
  return Array.from({ length: n }, (_, k) =>
    SEQUENCE_FIELDS.map(({ field }) => `${sql[field](k + 1)} AS ${sequenceColumn(k + 1, field)}`).join(', '),
  ).join(',\n  ');
}

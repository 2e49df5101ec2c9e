/**
 * The cleaning rules, pure: which entity rows are quarantined and why, which values are repaired, the per-feature
 * statistics the quality ledger keeps, and the data-quality limits a run must meet before any training.
 */
import type { Frame } from './types.js';

/** A label the source could not read (null, or not boolean-like): the row is quarantined as missing_label. */
export const LABEL_MISSING = 255;

export type QuarantineReason = 'null_entity_key' | 'duplicate_entity_key' | 'missing_label' | 'invalid_label';

/**
 * Why row `i` of `frame` cannot be trained on, or null. `seen` holds the keys of earlier rows (across shards): the
 * first row of a key is kept, later ones are duplicates. The row's key is added to `seen`.
 */
export function quarantineReason(frame: Frame, i: number, seen: Set<string>): QuarantineReason | null {
  const id = frame.ids[i];
  let reason: QuarantineReason | null = null;
  if (!id) reason = 'null_entity_key';
  else if (seen.has(id)) reason = 'duplicate_entity_key';
  else if (frame.label[i] === LABEL_MISSING) reason = 'missing_label';
  else if (frame.label[i] !== 0 && frame.label[i] !== 1) reason = 'invalid_label';
  if (id) seen.add(id);
  return reason;
}

interface Stat {
  kind: 'numeric' | 'categorical';
  n: number;
  missing: number;
  min: number;
  max: number;
  sum: number;
  distinct?: Set<string>;
}

/**
 * Per-feature statistics over the kept rows, shard by shard. `add` also repairs: an infinity becomes missing (it
 * is imputed later with train statistics) and is counted as `non_finite:<feature>`.
 */
export class FeatureStats {
  private readonly stats = new Map<string, Stat>();
  readonly repaired: Record<string, number> = {};

  add(frame: Frame): void {
    for (const [name, col] of Object.entries(frame.numeric)) {
      let s = this.stats.get(name);
      if (!s) this.stats.set(name, (s = { kind: 'numeric', n: 0, missing: 0, min: Infinity, max: -Infinity, sum: 0 }));
      for (let i = 0; i < col.length; i++) {
        const v = col[i];
        s.n++;
        if (Number.isNaN(v)) s.missing++;
        else if (!Number.isFinite(v)) {
          col[i] = NaN;
          this.repaired[`non_finite:${name}`] = (this.repaired[`non_finite:${name}`] ?? 0) + 1;
          s.missing++;
        } else {
          if (v < s.min) s.min = v;
          if (v > s.max) s.max = v;
          s.sum += v;
        }
      }
    }
    for (const [name, col] of Object.entries(frame.categorical)) {
      let s = this.stats.get(name);
      if (!s) this.stats.set(name, (s = { kind: 'categorical', n: 0, missing: 0, min: 0, max: 0, sum: 0, distinct: new Set() }));
      for (const v of col) {
        s.n++;
        if (v === null) s.missing++;
        else if (s.distinct!.size < 10_000) s.distinct!.add(v);
      }
    }
  }

  /** The ledger's per-feature entry: missing rate, range or distinct count, PSI and drift profile. */
  finish(psi: Record<string, number>, profiles: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, s] of this.stats) {
      const present = s.n - s.missing;
      const missingRate = s.n ? s.missing / s.n : 0;
      out[name] =
        s.kind === 'numeric'
          ? { kind: 'numeric', missingRate, min: present ? s.min : null, max: present ? s.max : null, mean: present ? s.sum / present : null, psi: psi[name] ?? null, profile: profiles[name] }
          : { kind: 'categorical', missingRate, distinct: s.distinct!.size, psi: psi[name] ?? null, profile: profiles[name] };
    }
    return out;
  }
}

export interface QualityLimits {
  maxQuarantineRate: number;
  maxPsi: number;
}

/**
 * The data-quality limits a run must meet (one message per breach, empty when it meets them): the share of
 * quarantined entity rows and of invalid source events, and each feature's PSI against the drift baseline.
 */
export function qualityProblems(q: {
  rowsIn: number;
  rowsOut: number;
  quarantined: Record<string, number>;
  eventQuarantineRate?: number;
  psi: Record<string, number>;
  baselineRunId: string | null;
  limits: QualityLimits;
}): string[] {
  const problems: string[] = [];
  const rate = q.rowsIn ? (q.rowsIn - q.rowsOut) / q.rowsIn : 0;
  if (rate > q.limits.maxQuarantineRate) {
    problems.push(`${(rate * 100).toFixed(2)} % of entity rows were quarantined (${JSON.stringify(q.quarantined)}), above quality.maxQuarantineRate ${q.limits.maxQuarantineRate}`);
  }
  if ((q.eventQuarantineRate ?? 0) > q.limits.maxQuarantineRate) {
    problems.push(`${(q.eventQuarantineRate! * 100).toFixed(2)} % of source events were invalid, above quality.maxQuarantineRate ${q.limits.maxQuarantineRate}`);
  }
  const drifted = Object.entries(q.psi).filter(([, v]) => v > q.limits.maxPsi);
  if (drifted.length) {
    problems.push(`feature drift against run ${q.baselineRunId}: ${drifted.map(([k, v]) => `${k} PSI ${v.toFixed(3)}`).join(', ')} above quality.maxPsi ${q.limits.maxPsi}`);
  }
  return problems;
}

import { sequenceColumnOf } from '../db/sequences.js';
import { FeatureStats, qualityProblems, quarantineReason } from '../ml/clean.js';
import { DriftProfiler, type FeatureProfile } from '../ml/drift.js';
import { takeRows } from '../ml/preprocess.js';
import type { Frame } from '../ml/types.js';
import type { PipelineConfig } from '../pipeline/config.js';
import { datasetRef, keys, type ArtifactRef, type DatasetRef } from '../store/artifacts.js';
import type { ActivityDeps } from './deps.js';
import { ErrorType, PipelineError } from './errors.js';
import { upsertQuality } from './quality.js';

export interface CleanInput {
  runId: string;
  modelName: string;
  mode: 'events' | 'table';
  raw: DatasetRef;
  quality: PipelineConfig['quality'];
  /** event mode: invalid source events / all source events, checked against the same limit */
  eventQuarantineRate?: number;
}
export interface CleanOutput {
  clean: DatasetRef;
  rowsIn: number;
  rowsOut: number;
  quarantined: Record<string, number>;
  repaired: Record<string, number>;
  /** PSI per feature against the last registered run of the model (empty for a model's first run) */
  drift: Record<string, number>;
  driftBaselineRunId: string | null;
}

export function createCleanActivities(deps: ActivityDeps) {
  const { db, store } = deps;
  return {
    /** Quarantines entity rows that cannot be trained on, repairs what can be, profiles drift, enforces the limits. */
    async cleanData(input: CleanInput): Promise<CleanOutput> {
      return cleanShards(input);
    },
  };

  /**
   * The drift baseline: the latest registered run of the model whose cutoff is before this run's (table mode,
   * without cutoffs: started before it). Never a later night, so a backfilled night is judged as it was in order.
   */
  async function previousProfile(modelName: string, runId: string) {
    const me = await db.db.selectFrom('ml.pipeline_runs').select(['cutoff', 'started_at']).where('run_id', '=', runId).executeTakeFirst();
    let q = db.db
      .selectFrom('ml.data_quality as q')
      .innerJoin('ml.pipeline_runs as r', 'r.run_id', 'q.run_id')
      .select(['q.run_id', 'q.features'])
      .where('r.model_name', '=', modelName)
      .where('r.status', '=', 'registered')
      .where('q.stage', '=', 'clean')
      .where('r.run_id', '<>', runId);
    q = me?.cutoff
      ? q.where('r.cutoff', '<', me.cutoff).orderBy('r.cutoff', 'desc')
      : me
        ? q.where('r.started_at', '<', me.started_at)
        : q;
    const row = await q.orderBy('r.started_at', 'desc').limit(1).executeTakeFirst();
    const features = (row?.features ?? {}) as Record<string, { profile?: FeatureProfile }>;
    const profiles = Object.fromEntries(
      Object.entries(features).flatMap(([k, v]) => (v?.profile ? [[k, v.profile] as const] : [])),
    );
    return { runId: row?.run_id ?? null, profiles };
  }

  async function cleanShards(input: CleanInput): Promise<CleanOutput> {
    const quarantined: Record<string, number> = {};
    const seen = new Set<string>();
    const baseline = await previousProfile(input.modelName, input.runId);
    const profiler = new DriftProfiler(baseline.profiles);
    const stats = new FeatureStats();
    const sequence = new SequenceSummary();
    const cleanRefs: ArtifactRef[] = [];
    const quarantineRefs: ArtifactRef[] = [];
    let rowsIn = 0;

    // shard by shard: memory stays at about one shard whatever the table size
    for (const shardRef of input.raw.shards) {
      const frame = await store.getFrame(shardRef);
      const n = frame.ids.length;
      rowsIn += n;
      const keep: number[] = [];
      const drop: number[] = [];
      for (let i = 0; i < n; i++) {
        const reason = quarantineReason(frame, i, seen);
        if (reason) {
          quarantined[reason] = (quarantined[reason] ?? 0) + 1;
          drop.push(i);
        } else keep.push(i);
      }
      const clean = keep.length === n ? frame : takeRows(frame, keep);
      // Only event mode's columns are ours: a table-mode query may call a column anything.
      const profiled = input.mode === 'events' ? sequence.add(clean) : clean;
      stats.add(profiled);
      profiler.add(profiled);
      if (clean.ids.length) cleanRefs.push(await store.putFrame(keys.clean(input.runId, cleanRefs.length), clean));
      if (drop.length) quarantineRefs.push(await store.putFrame(keys.quarantine(input.runId, quarantineRefs.length), takeRows(frame, drop)));
    }

    const { profiles, psi } = profiler.finish();
    const clean = datasetRef(cleanRefs);
    await upsertQuality(db, {
      run_id: input.runId,
      stage: 'clean',
      rows_in: rowsIn,
      rows_out: clean.rows,
      quarantined: JSON.stringify(quarantined),
      features: JSON.stringify({ ...stats.finish(psi, profiles), ...sequence.finish() }),
      quarantine_uri: quarantineRefs.length ? store.uri(quarantineRefs[0].key) : null,
    });

    // The limits: checked after the ledger is written, so a failed run still shows what it found.
    if (input.mode === 'table' && quarantined.duplicate_entity_key) {
      throw new PipelineError(
        ErrorType.InvalidData,
        // No key values in the message: it lands in the workflow history, which holds no personal data.
        `the entity key has ${quarantined.duplicate_entity_key} duplicate values (the rows are in ${store.uri(quarantineRefs[0].key)}): ` +
          'source.query must return one row per entity',
      );
    }
    if (clean.rows === 0) {
      throw new PipelineError(ErrorType.EmptyDataset, `no rows left after cleaning (${rowsIn} in): ${JSON.stringify(quarantined)}`);
    }
    const problems = qualityProblems({
      rowsIn, rowsOut: clean.rows, quarantined, eventQuarantineRate: input.eventQuarantineRate, psi, baselineRunId: baseline.runId, limits: input.quality,
    });
    if (problems.length) throw new PipelineError(ErrorType.DataQuality, `data quality limits exceeded: ${problems.join('; ')}`);
    return { clean, rowsIn, rowsOut: clean.rows, quarantined, repaired: stats.repaired, drift: psi, driftBaselineRunId: baseline.runId };
  }
}

/**
 * Event mode's last-N-events columns (db/sequences.ts) are kept in the clean data but left out of the per-feature
 * statistics, repairs and drift profiles: NULL padding is normal there, and 4N positional columns would add 4N noisy
 * PSI rows to every drift check. The ledger gets one `sequence` entry instead: length, columns, missing rate.
 */
class SequenceSummary {
  private readonly columns = new Set<string>();
  private length = 0;
  private cells = 0;
  private missing = 0;

  /** The frame without its sequence columns (the same arrays otherwise), after counting their missing cells. */
  add(frame: Frame): Frame {
    const numeric: Frame['numeric'] = {};
    const categorical: Frame['categorical'] = {};
    for (const [name, col] of Object.entries(frame.numeric)) {
      if (!this.note(name)) numeric[name] = col;
      else for (const v of col) this.count(Number.isNaN(v));
    }
    for (const [name, col] of Object.entries(frame.categorical)) {
      if (!this.note(name)) categorical[name] = col;
      else for (const v of col) this.count(v === null);
    }
    return { ...frame, numeric, categorical };
  }

  finish(): Record<string, unknown> {
    if (!this.columns.size) return {};
    return { sequence: { kind: 'sequence', length: this.length, columns: this.columns.size, missingRate: this.cells ? this.missing / this.cells : 0 } };
  }

  private note(name: string): boolean {
    const s = sequenceColumnOf(name);
    if (!s) return false;
    this.columns.add(name);
    this.length = Math.max(this.length, s.position);
    return true;
  }

  private count(missing: boolean) {
    this.cells++;
    if (missing) this.missing++;
  }
}

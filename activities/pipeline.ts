import { Context } from '@temporalio/activity';
import { sql } from 'kysely';
import { cutoffProbeQuery, EVENT_FEATURES, EVENT_INVALID_REASONS, eventCountQuery, eventFeatureQuery, eventQuarantineQuery } from '../db/features.js';
import { DriftProfiler, type FeatureProfile } from '../ml/drift.js';
import { fitPreprocessor, takeRows } from '../ml/preprocess.js';
import { assignSplit } from '../ml/split.js';
import type { FeatureSpec } from '../ml/types.js';
import { concatFrames } from '../store/arrow.js';
import { datasetRef, keys, type ArtifactRef, type DatasetRef } from '../store/artifacts.js';
import { applyAsOf } from '../schedules/as-of.js';
import { configHash, parsePipelineConfig, type PipelineConfig } from './config.js';
import type { ActivityDeps } from './deps.js';
import { ErrorType, PipelineError, toFailure } from './errors.js';
import { copyTextShards, copyToShards, describeColumns, describeRows, inlineParams, LABEL_MISSING, planTableSource, sourceFor, withSource } from './source.js';

export interface StartRunInput {
  runId: string;
  workflowId: string;
  config: unknown;
  trigger?: string;
  /** the run's as-of time (a scheduled run's scheduled time): see applyAsOf */
  asOf?: string;
}
export interface StartRunOutput {
  config: PipelineConfig;
  configHash: string;
  codeVersion: string;
}

export interface FinishRunInput {
  runId: string;
  status: 'registered' | 'rejected' | 'failed' | 'cancelled';
  modelVersion?: number;
  metrics?: Record<string, number>;
  error?: { type: string; message: string };
}

export interface IngestInput {
  runId: string;
  source: PipelineConfig['source'];
}
export interface IngestOutput {
  mode: 'events' | 'table';
  raw: DatasetRef;
  rows: number;
  positives: number;
  features: FeatureSpec[];
  /** event mode: the point in time features are computed at; null in table mode */
  cutoff: string | null;
  horizonDays: number | null;
  /** event mode: source events in, valid, and quarantined per reason */
  events: { total: number; valid: number; quarantined: Record<string, number> } | null;
}

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

export interface SplitInput {
  runId: string;
  clean: DatasetRef;
  features: FeatureSpec[];
  split: PipelineConfig['split'];
}
export type SplitPart = 'train' | 'val' | 'test';
export interface SplitOutput {
  train: ArtifactRef;
  val: ArtifactRef;
  test: ArtifactRef;
  preprocessing: ArtifactRef;
  sizes: Record<SplitPart, number>;
  positiveRates: Record<SplitPart, number>;
  /** sha256 of the cleaned data snapshot the splits were cut from: the model's data lineage. */
  dataSha256: string;
}


export function createPipelineActivities(deps: ActivityDeps) {
  const { db, store } = deps;

  return {
    /** Validates the config and opens the run's row; an invalid config is recorded, then fails the run for good. */
    async startRun(input: StartRunInput): Promise<StartRunOutput> {
      const started = new Date();
      let config: PipelineConfig | undefined;
      let failure: PipelineError | undefined;
      try {
        // The as-of cutoff goes into the config itself, so ingest uses it and ml.pipeline_runs (cutoff, config hash) shows it.
        config = applyAsOf(parsePipelineConfig(input.config), input.asOf);
      } catch (err) {
        if (!(err instanceof PipelineError)) throw err;
        failure = err;
      }
      const modelName =
        config?.modelName ?? String((input.config as { modelName?: unknown } | null)?.modelName ?? 'unknown');
      await db.db
        .insertInto('ml.pipeline_runs')
        .values({
          run_id: input.runId,
          workflow_id: input.workflowId,
          model_name: modelName,
          status: failure ? 'failed' : 'running',
          trigger: input.trigger ?? 'manual',
          horizon_days: config?.source.kind === 'events' ? config.source.horizonDays : null,
          cutoff: config?.source.kind === 'events' ? config.source.cutoff ?? null : null,
          config: JSON.stringify(config ?? input.config ?? null),
          config_hash: config ? configHash(config) : 'invalid',
          code_version: deps.codeVersion,
          finished_at: failure ? new Date() : null,
          error_type: failure?.type ?? null,
          error_message: failure?.message ?? null,
        })
        .onConflict((oc) => oc.column('run_id').doNothing())
        .execute();
      // The validation is a step like the others: analysts see it (and its failure) in ml.run_steps.
      const step = {
        run_id: input.runId,
        step: 'validate',
        trial_id: '',
        status: failure ? ('failed' as const) : ('succeeded' as const),
        attempt: Context.current().info.attempt,
        worker: Context.current().info.taskQueue,
        started_at: started,
        finished_at: new Date(),
        duration_ms: Date.now() - started.getTime(),
        detail: JSON.stringify(config ? { configHash: configHash(config), modelName } : null),
        error_type: failure?.type ?? null,
        error_message: failure?.message ?? null,
      };
      await db.db
        .insertInto('ml.run_steps')
        .values(step)
        .onConflict((oc) => oc.columns(['run_id', 'step', 'trial_id', 'rung', 'attempt']).doUpdateSet(step))
        .execute();
      if (failure) throw toFailure(failure);
      return { config: config!, configHash: configHash(config!), codeVersion: deps.codeVersion };
    },

    async finishRun(input: FinishRunInput): Promise<void> {
      await db.db
        .updateTable('ml.pipeline_runs')
        .set({
          status: input.status,
          finished_at: sql`coalesce(finished_at, now())`,
          model_version: input.modelVersion ?? null,
          metrics: input.metrics ? JSON.stringify(input.metrics) : null,
          error_type: input.error?.type ?? null,
          error_message: input.error?.message.slice(0, 4000) ?? null,
        })
        .where('run_id', '=', input.runId)
        .execute();
    },

    /**
     * Builds one row per entity in Postgres — point-in-time features from events, or a table-mode query — and
     * streams it out with COPY into Arrow shards in S3. Invalid source events are exported and counted, not dropped.
     */
    async ingestSource(input: IngestInput): Promise<IngestOutput> {
      return (input.source.kind === 'table' ? ingestTable(input.runId, input.source) : ingestEvents(input.runId, input.source));
    },

    /** Quarantines entity rows that cannot be trained on, repairs what can be, profiles drift, enforces the limits. */
    async cleanData(input: CleanInput): Promise<CleanOutput> {
      return cleanShards(input);
    },

    /** Seeded-hash split by entity key, then preprocessing fit on the train split only. */
    async splitData(input: SplitInput): Promise<SplitOutput> {
      const frame = concatFrames(await Promise.all(input.clean.shards.map((s) => store.getFrame(s))));
      const ratios = { train: input.split.train, val: input.split.val, test: input.split.test };
      const idx: Record<SplitPart, number[]> = { train: [], val: [], test: [] };
      frame.ids.forEach((id, i) => idx[assignSplit(id, input.split.seed, ratios)].push(i));
      const parts = { train: takeRows(frame, idx.train), val: takeRows(frame, idx.val), test: takeRows(frame, idx.test) };
      const sizes = {} as Record<SplitPart, number>;
      const positiveRates = {} as Record<SplitPart, number>;
      for (const part of ['train', 'val', 'test'] as const) {
        const labels = parts[part].label;
        const pos = labels.reduce((a, b) => a + b, 0);
        sizes[part] = labels.length;
        positiveRates[part] = labels.length ? pos / labels.length : 0;
        if (pos === 0 || pos === labels.length) {
          throw new PipelineError(
            ErrorType.SingleClassLabel,
            `the ${part} split (${labels.length} rows) has only one label class (${pos} positives): ` +
              'the label window may be empty or the data too small; check source.cutoff and source.horizonDays',
          );
        }
      }
      const pre = fitPreprocessor(parts.train, input.features);
      const [train, val, test, preprocessing] = await Promise.all([
        store.putFrame(keys.split(input.runId, 'train'), parts.train),
        store.putFrame(keys.split(input.runId, 'val'), parts.val),
        store.putFrame(keys.split(input.runId, 'test'), parts.test),
        store.putJson(keys.preprocessing(input.runId), pre),
      ]);
      await upsertQuality({
        run_id: input.runId,
        stage: 'split',
        rows_in: frame.ids.length,
        rows_out: frame.ids.length,
        quarantined: JSON.stringify({}),
        features: JSON.stringify({ sizes, positiveRates, seed: input.split.seed, dataSha256: input.clean.sha256 }),
      });
      return { train, val, test, preprocessing, sizes, positiveRates, dataSha256: input.clean.sha256 };
    
    },
  };

  async function upsertQuality(values: {
    run_id: string;
    stage: string;
    rows_in: number;
    rows_out: number;
    quarantined: string;
    features: string;
    quarantine_uri?: string | null;
  }) {
    await db.db
      .insertInto('ml.data_quality')
      .values(values)
      .onConflict((oc) => oc.columns(['run_id', 'stage']).doUpdateSet(values))
      .execute();
  }

  async function ingestEvents(runId: string, source: EventSource): Promise<IngestOutput> {
    const now = new Date();
    const horizonDays = source.horizonDays;
    const openedAt = source.openedAt ? new Date(source.openedAt) : null;
    const cutoff = source.cutoff ? new Date(source.cutoff) : await defaultCutoff(horizonDays);
    const windowEnd = new Date(cutoff.getTime() + horizonDays * 86_400_000);
    if (windowEnd > now) {
      throw new PipelineError(
        ErrorType.InvalidData,
        `the label window [${cutoff.toISOString()}, ${windowEnd.toISOString()}) has not ended yet: labels would be incomplete; choose an earlier source.cutoff`,
      );
    }
    // shop.* is read as the least-privilege source role, never as the main (possibly superuser) connection
    const sourceDb = sourceFor(deps);
    const check = cutoffProbeQuery({ cutoff, horizonDays, now: windowEnd, openedAt });
    const c = (await withSource(sourceDb, (client) => client.query(check.sql, check.params))).rows[0] as { has_valid_before: boolean; has_valid_in_window: boolean; last_valid_at: Date | null };
    if (!c.has_valid_before) {
      throw new PipelineError(ErrorType.EmptyDataset, `shop.events has no valid events before the cutoff ${cutoff.toISOString()}: choose a later source.cutoff or load events`);
    }
    if (!c.has_valid_in_window) {
      throw new PipelineError(
        ErrorType.EmptyDataset,
        `shop.events has no valid events in the label window [${cutoff.toISOString()}, ${windowEnd.toISOString()}) ` +
          `(last valid event ${c.last_valid_at ? new Date(c.last_valid_at).toISOString() : 'none'}): choose an earlier source.cutoff or a longer source.horizonDays`,
      );
    }

    const features = eventFeatureQuery({ cutoff, horizonDays, now: windowEnd, openedAt });
    // Point in time: the quality ledger counts the events of this run's window (before its as-of time, the end of
    // the label window), so a night backfilled after later nights counts exactly what it counted when it ran.
    const quarantine = eventQuarantineQuery({ now: windowEnd, openedAt, until: windowEnd });
    const count = eventCountQuery(windowEnd);
    // Two scans side by side on two connections: the feature query, and the export of every invalid event with
    // its reason (whose per-reason counts are the quality ledger, so no third scan counts them again).
    const [copied, quarantined, total] = await Promise.all([
      withSource(sourceDb, (client) =>
        copyToShards({
          client,
          select: inlineParams(features.sql, features.params),
          specs: EVENT_FEATURES,
          store,
          keyOf: (i) => keys.raw(runId, i),
        }),
      ),
      // invalid source events, exported with their reason and counted per reason
      withSource(sourceDb, async (client) => {
        const select = inlineParams(quarantine.sql, quarantine.params);
        const columns = (await describeColumns(client, select)).map((f) => f.name);
        return copyTextShards({ client, select, columns, countBy: 'reason', store, keyOf: (i) => keys.rawQuarantine(runId, i) });
      }),
      withSource(sourceDb, (client) => client.query(count.sql, count.params)).then((r) => Number(r.rows[0].n)),
    ]);
    if (copied.dataset.rows === 0) {
      throw new PipelineError(
        ErrorType.EmptyDataset,
        `no users signed up before the cutoff ${cutoff.toISOString()} in shop.users: seed a shop (npx propensity seed) or choose a later source.cutoff`,
      );
    }
    const reasons: Record<string, number> = Object.fromEntries(EVENT_INVALID_REASONS.map((r) => [r, quarantined.counts[r] ?? 0]));
    const invalid = Object.values(quarantined.counts).reduce((a, b) => a + b, 0);
    const valid = total - invalid;
    await upsertQuality({
      run_id: runId,
      stage: 'events',
      rows_in: total,
      rows_out: valid,
      quarantined: JSON.stringify(reasons),
      features: JSON.stringify({}),
      quarantine_uri: quarantined.refs.length ? store.uri(quarantined.refs[0].key) : null,
    });
    await db.db.updateTable('ml.pipeline_runs').set({ cutoff }).where('run_id', '=', runId).execute();
    return {
      mode: 'events',
      raw: copied.dataset,
      rows: copied.dataset.rows,
      positives: copied.positives,
      features: EVENT_FEATURES.map((f) => ({ name: f.name, kind: f.kind })),
      cutoff: cutoff.toISOString(),
      horizonDays,
      events: { total, valid, quarantined: reasons },
    };
  }

  async function ingestTable(runId: string, source: TableSource): Promise<IngestOutput> {
    // source.query runs as the least-privilege source role, read only, after the parser check in planTableSource
    const copied = await withSource(sourceFor(deps), async (client) => {
      const plan = await planTableSource(client, source);
      const out = await copyToShards({ client, select: plan.select, specs: plan.features, store, keyOf: (i) => keys.raw(runId, i), textNumeric: plan.textNumeric });
      return { ...out, features: plan.features };
    });
    if (copied.badLabels.rows > 0) {
      // row numbers, never the values: the message reaches ml.pipeline_runs and the workflow history
      throw new PipelineError(
        ErrorType.InvalidData,
        `label column "${source.label}" has ${describeRows(copied.badLabels)} that are not boolean-like ` +
          '(the values are not shown); use true/false, 1/0, yes/no or t/f',
      );
    }
    if (copied.dataset.rows === 0) throw new PipelineError(ErrorType.EmptyDataset, 'source.query returned no rows');
    return {
      mode: 'table',
      raw: copied.dataset,
      rows: copied.dataset.rows,
      positives: copied.positives,
      features: copied.features,
      cutoff: null,
      horizonDays: null,
      events: null,
    };
  }

  async function defaultCutoff(horizonDays: number): Promise<Date> {
    // shop.events is source data: read as the source role, like the ingest scans
    const { rows } = await withSource(sourceFor(deps), (client) =>
      client.query(
        `select date_trunc('day', max(occurred_at)) - make_interval(days => $1) as cutoff
           from shop.events where occurred_at <= now()`,
        [horizonDays],
      ),
    );
    if (!rows[0]?.cutoff) {
      throw new PipelineError(
        ErrorType.EmptyDataset,
        'shop.events has no events with a timestamp: seed a shop (npx propensity seed) or import events first',
      );
    }
    return rows[0].cutoff as Date;
  }

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
    const repaired: Record<string, number> = {};
    const count = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);
    const seen = new Set<string>();
    const baseline = await previousProfile(input.modelName, input.runId);
    const profiler = new DriftProfiler(baseline.profiles);
    const stats = new Map<string, { kind: 'numeric' | 'categorical'; n: number; missing: number; min: number; max: number; sum: number; distinct?: Set<string> }>();
    const cleanRefs: ArtifactRef[] = [];
    const quarantineRefs: ArtifactRef[] = [];
    let rowsIn = 0;

    for (const shardRef of input.raw.shards) {
      const frame = await store.getFrame(shardRef);
      const n = frame.ids.length;
      rowsIn += n;
      const keep: number[] = [];
      const drop: number[] = [];
      for (let i = 0; i < n; i++) {
        const id = frame.ids[i];
        let reason: string | null = null;
        if (!id) reason = 'null_entity_key';
        else if (seen.has(id)) reason = 'duplicate_entity_key';
        else if (frame.label[i] === LABEL_MISSING) reason = 'missing_label';
        else if (frame.label[i] !== 0 && frame.label[i] !== 1) reason = 'invalid_label';
        if (id) seen.add(id);
        if (reason) {
          count(quarantined, reason);
          drop.push(i);
        } else keep.push(i);
      }
      const clean = keep.length === n ? frame : takeRows(frame, keep);
      for (const [name, col] of Object.entries(clean.numeric)) {
        let s = stats.get(name);
        if (!s) stats.set(name, (s = { kind: 'numeric', n: 0, missing: 0, min: Infinity, max: -Infinity, sum: 0 }));
        for (let i = 0; i < col.length; i++) {
          const v = col[i];
          s.n++;
          if (Number.isNaN(v)) s.missing++;
          else if (!Number.isFinite(v)) {
            col[i] = NaN; // infinities become missing, imputed later with train statistics
            count(repaired, `non_finite:${name}`);
            s.missing++;
          } else {
            if (v < s.min) s.min = v;
            if (v > s.max) s.max = v;
            s.sum += v;
          }
        }
      }
      for (const [name, col] of Object.entries(clean.categorical)) {
        let s = stats.get(name);
        if (!s) stats.set(name, (s = { kind: 'categorical', n: 0, missing: 0, min: 0, max: 0, sum: 0, distinct: new Set() }));
        for (const v of col) {
          s.n++;
          if (v === null) s.missing++;
          else if (s.distinct!.size < 10_000) s.distinct!.add(v);
        }
      }
      profiler.add(clean);
      if (clean.ids.length) cleanRefs.push(await store.putFrame(keys.clean(input.runId, cleanRefs.length), clean));
      if (drop.length) quarantineRefs.push(await store.putFrame(keys.quarantine(input.runId, quarantineRefs.length), takeRows(frame, drop)));
    }

    const { profiles, psi } = profiler.finish();
    const featureStats: Record<string, unknown> = {};
    for (const [name, s] of stats) {
      const present = s.n - s.missing;
      featureStats[name] =
        s.kind === 'numeric'
          ? {
              kind: 'numeric',
              missingRate: s.n ? s.missing / s.n : 0,
              min: present ? s.min : null,
              max: present ? s.max : null,
              mean: present ? s.sum / present : null,
              psi: psi[name] ?? null,
              profile: profiles[name],
            }
          : { kind: 'categorical', missingRate: s.n ? s.missing / s.n : 0, distinct: s.distinct!.size, psi: psi[name] ?? null, profile: profiles[name] };
    }
    const clean = datasetRef(cleanRefs);
    await upsertQuality({
      run_id: input.runId,
      stage: 'clean',
      rows_in: rowsIn,
      rows_out: clean.rows,
      quarantined: JSON.stringify(quarantined),
      features: JSON.stringify(featureStats),
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
    const problems: string[] = [];
    const rate = rowsIn ? (rowsIn - clean.rows) / rowsIn : 0;
    if (rate > input.quality.maxQuarantineRate) {
      problems.push(`${(rate * 100).toFixed(2)} % of entity rows were quarantined (${JSON.stringify(quarantined)}), above quality.maxQuarantineRate ${input.quality.maxQuarantineRate}`);
    }
    if ((input.eventQuarantineRate ?? 0) > input.quality.maxQuarantineRate) {
      problems.push(`${(input.eventQuarantineRate! * 100).toFixed(2)} % of source events were invalid, above quality.maxQuarantineRate ${input.quality.maxQuarantineRate}`);
    }
    const drifted = Object.entries(psi).filter(([, v]) => v > input.quality.maxPsi);
    if (drifted.length) {
      problems.push(
        `feature drift against run ${baseline.runId}: ${drifted.map(([k, v]) => `${k} PSI ${v.toFixed(3)}`).join(', ')} above quality.maxPsi ${input.quality.maxPsi}`,
      );
    }
    if (problems.length) throw new PipelineError(ErrorType.DataQuality, `data quality limits exceeded: ${problems.join('; ')}`);
    return { clean, rowsIn, rowsOut: clean.rows, quarantined, repaired, drift: psi, driftBaselineRunId: baseline.runId };
  }
}

type EventSource = Extract<PipelineConfig['source'], { kind: 'events' }>;
type TableSource = Extract<PipelineConfig['source'], { kind: 'table' }>;

import { sql } from 'kysely';
import { EVENT_FEATURES, eventFeatureQuery, eventQualityQuery } from '../db/features.js';
import { fitPreprocessor, takeRows } from '../ml/preprocess.js';
import { assignSplit } from '../ml/split.js';
import type { FeatureSpec, Frame } from '../ml/types.js';
import { keys, type ArtifactRef } from '../store/artifacts.js';
import { configHash, parsePipelineConfig, type PipelineConfig } from './config.js';
import type { ActivityDeps } from './deps.js';
import { ErrorType, PipelineError, toFailure } from './errors.js';
import { recordStep } from './steps.js';

export interface StartRunInput {
  runId: string;
  workflowId: string;
  config: unknown;
  trigger?: string;
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
  cutoff?: string;
  horizonDays: number;
}
export interface IngestOutput {
  raw: ArtifactRef;
  rows: number;
  positives: number;
  cutoff: string;
  horizonDays: number;
  features: FeatureSpec[];
  events: Record<string, number>;
}

export interface CleanInput {
  runId: string;
  raw: ArtifactRef;
}
export interface CleanOutput {
  clean: ArtifactRef;
  rowsIn: number;
  rowsOut: number;
  quarantined: Record<string, number>;
  repaired: Record<string, number>;
}

export interface SplitInput {
  runId: string;
  clean: ArtifactRef;
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

const INVALID_LABEL = 255;

export function createPipelineActivities(deps: ActivityDeps) {
  const { db, store } = deps;

  return {
    /** Validates the config and opens the run's row; an invalid config is recorded, then fails the run for good. */
    async startRun(input: StartRunInput): Promise<StartRunOutput> {
      let config: PipelineConfig | undefined;
      let failure: PipelineError | undefined;
      try {
        config = parsePipelineConfig(input.config);
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
          horizon_days: config?.source.horizonDays ?? null,
          cutoff: config?.source.cutoff ?? null,
          config: JSON.stringify(config ?? input.config ?? null),
          config_hash: config ? configHash(config) : 'invalid',
          code_version: deps.codeVersion,
          finished_at: failure ? new Date() : null,
          error_type: failure?.type ?? null,
          error_message: failure?.message ?? null,
        })
        .onConflict((oc) => oc.column('run_id').doNothing())
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

    /** Builds point-in-time features per user in Postgres and stores them as an Arrow claim check. */
    async ingestEvents(input: IngestInput): Promise<IngestOutput> {
      return recordStep(
        deps,
        { runId: input.runId, step: 'ingest' },
        async () => {
          const cutoff = input.cutoff ? new Date(input.cutoff) : await defaultCutoff(input.horizonDays);
          const now = new Date();
          const { sql: text, params } = eventFeatureQuery({ cutoff, horizonDays: input.horizonDays, now });
          const { rows } = await db.pool.query(text, params);
          if (rows.length === 0) {
            throw new PipelineError(
              ErrorType.EmptyDataset,
              `no users signed up before the cutoff ${cutoff.toISOString()} in shop.users: seed a shop (npx propensity seed) or choose a later source.cutoff`,
            );
          }
          const frame = rowsToFrame(rows, EVENT_FEATURES);
          const quality = eventQualityQuery({ cutoff, now });
          const { rows: q } = await db.pool.query(quality.sql, quality.params);
          const events = Object.fromEntries(Object.entries(q[0] ?? {}).map(([k, v]) => [k, Number(v)]));
          // Invalid source events are never silently dropped: each reason is counted for analysts.
          const { total_rows = 0, valid_rows = 0, valid_before_cutoff: _, ...reasons } = events;
          const eventQuality = {
            run_id: input.runId,
            stage: 'events',
            rows_in: total_rows,
            rows_out: valid_rows,
            quarantined: JSON.stringify(reasons),
            features: JSON.stringify({}),
          };
          await db.db
            .insertInto('ml.data_quality')
            .values(eventQuality)
            .onConflict((oc) => oc.columns(['run_id', 'stage']).doUpdateSet(eventQuality))
            .execute();
          await db.db
            .updateTable('ml.pipeline_runs')
            .set({ cutoff })
            .where('run_id', '=', input.runId)
            .execute();
          const raw = await store.putFrame(keys.raw(input.runId), frame);
          let positives = 0;
          for (const l of frame.label) if (l === 1) positives++;
          return {
            raw,
            rows: frame.ids.length,
            positives,
            cutoff: cutoff.toISOString(),
            horizonDays: input.horizonDays,
            features: EVENT_FEATURES.map((f) => ({ name: f.name, kind: f.kind })),
            events,
          };
        },
        (r) => ({ rows: r.rows, positives: r.positives, cutoff: r.cutoff, events: r.events, uri: store.uri(r.raw.key) }),
      );

      async function defaultCutoff(horizonDays: number): Promise<Date> {
        const { rows } = await db.pool.query(
          `select date_trunc('day', max(occurred_at)) - make_interval(days => $1) as cutoff
             from shop.events where occurred_at <= now()`,
          [horizonDays],
        );
        if (!rows[0]?.cutoff) {
          throw new PipelineError(
            ErrorType.EmptyDataset,
            'shop.events has no events with a timestamp: seed a shop (npx propensity seed) or import events first',
          );
        }
        return rows[0].cutoff as Date;
      }
    },

    /** Quarantines rows that cannot be trained on and repairs what can be, counting every row either way. */
    async cleanData(input: CleanInput): Promise<CleanOutput> {
      return recordStep(
        deps,
        { runId: input.runId, step: 'clean' },
        async () => {
          const frame = await store.getFrame(input.raw);
          const n = frame.ids.length;
          const quarantined: Record<string, number> = {};
          const repaired: Record<string, number> = {};
          const reason = new Array<string | null>(n).fill(null);
          const seen = new Set<string>();
          for (let i = 0; i < n; i++) {
            const id = frame.ids[i];
            if (!id) reason[i] = 'null_entity_key';
            else if (seen.has(id)) reason[i] = 'duplicate_entity_key';
            else if (frame.label[i] !== 0 && frame.label[i] !== 1) reason[i] = 'invalid_label';
            if (id) seen.add(id);
            if (reason[i]) quarantined[reason[i]!] = (quarantined[reason[i]!] ?? 0) + 1;
          }
          const keep: number[] = [];
          const drop: number[] = [];
          reason.forEach((r, i) => (r ? drop : keep).push(i));
          const clean = takeRows(frame, keep);
          const featureStats: Record<string, unknown> = {};
          for (const [name, col] of Object.entries(clean.numeric)) {
            let missing = 0;
            let nonFinite = 0;
            let min = Infinity;
            let max = -Infinity;
            let sum = 0;
            for (let i = 0; i < col.length; i++) {
              const v = col[i];
              if (Number.isNaN(v)) missing++;
              else if (!Number.isFinite(v)) {
                col[i] = NaN; // infinities become missing and are imputed with train statistics later
                nonFinite++;
                missing++;
              } else {
                min = Math.min(min, v);
                max = Math.max(max, v);
                sum += v;
              }
            }
            if (nonFinite) repaired[`non_finite:${name}`] = nonFinite;
            const present = col.length - missing;
            featureStats[name] = {
              kind: 'numeric',
              missingRate: col.length ? missing / col.length : 0,
              min: present ? min : null,
              max: present ? max : null,
              mean: present ? sum / present : null,
            };
          }
          for (const [name, col] of Object.entries(clean.categorical)) {
            const distinct = new Set(col.filter((v) => v !== null));
            const missing = col.filter((v) => v === null).length;
            featureStats[name] = {
              kind: 'categorical',
              missingRate: col.length ? missing / col.length : 0,
              distinct: distinct.size,
            };
          }
          if (clean.ids.length === 0) {
            throw new PipelineError(ErrorType.EmptyDataset, `no rows left after cleaning: ${JSON.stringify(quarantined)}`);
          }
          const cleanRef = await store.putFrame(keys.clean(input.runId), clean);
          const quarantineRef = drop.length ? await store.putFrame(keys.quarantine(input.runId), takeRows(frame, drop)) : null;
          const values = {
            run_id: input.runId,
            stage: 'clean',
            rows_in: n,
            rows_out: clean.ids.length,
            quarantined: JSON.stringify(quarantined),
            features: JSON.stringify(featureStats),
            quarantine_uri: quarantineRef ? store.uri(quarantineRef.key) : null,
          };
          await db.db
            .insertInto('ml.data_quality')
            .values(values)
            .onConflict((oc) => oc.columns(['run_id', 'stage']).doUpdateSet(values))
            .execute();
          return { clean: cleanRef, rowsIn: n, rowsOut: clean.ids.length, quarantined, repaired };
        },
        (r) => ({ rowsIn: r.rowsIn, rowsOut: r.rowsOut, quarantined: r.quarantined, repaired: r.repaired }),
      );
    },

    /** Seeded-hash split by entity key, then preprocessing fit on the train split only. */
    async splitData(input: SplitInput): Promise<SplitOutput> {
      return recordStep(
        deps,
        { runId: input.runId, step: 'split' },
        async () => {
          const frame = await store.getFrame(input.clean);
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
          return { train, val, test, preprocessing, sizes, positiveRates, dataSha256: input.clean.sha256 };
        },
        (r) => ({ sizes: r.sizes, positiveRates: r.positiveRates, dataSha256: r.dataSha256 }),
      );
    },
  };
}

/** pg rows → Frame; int8 and numeric arrive as strings, NULL numerics become NaN (imputed later). */
export function rowsToFrame(rows: Record<string, unknown>[], specs: FeatureSpec[]): Frame {
  const n = rows.length;
  const frame: Frame = { ids: new Array(n), label: new Uint8Array(n), numeric: {}, categorical: {} };
  for (const s of specs) {
    if (s.kind === 'numeric') frame.numeric[s.name] = new Float64Array(n);
    else frame.categorical[s.name] = new Array(n);
  }
  for (let i = 0; i < n; i++) {
    const row = rows[i];
    frame.ids[i] = row.user_id == null ? '' : String(row.user_id);
    const label = row.label == null ? NaN : Number(row.label === true ? 1 : row.label === false ? 0 : row.label);
    frame.label[i] = label === 0 || label === 1 ? label : INVALID_LABEL;
    for (const s of specs) {
      const v = row[s.name];
      if (s.kind === 'numeric') frame.numeric[s.name][i] = v == null ? NaN : Number(v);
      else frame.categorical[s.name][i] = v == null ? null : String(v);
    }
  }
  return frame;
}

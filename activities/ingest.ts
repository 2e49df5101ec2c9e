import { cutoffProbeQuery, EVENT_FEATURES, EVENT_INVALID_REASONS, eventCountQuery, eventFeatureQuery, eventQuarantineQuery } from '../db/features.js';
import { sequenceFeatureSpecs } from '../db/sequences.js';
import { copyTextShards, copyToShards, describeColumns, describeRows, inlineParams, planTableSource, sourceFor, withSource } from '../db/source.js';
import type { FeatureSpec } from '../ml/types.js';
import type { PipelineConfig } from '../pipeline/config.js';
import { keys, type DatasetRef } from '../store/artifacts.js';
import type { ActivityDeps } from './deps.js';
import { ErrorType, PipelineError } from './errors.js';
import { upsertQuality } from './quality.js';

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

type EventSource = Extract<PipelineConfig['source'], { kind: 'events' }>;
type TableSource = Extract<PipelineConfig['source'], { kind: 'table' }>;

export function createIngestActivities(deps: ActivityDeps) {
  const { db, store } = deps;
  return {
    /**
     * Builds one row per entity in Postgres — point-in-time features from events, or a table-mode query — and
     * streams it out with COPY into Arrow shards in S3. Invalid source events are exported and counted, not dropped.
     */
    async ingestSource(input: IngestInput): Promise<IngestOutput> {
      return (input.source.kind === 'table' ? ingestTable(input.runId, input.source) : ingestEvents(input.runId, input.source));
    },
  };

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

    // absent in configs written before the key existed (and in their recorded histories): off
    const sequenceLength = source.sequenceLength ?? 0;
    const features = eventFeatureQuery({ cutoff, horizonDays, now: windowEnd, openedAt, sequenceLength });
    const specs = [...EVENT_FEATURES, ...sequenceFeatureSpecs(sequenceLength)];
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
          specs,
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
    await upsertQuality(db, {
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
      features: specs.map((f) => (f.sequence ? { name: f.name, kind: f.kind, sequence: { ...f.sequence } } : { name: f.name, kind: f.kind })),
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
}

import type pg from 'pg';
import { EVENT_FEATURES, eventScoringQuery } from '../db/features.js';
import { sequenceFeatureSpecs } from '../db/sequences.js';
import { copyToShards, ident, planTableSource, sourceFor, withSource } from '../db/source.js';
import { assertBuiltStatement, checkedSourceQuery } from '../db/source-query.js';
import { stepColumns, type Preprocessor } from '../ml/preprocess.js';
import type { FeatureSpec } from '../ml/types.js';
import type { PipelineConfig } from '../pipeline/config.js';
import { keys, type DatasetRef } from '../store/artifacts.js';
import type { ActivityDeps } from './deps.js';
import { ErrorType, PipelineError } from './errors.js';
import { beat } from './heartbeat.js';
import { storedRunConfig, type BuildScoringFeaturesInput, type BuildScoringFeaturesOutput } from './score.js';

/** Source reads of a scoring run: one consistent snapshot, read only (withSource checks the role). */
const SOURCE_SNAPSHOT = 'BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY';

export const scoringKeys = {
  features: (temporalRunId: string, shard: number) =>
    `scoring/${temporalRunId}/features/part-${String(shard).padStart(5, '0')}.arrow`,
};

/** The features of the entities a score run scores: built point in time in Postgres as the source role, streamed to Arrow. */
export function createScoreFeatureActivities(deps: ActivityDeps) {
  const { db, store } = deps;

  async function buildEvents(input: BuildScoringFeaturesInput, config: PipelineConfig): Promise<DatasetRef> {
    const source = config.source.kind === 'events' ? config.source : null;
    const cutoff = new Date(input.asOf!);
    // The sequence length the model was trained with: its training run's stored config, the same value that run's
    // ingest read (a resume reuses an ingest only when the source section is unchanged, pipeline/resume.ts).
    // Absent in runs from before the key existed: 0, no sequence columns, the query exactly as it always was.
    const sequenceLength = source?.sequenceLength ?? 0;
    const q = eventScoringQuery({
      cutoff,
      activeDays: input.activeDays!,
      now: new Date(),
      openedAt: source?.openedAt ? new Date(source.openedAt) : null,
      inline: true,
      sequenceLength,
    });
    // shop.* is read as the least-privilege source role, never as the main (possibly superuser) connection
    return withSource(
      sourceFor(deps),
      async (client) => {
        const copied = await copyToShards({
          client,
          select: q.sql,
          specs: [...EVENT_FEATURES, ...sequenceFeatureSpecs(sequenceLength)],
          store,
          keyOf: (i) => scoringKeys.features(input.temporalRunId, i),
        });
        return copied.dataset;
      },
      SOURCE_SNAPSHOT,
    );
  }

  async function buildTable(input: BuildScoringFeaturesInput, config: PipelineConfig): Promise<DatasetRef> {
    if (config.source.kind !== 'table') throw new PipelineError(ErrorType.InvalidData, `run ${input.model.runId} is not a table-mode run`);
    const source = config.source;
    const pre = JSON.parse(new TextDecoder().decode(await store.getKey(keys.modelFile(input.model.modelName, input.model.version, 'preprocessing.json')))) as Preprocessor;
    // exactly the columns the model was trained on, with their kinds
    const features = Object.fromEntries(pre.steps.flatMap((s) => stepColumns(s).map((c) => [c.name, c.kind]))) as Record<string, FeatureSpec['kind']>;
    // One snapshot for the key check and the export, as the least-privilege source role (like ingest).
    return withSource(
      sourceFor(deps),
      async (client) => {
        const plan = await planTableSource(client, { ...source, features });
        const query = checkedSourceQuery(source.query);
        const key = `src.${ident(source.entityKey)}`;
        const count =
          `select count(*)::float8 as n, count(distinct ${key})::float8 as distinct_keys, count(*) filter (where ${key} is null)::float8 as null_keys ` +
          `from (${query}\n) as src`;
        assertBuiltStatement(count, 'select');
        const { rows } = await client.query({ text: count, queryMode: 'extended' } as pg.QueryConfig);
        const { n, distinct_keys: distinctKeys, null_keys: nullKeys } = rows[0] as { n: number; distinct_keys: number; null_keys: number };
        if (nullKeys > 0 || distinctKeys !== n - nullKeys) {
          // counts only: key values would reach the workflow history
          throw new PipelineError(
            ErrorType.InvalidData,
            `source.query of run ${input.model.runId} returns ${n} rows but ${distinctKeys} distinct values of "${source.entityKey}"` +
              (nullKeys ? ` and ${nullKeys} NULL keys` : '') + ': scoring needs one row per entity',
          );
        }
        const copied = await copyToShards({
          client,
          select: plan.select,
          specs: plan.features,
          store,
          keyOf: (i) => scoringKeys.features(input.temporalRunId, i),
          textNumeric: plan.textNumeric,
        });
        return copied.dataset;
      },
      SOURCE_SNAPSHOT,
    );
  }

  return {
    /** Builds one feature row per entity to score in Postgres and streams it with COPY into Arrow shards in S3. */
    async buildScoringFeatures(input: BuildScoringFeaturesInput): Promise<BuildScoringFeaturesOutput> {
      beat({ step: 'features' }); // the interceptor's keep-alive re-sends it while the features build
      {
        const config = await storedRunConfig(db, input.model.runId);
        const features = input.model.mode === 'table' ? await buildTable(input, config) : await buildEvents(input, config);
        if (features.rows === 0) {
          if (input.model.mode === 'table') throw new PipelineError(ErrorType.EmptyDataset, `source.query of run ${input.model.runId} returned no rows to score`);
          const from = new Date(new Date(input.asOf!).getTime() - input.activeDays! * 86_400_000);
          throw new PipelineError(
            ErrorType.EmptyDataset,
            `no active users at ${input.asOf}: no user who signed up before it has a valid event in [${from.toISOString()}, ${input.asOf}); ` +
              'choose a later asOf (--as-of) or more activeDays (--active-days)',
          );
        }
        return { features, rows: features.rows };
      }
    },
  };
}

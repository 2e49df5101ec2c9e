import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sql } from 'kysely';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Db } from '../db/client.js';
import { withTransaction } from '../db/source.js';
import { initBackend } from '../ml/backend.js';
import { predict } from '../ml/model.js';
import { transform, type Preprocessor } from '../ml/preprocess.js';
import type { Frame, ModelArtifacts } from '../ml/types.js';
import { parsePipelineConfig, type PipelineConfig } from '../pipeline/config.js';
import { formatModelRef, parseModelRef, resolveModelRef } from '../registry/refs.js';
import type { ArtifactRef } from '../store/artifacts.js';
import { readRegistered } from '../store/models.js';
import type { ActivityDeps } from './deps.js';
import { ErrorType, PipelineError } from './errors.js';
import { beat } from './heartbeat.js';

export type { ScoringModel, StartScoreRunInput, StartScoreRunOutput, BuildScoringFeaturesInput, BuildScoringFeaturesOutput, ScoreChunkInput, ScoreChunkOutput, FinalizeScoreRunInput, DecileSummary, FinalizeScoreRunOutput, FailScoreRunInput } from '../pipeline/score-contracts.js';
import type { ScoringModel, StartScoreRunInput, StartScoreRunOutput, ScoreChunkInput, ScoreChunkOutput, FinalizeScoreRunInput, DecileSummary, FinalizeScoreRunOutput, FailScoreRunInput } from '../pipeline/score-contracts.js';

/** A newer run of the same score run id owns the rows: this (stale) attempt must not write. */
export class ScoreRunSupersededError extends Error {
  readonly type = 'ScoreRunSuperseded';
}

const invalid = (message: string) => new PipelineError(ErrorType.InvalidConfig, message);

/** COPY text format: backslash, tab, newline and carriage return escaped. */
const copyText = (v: string) => v.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));

function sliceFrame(f: Frame, start: number, end: number): Frame {
  return {
    ids: f.ids.slice(start, end),
    label: f.label.subarray(start, end),
    numeric: Object.fromEntries(Object.entries(f.numeric).map(([k, v]) => [k, v.subarray(start, end)])),
    categorical: Object.fromEntries(Object.entries(f.categorical).map(([k, v]) => [k, v.slice(start, end)])),
  };
}

/** Heartbeats `details` while fn runs (the interceptor's keep-alive re-sends them): a worker that dies stops them. */
async function withHeartbeats<T>(details: unknown, fn: () => Promise<T>): Promise<T> {
  beat(details);
  return fn();
}

/** The stored config of the run that trained a model, parsed on read like every stored config (defaults filled). */
export async function storedRunConfig(db: Db, runId: string): Promise<PipelineConfig> {
  const row = await db.db.selectFrom('ml.pipeline_runs').select('config').where('run_id', '=', runId).executeTakeFirst();
  if (!row) throw new PipelineError(ErrorType.InvalidData, `the pipeline run ${runId} that trained the model is not in ml.pipeline_runs`);
  return parsePipelineConfig(row.config);
}

/**
 * Batch scoring's bookkeeping and scoring steps: open a score run, score chunks into ml.scores (COPY, one
 * transaction per chunk), rank the run into deciles, record a failure. The features come from score-features.ts.
 */
export function createScoringActivities(deps: ActivityDeps) {
  const { db, store } = deps;
  // A worker scores the chunks of one run one after another: keep the model files and the last shard decoded.
  const models = new Map<string, Promise<{ artifacts: ModelArtifacts; pre: Preprocessor }>>();
  let lastShard: { sha256: string; frame: Promise<Frame> } | null = null;

  function loadRegistered(m: ScoringModel) {
    const id = `${m.modelName}:${m.version}`;
    let loaded = models.get(id);
    if (!loaded) {
      loaded = readRegistered(store, m.modelName, m.version);
      loaded.catch(() => models.delete(id));
      models.set(id, loaded);
      if (models.size > 4) models.delete(models.keys().next().value!);
    }
    return loaded;
  }

  function shardFrame(ref: ArtifactRef): Promise<Frame> {
    if (lastShard?.sha256 !== ref.sha256) {
      const frame = store.getFrame(ref);
      frame.catch(() => (lastShard = null));
      lastShard = { sha256: ref.sha256, frame };
    }
    return lastShard.frame;
  }

  /** Within a transaction: the run's row, locked, must still belong to this Temporal run. */
  async function assertOwner(client: pg.PoolClient, scoreRunId: string, temporalRunId: string, lock: 'share' | 'update') {
    const { rows } = await client.query(
      `select temporal_run_id, status from ml.score_runs where score_run_id = $1 for ${lock === 'share' ? 'share' : 'update'}`,
      [scoreRunId],
    );
    if (rows[0]?.temporal_run_id !== temporalRunId || rows[0]?.status !== 'running') {
      throw new ScoreRunSupersededError(
        `score run ${scoreRunId} is now owned by Temporal run ${rows[0]?.temporal_run_id ?? '(none)'} (status ${rows[0]?.status ?? 'absent'}), not ${temporalRunId}: this attempt writes nothing`,
      );
    }
  }

  const inTransaction = <T>(fn: (client: pg.PoolClient) => Promise<T>, begin = 'BEGIN') => withTransaction(db.pool, fn, begin);

  return {
    /**
     * Validates the request and resolves the model (nothing is written when either fails), then opens the run:
     * its ml.score_runs row is (re)set to running and any rows of an earlier run with the same id are deleted.
     */
    async startScoreRun(input: StartScoreRunInput): Promise<StartScoreRunOutput> {
      if (!input.scoreRunId) throw invalid('a score run needs an id');
      const asOf = new Date(input.asOf);
      if (Number.isNaN(asOf.getTime())) throw invalid(`asOf "${input.asOf}" is not an ISO date-time (e.g. 2026-11-23T00:00:00Z)`);
      if (asOf.getTime() > Date.now() + 5 * 60_000) {
        throw invalid(`asOf ${asOf.toISOString()} is in the future: features are built from events before it; use a time up to now`);
      }
      if (!(Number.isInteger(input.activeDays) && input.activeDays >= 1 && input.activeDays <= 365)) {
        throw invalid(`activeDays must be an integer from 1 to 365, got ${input.activeDays}`);
      }
      if (!(Number.isInteger(input.chunkRows) && input.chunkRows >= 100 && input.chunkRows <= 1_000_000)) {
        throw invalid(`chunkRows must be an integer from 100 to 1000000, got ${input.chunkRows}`);
      }
      const ref = parseModelRef(input.model);
      const resolved = await resolveModelRef(db.db, ref);
      const config = await storedRunConfig(db, resolved.runId);
      const mode: ScoringModel['mode'] = config.source?.kind === 'table' ? 'table' : 'events';
      const model: ScoringModel = { modelName: resolved.modelName, version: resolved.version, runId: resolved.runId, mode };
      const out: StartScoreRunOutput = {
        model,
        asOf: mode === 'events' ? asOf.toISOString() : null,
        activeDays: mode === 'events' ? input.activeDays : null,
      };
      const values = {
        temporal_run_id: input.temporalRunId,
        model_name: model.modelName,
        model_version: model.version,
        model_ref: formatModelRef(ref),
        mode,
        as_of: out.asOf,
        active_days: out.activeDays,
        status: 'running' as const,
        trigger: input.trigger ?? 'manual',
        rows: null,
        chunks: null,
        deciles: null,
        started_at: sql<Date>`now()`,
        finished_at: null,
        error_type: null,
        error_message: null,
      };
      await db.db.transaction().execute(async (trx) => {
        await trx
          .insertInto('ml.score_runs')
          .values({ score_run_id: input.scoreRunId, ...values })
          .onConflict((oc) => oc.column('score_run_id').doUpdateSet(values))
          .execute();
        // A rerun replaces: none of the earlier run's rows survive, even for users no longer active.
        await trx.deleteFrom('ml.scores').where('score_run_id', '=', input.scoreRunId).execute();
      });
      return out;
    },

    /**
     * Scores rows [start, end) of one feature shard and writes them with COPY in one transaction that first
     * deletes the same users' rows of this score run: a retried chunk replaces what an earlier attempt wrote.
     */
    async scoreChunk(input: ScoreChunkInput): Promise<ScoreChunkOutput> {
      return await withHeartbeats({ chunk: input.chunk }, async () => {
        await initBackend('auto');
        const [{ artifacts, pre }, shard] = await Promise.all([loadRegistered(input.model), shardFrame(input.shard)]);
        if (!(input.start >= 0 && input.end <= shard.ids.length && input.start < input.end)) {
          throw new PipelineError(ErrorType.InvalidData, `chunk ${input.chunk}: rows [${input.start}, ${input.end}) are outside the shard's ${shard.ids.length} rows`);
        }
        const frame = sliceFrame(shard, input.start, input.end);
        const m = transform(pre, frame);
        const p = await predict(artifacts, m.x, m.rows, m.cols);
        let sum = 0;
        for (let i = 0; i < p.length; i++) {
          if (!(p[i] >= 0 && p[i] <= 1)) {
            throw new PipelineError(ErrorType.InvalidData, `chunk ${input.chunk}: the model returned ${p[i]} for row ${input.start + i} of ${input.shard.key}`);
          }
          sum += p[i];
        }
        const prefix = `${copyText(input.scoreRunId)}\t`;
        const middle = `\t${copyText(input.model.modelName)}\t${input.model.version}\t${input.scoredAt}\t`;
        async function* lines() {
          const batch = 2000;
          for (let i = 0; i < frame.ids.length; i += batch) {
            let text = '';
            for (let j = i; j < Math.min(i + batch, frame.ids.length); j++) text += `${prefix}${copyText(frame.ids[j])}${middle}${p[j]}\n`;
            yield text;
          }
        }
        await inTransaction(async (client) => {
          await assertOwner(client, input.scoreRunId, input.temporalRunId, 'share');
          await client.query('delete from ml.scores where score_run_id = $1 and user_id = any($2::text[])', [input.scoreRunId, frame.ids]);
          await pipeline(
            Readable.from(lines()),
            client.query(copyFrom('COPY ml.scores (score_run_id, user_id, model_name, model_version, scored_at, probability) FROM STDIN')),
          );
        });
        return { chunk: input.chunk, rows: frame.ids.length, meanProbability: sum / p.length };
      });
    },

    /** Ranks the whole run into deciles (1 = the highest probabilities, ntile over every row) and closes it. */
    async finalizeScoreRun(input: FinalizeScoreRunInput): Promise<FinalizeScoreRunOutput> {
      return await withHeartbeats({ step: 'finalize' }, () =>
        inTransaction(async (client) => {
          await assertOwner(client, input.scoreRunId, input.temporalRunId, 'update');
          const { rows: counted } = await client.query('select count(*)::float8 as n from ml.scores where score_run_id = $1', [input.scoreRunId]);
          const rows = Number(counted[0].n);
          if (rows !== input.expectedRows) {
            throw new PipelineError(ErrorType.InvalidData, `score run ${input.scoreRunId} has ${rows} rows in ml.scores, expected ${input.expectedRows}`);
          }
          // Rows just COPYed are not in the statistics yet: the planner may take ml.scores for tiny and join it to
          // itself in a nested loop, quadratic in the run's rows (minutes at 70k). A hash join is always right here.
          await client.query('set local enable_nestloop = off');
          await client.query(
            `update ml.scores s set decile = r.decile
               from (select user_id, ntile(10) over (order by probability desc, user_id) as decile
                       from ml.scores where score_run_id = $1) r
              where s.score_run_id = $1 and s.user_id = r.user_id`,
            [input.scoreRunId],
          );
          const { rows: byDecile } = await client.query(
            `select decile, count(*)::float8 as rows, min(probability) as min_p, max(probability) as max_p, avg(probability) as mean_p
               from ml.scores where score_run_id = $1 group by decile order by decile`,
            [input.scoreRunId],
          );
          const deciles: DecileSummary[] = byDecile.map((d) => ({
            decile: Number(d.decile),
            rows: Number(d.rows),
            minProbability: Number(d.min_p),
            maxProbability: Number(d.max_p),
            meanProbability: Number(d.mean_p),
          }));
          await client.query(
            `update ml.score_runs set status = 'succeeded', rows = $2, chunks = $3, deciles = $4, finished_at = now()
              where score_run_id = $1`,
            [input.scoreRunId, rows, input.chunks, JSON.stringify(deciles)],
          );
          return { rows, deciles };
        }),
      );
    },

    /**
     * Records a failed or cancelled run and removes its partial rows, so ml.scores only ever holds complete runs
     * (and the one in progress). Touches nothing when another run of the same id owns the row.
     */
    async failScoreRun(input: FailScoreRunInput): Promise<void> {
      await db.db.transaction().execute(async (trx) => {
        const updated = await trx
          .updateTable('ml.score_runs')
          .set({
            status: input.status,
            finished_at: sql<Date>`now()`,
            error_type: input.error.type,
            error_message: input.error.message.slice(0, 4000),
          })
          .where('score_run_id', '=', input.scoreRunId)
          .where('temporal_run_id', '=', input.temporalRunId)
          .where('status', '=', 'running')
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) > 0) await trx.deleteFrom('ml.scores').where('score_run_id', '=', input.scoreRunId).execute();
      });
    },
  };
}

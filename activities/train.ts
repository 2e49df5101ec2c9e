import os from 'node:os';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { sql } from 'kysely';
import { initBackend } from '../ml/backend.js';
import { isMlError } from '../ml/errors.js';
import { layoutOf, trainMlp, type EpochMetrics, type EpochReport, type InputLayout, type TrainMlpOutput } from '../ml/model.js';
import { transform, withEncoding, type Preprocessor } from '../ml/preprocess.js';
import { encodingOf, familyOf } from '../ml/search.js';
import type { Frame, MlpParams } from '../ml/types.js';
import { keys, type ArtifactRef } from '../store/artifacts.js';
import { readModel, writeModel, type ModelRef } from '../store/models.js';
import { ErrorType, PipelineError } from '../pipeline/errors.js';
import { poolOfQueue } from '../workflows/constants.js';
import type { ActivityDeps } from './deps.js';
import { beat, lastDetails } from './heartbeat.js';

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

export type { ModelRef } from '../store/models.js';

export interface TrainTrialInput {
  runId: string;
  trialId: string;
  params: MlpParams;
  seed: number;
  train: ArtifactRef;
  val: ArtifactRef;
  preprocessing: ArtifactRef;
  backend: BackendChoice;
  /** the final model's files are kept under runs/<run>/final/; search trials keep theirs under trials/<id>/ */
  step?: 'trial' | 'final';
  /** successive-halving rung (0 = first budget) */
  rung?: number;
  /** a promoted trial continues from its previous rung's last checkpoint (full training state) */
  resumeFrom?: { ref: ModelRef; epoch: number };
  /** pool 'gpu' without training.allowCpuFallback: a worker whose backend is not on a GPU fails the trial */
  requireGpu?: true;
}

/** One epoch of a learning curve, as stored in ml.trials.curve. */
export type CurvePoint = EpochMetrics;

export interface TrainTrialOutput {
  trialId: string;
  status: 'completed' | 'failed';
  error?: string;
  params: MlpParams;
  seed: number;
  valAuc: number | null;
  valPrAuc: number | null;
  valLogLoss: number | null;
  bestEpoch: number | null;
  epochs: number;
  resumedFromEpoch: number;
  seconds: number;
  /**
   * seconds its epochs took to train, over every attempt and rung (the sum of its learning curve's epoch times):
   * what training its parameters from scratch costs. Absent in results recorded before it existed
   */
  trainSeconds?: number;
  backend: string;
  model?: ModelRef;
  /**
   * the preprocessing the model reads: the split's, or (a numeric encoding other than standard) that one with the
   * encoding, written beside the model. Absent in outputs recorded before encodings existed: the split's.
   */
  preprocessing?: ArtifactRef;
  /** the last epoch's full training state, from which a promotion continues */
  checkpoint?: { ref: ModelRef; epoch: number };
  stopReason?: TrainMlpOutput['stopReason'];
}

/** Seconds a learning curve's epochs took, rounded to the millisecond. */
const curveSeconds = (curve: CurvePoint[]): number => Math.round(curve.reduce((sum, p) => sum + p.seconds, 0) * 1000) / 1000;

/** What a trial heartbeats after each epoch: enough for a retry on any worker to resume there. */
interface TrialHeartbeat {
  epoch: number;
  checkpoint: ModelRef;
  curve: CurvePoint[];
}

interface Matrix {
  x: Float32Array;
  rows: number;
  cols: number;
  y: Uint8Array;
}

export interface TrainDeps extends ActivityDeps {
  /** Backend this worker process initialised at start (one per process: tfjs holds global state). */
  backend?: BackendChoice;
  /** the training pool this worker declared (PROPENSITY_TRAIN_POOL); default: read from the task queue */
  pool?: string;
  /** the host recorded with each trial (PROPENSITY_WORKER_HOST, else the machine's hostname) */
  host?: string;
}

export function createTrainActivities(deps: TrainDeps) {
  const { db, store } = deps;
  // Trials of one run read the same splits: a worker keeps the last splits it decoded, and the matrices of the
  // encodings its recent trials used (one per numeric encoding).
  const frames = new Map<string, Promise<{ train: Frame; val: Frame; pre: Preprocessor }>>();
  const matrices = new Map<string, Promise<{ train: Matrix; val: Matrix; layout: InputLayout; pre: Preprocessor }>>();
  const remember = <T>(cache: Map<string, Promise<T>>, key: string, size: number, make: () => Promise<T>): Promise<T> => {
    let entry = cache.get(key);
    if (!entry) {
      entry = make();
      cache.set(key, entry);
      entry.catch(() => cache.delete(key));
      while (cache.size > size) cache.delete(cache.keys().next().value!);
    }
    return entry;
  };

  async function loadMatrices(input: TrainTrialInput) {
    const dataKey = `${input.train.sha256}:${input.val.sha256}:${input.preprocessing.sha256}`;
    const encoding = encodingOf(input.params);
    return remember(matrices, `${dataKey}:${JSON.stringify(encoding)}`, 2, async () => {
      const data = await remember(frames, dataKey, 1, async () => {
        const [train, val, pre] = await Promise.all([
          store.getFrame(input.train),
          store.getFrame(input.val),
          store.getJson<Preprocessor>(input.preprocessing),
        ]);
        return { train, val, pre };
      });
      const pre = withEncoding(data.pre, encoding);
      const toMatrix = (f: Frame): Matrix => ({ ...transform(pre, f), y: f.label });
      return { train: toMatrix(data.train), val: toMatrix(data.val), layout: layoutOf(pre), pre };
    });
  }

  return {
    /** Trains one configuration, heartbeating and checkpointing each epoch; a NaN loss fails the trial, not the search. */
    async trainTrial(input: TrainTrialInput): Promise<TrainTrialOutput> {
      const ctx = Context.current();
      const backend = await initBackend(deps.backend ?? input.backend);
      const pool = deps.pool ?? poolOfQueue(ctx.info.taskQueue);
      const host = deps.host ?? os.hostname();
      // A retried attempt (or a re-run after a transient fault) resumes from its last heartbeat; a promoted
      // trial from its previous rung.
      const heartbeat = lastDetails<TrialHeartbeat>();
      const started = Date.now();
      const resume = heartbeat ? { ref: heartbeat.checkpoint, epoch: heartbeat.epoch } : input.resumeFrom;
      const curve: CurvePoint[] = heartbeat
        ? [...heartbeat.curve]
        : input.resumeFrom
          ? await previousCurve(input.runId, input.trialId, input.resumeFrom.epoch)
          : [];
      // epochs are 1-based and a checkpoint carries the full training state (weights, Adam moments, early stopping)
      const resumedFromEpoch = resume ? resume.epoch : 0;
      let lastCheckpoint = resume;
      const trialRow = {
        run_id: input.runId,
        trial_id: input.trialId,
        status: 'running' as const,
        params: JSON.stringify(input.params),
        seed: input.seed,
        attempt: ctx.info.attempt,
        resumed_from_epoch: resumedFromEpoch,
        curve: JSON.stringify(curve),
        backend: backend.name,
        rung: input.rung ?? 0,
        budget_epochs: input.params.epochs,
        family: familyOf(input.params),
        pool,
        host,
        started_at: new Date(),
      };
      await db.db
        .insertInto('ml.trials')
        .values(trialRow)
        .onConflict((oc) =>
          oc.columns(['run_id', 'trial_id']).doUpdateSet({
            status: 'running',
            attempt: trialRow.attempt,
            resumed_from_epoch: resumedFromEpoch,
            backend: backend.name,
            pool,
            host,
            rung: trialRow.rung,
            budget_epochs: trialRow.budget_epochs,
            error: null,
          }),
        )
        .execute();

      const base = {
        trialId: input.trialId,
        params: input.params,
        seed: input.seed,
        resumedFromEpoch,
        backend: backend.name,
      };
      // the row is written first, so a trial that fails before it trains (no GPU, an unreadable checkpoint or data)
      // says so at the rung it was in, instead of keeping the rung before or having no row
      try {
        if (input.requireGpu && backend.device !== 'gpu') {
          throw new PipelineError(
            ErrorType.GpuUnavailable,
            `trial ${input.trialId} must train on a GPU (training.pool '${pool}'), but the worker on ${host} trains on ${backend.name} (${backend.device}): ` +
              'install the GPU backend there (`propensity setup tensorflow --gpu`), or set training.allowCpuFallback: true to let it train on its CPU',
          );
        }
        const initialState = resume ? await readModel(store, resume.ref) : undefined;
        const data = await loadMatrices(input);
        const fit = await trainMlp({
          train: data.train,
          val: data.val,
          layout: data.layout,
          params: input.params,
          seed: input.seed,
          startEpoch: resumedFromEpoch,
          initialState,
          shouldStop: () => ctx.cancellationSignal.aborted,
          onEpochEnd: async (e: EpochReport) => {
            curve.push({
              epoch: e.epoch,
              loss: e.loss,
              valLoss: e.valLoss,
              valAuc: e.valAuc,
              valPrAuc: e.valPrAuc,
              seconds: e.seconds,
            });
            // One key per epoch: heartbeats are throttled, so the last one the server holds may name an
            // older checkpoint than the newest written, and that one must still be there, unchanged.
            const checkpoint = await writeModel(
              store,
              (file) => keys.trialCheckpoint(input.runId, input.trialId, e.epoch, file),
              await e.state(),
            );
            lastCheckpoint = { ref: checkpoint, epoch: e.epoch };
            beat({ epoch: e.epoch, checkpoint, curve: [...curve] } satisfies TrialHeartbeat);
            await db.db
              .updateTable('ml.trials')
              .set({ curve: JSON.stringify(curve), epochs_run: curve.length })
              .where('run_id', '=', input.runId)
              .where('trial_id', '=', input.trialId)
              .execute();
          },
        });
        if (fit.stopReason === 'stopped') throw interrupted(ctx, input.trialId, lastCheckpoint?.epoch ?? 0);
        const dir = input.step === 'final' ? `runs/${input.runId}/final/model` : undefined;
        const model = await writeModel(
          store,
          (file) => (dir ? `${dir}/${file}` : keys.trialModel(input.runId, input.trialId, file, input.rung)),
          fit.artifacts,
        );
        const preprocessing = data.pre.encoding
          ? await store.putJson(keys.modelPreprocessing(input.runId, input.step === 'final' ? 'final' : input.trialId), data.pre)
          : input.preprocessing;
        const out: TrainTrialOutput = {
          ...base,
          status: 'completed',
          preprocessing,
          valAuc: fit.val.auc,
          valPrAuc: fit.val.prAuc,
          valLogLoss: fit.val.logLoss,
          bestEpoch: fit.bestEpoch,
          epochs: curve.length,
          seconds: (Date.now() - started) / 1000,
          trainSeconds: curveSeconds(curve),
          model,
          checkpoint: lastCheckpoint,
          stopReason: fit.stopReason,
        };
        await finishTrial(out, store.uri(model.modelJson.key), curve);
        return out;
      } catch (err) {
        if (!isMlError(err) || err.type !== 'NonFiniteLoss') {
          // interrupted or broken: the row must not stay 'running' (a retry sets it running again)
          await db.db
            .updateTable('ml.trials')
            .set({ status: 'failed', error: `${(err as Error).name}: ${(err as Error).message}`.slice(0, 2000), curve: JSON.stringify(curve) })
            .where('run_id', '=', input.runId)
            .where('trial_id', '=', input.trialId)
            .execute()
            .catch(() => undefined);
          throw err;
        }
        const out: TrainTrialOutput = {
          ...base,
          status: 'failed',
          error: err.message,
          valAuc: null,
          valPrAuc: null,
          valLogLoss: null,
          bestEpoch: null,
          epochs: curve.length,
          seconds: (Date.now() - started) / 1000,
          trainSeconds: curveSeconds(curve),
        };
        await finishTrial(out, null, curve);
        return out;
      }
    

      async function previousCurve(runId: string, trialId: string, upToEpoch: number): Promise<CurvePoint[]> {
        const row = await db.db
          .selectFrom('ml.trials')
          .select('curve')
          .where('run_id', '=', runId)
          .where('trial_id', '=', trialId)
          .executeTakeFirst();
        return ((row?.curve ?? []) as CurvePoint[]).filter((p) => p.epoch <= upToEpoch);
      }

      async function finishTrial(out: TrainTrialOutput, modelUri: string | null, curve: CurvePoint[]) {
        await db.db
          .updateTable('ml.trials')
          .set({
            status: out.status,
            epochs_run: out.epochs,
            best_epoch: out.bestEpoch,
            val_auc: out.valAuc,
            val_pr_auc: out.valPrAuc,
            val_log_loss: out.valLogLoss,
            model_uri: modelUri,
            error: out.error ?? null,
            stop_reason: out.stopReason ?? (out.status === 'failed' ? 'failed' : null),
            curve: JSON.stringify(curve),
            finished_at: sql`now()`,
            duration_ms: sql`(extract(epoch from now() - started_at) * 1000)::int`,
          })
          .where('run_id', '=', input.runId)
          .where('trial_id', '=', input.trialId)
          .execute();
      }
    },
  };
}

/**
 * Training stopped before its budget because the activity was cancelled or its worker is shutting down: that
 * is never a finished model. A drain fails the attempt retryably (the next attempt, on any worker, resumes from
 * the last epoch checkpoint); a cancellation ends it as cancelled.
 */
function interrupted(ctx: Context, trialId: string, epoch: number): Error {
  const what = `training of ${trialId === 'final' ? 'the final model' : `trial ${trialId}`} interrupted after epoch ${epoch}`;
  if (ctx.cancellationDetails?.workerShutdown) {
    return ApplicationFailure.create({ type: 'WorkerShutdown', message: `${what} by worker shutdown: retried from its checkpoint`, nonRetryable: false });
  }
  return new CancelledFailure(`${what}: ${String(ctx.cancellationSignal.reason ?? 'cancelled')}`);
}

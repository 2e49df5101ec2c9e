import {
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  executeChild,
  isCancellation,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { PipelineConfig } from '../activities/config.js';
import type { Activities } from '../activities/index.js';
import type { EvaluateOutput } from '../activities/registry.js';
import type { SplitOutput } from '../activities/pipeline.js';
import type { ArtifactRef } from '../store/artifacts.js';
import { TASK_QUEUES, type PipelineStage } from './constants.js';
import { baselineParams } from '../ml/search.js';
import { cleanInput, searchInput, searchSpace } from './inputs.js';
import { hyperparameterSearch, type HyperparameterSearchOutput } from './search.js';

export interface TrainPipelineInput {
  /** Validated by the first activity, so a bad key is recorded in ml.pipeline_runs before the run fails. */
  config: unknown;
  trigger?: string;
  /** Defaults to TASK_QUEUES; tests use a unique pair so runs never meet another suite's workers. */
  taskQueues?: TaskQueues;
}

export interface TrainPipelineOutput {
  status: 'registered' | 'rejected';
  runId: string;
  workflowId: string;
  modelName: string;
  modelVersion: number | null;
  modelUri: string | null;
  metrics: { testAuc: number; testPrAuc: number; testLogLoss: number; testBrier: number };
  gate: { blessed: boolean; reasons: string[] };
  cutoff: string | null;
  split: SplitOutput['sizes'];
  positiveRates: SplitOutput['positiveRates'];
  rows: { ingested: number; cleaned: number; quarantined: Record<string, number> };
  trials: number;
  trialsFailed: number;
  best: { trialId: string; params: unknown; valAuc: number | null; valLogLoss: number | null };
  backend: string;
  dataSha256: string;
  configHash: string;
  artifacts: { test: ArtifactRef; report: ArtifactRef };
}

export interface PipelineProgress {
  stage: PipelineStage | 'done' | 'failed';
  completed: { stage: PipelineStage; detail: string }[];
  searchWorkflowId: string | null;
}

export const progressQuery = defineQuery<PipelineProgress>('progress');

const NON_RETRYABLE = ['InvalidConfig', 'InvalidData', 'EmptyDataset', 'SingleClassLabel', 'SourceSchema', 'NotBlessed'];

export type TaskQueues = { cpu: string; train: string };

function activities(queues: TaskQueues, heartbeatTimeoutSeconds = 120) {
  return {
    cpu: proxyActivities<Activities>({
      taskQueue: queues.cpu,
      startToCloseTimeout: '30 minutes',
      retry: { maximumAttempts: 5, initialInterval: '1s', backoffCoefficient: 2, nonRetryableErrorTypes: NON_RETRYABLE },
    }),
    train: proxyActivities<Activities>({
      taskQueue: queues.train,
      startToCloseTimeout: '2 hours',
      // Training heartbeats every epoch; this much silence means its worker died: retry from the checkpoint.
      heartbeatTimeout: `${heartbeatTimeoutSeconds} seconds`,
      retry: { maximumAttempts: 3, initialInterval: '2s', nonRetryableErrorTypes: NON_RETRYABLE },
    }),
  };
}

/** The nightly retrain: ingest → clean → split → search → final training → evaluate → gate → register. */
export async function trainPipeline(input: TrainPipelineInput): Promise<TrainPipelineOutput> {
  const { workflowId, runId } = workflowInfo();
  const queues = input.taskQueues ?? TASK_QUEUES;
  const { cpu } = activities(queues);
  const progress: PipelineProgress = { stage: 'validate', completed: [], searchWorkflowId: null };
  setHandler(progressQuery, () => progress);
  const done = (stage: PipelineStage, detail: string) => progress.completed.push({ stage, detail });

  const started = await cpu.startRun({ runId, workflowId, config: input.config, trigger: input.trigger });
  const config: PipelineConfig = started.config;
  const { train } = activities(queues, config.training.heartbeatTimeoutSeconds);
  done('validate', `model ${config.modelName}, config ${started.configHash}`);

  try {
    progress.stage = 'ingest';
    const ingest = await cpu.ingestSource({ runId, source: config.source });
    done(
      'ingest',
      `${ingest.rows} ${ingest.mode === 'events' ? 'users' : 'rows'}, ${ingest.positives} positive` +
        (ingest.cutoff ? `, cutoff ${ingest.cutoff}` : '') +
        (ingest.events ? `, ${ingest.events.total - ingest.events.valid} of ${ingest.events.total} events invalid` : ''),
    );

    progress.stage = 'clean';
    const clean = await cpu.cleanData(cleanInput(runId, config, ingest));
    const maxDrift = Math.max(0, ...Object.values(clean.drift));
    done('clean', `${clean.rowsOut}/${clean.rowsIn} rows kept` + (clean.driftBaselineRunId ? `, max PSI ${maxDrift.toFixed(3)}` : ''));

    progress.stage = 'split';
    const split = await cpu.splitData({ runId, clean: clean.clean, features: ingest.features, split: config.split });
    done('split', `train ${split.sizes.train}, val ${split.sizes.val}, test ${split.sizes.test}`);

    progress.stage = 'search';
    const searchWorkflowId = `${workflowId}/search`;
    progress.searchWorkflowId = searchWorkflowId;
    const data = { train: split.train, val: split.val, preprocessing: split.preprocessing };
    const space = searchSpace(config);
    // The logistic-regression baseline the gate compares with trains alongside the search.
    const baselinePromise = train.trainTrial({
      runId,
      trialId: 'baseline',
      params: { ...baselineParams(space), epochs: config.training.finalEpochs, patience: config.training.patience },
      seed: config.training.seed,
      ...data,
      backend: config.training.backend,
    });
    const search: HyperparameterSearchOutput = await executeChild(hyperparameterSearch, {
      workflowId: searchWorkflowId,
      taskQueue: queues.cpu,
      args: [searchInput(runId, config, data, queues.train)],
    });
    const baseline = await baselinePromise;
    done(
      'search',
      `${search.trials.length} trials (${search.failed} failed) over rungs ${search.rungs.map((r) => `${r.trials}×${r.budget}ep`).join(' → ')}, ` +
        `best ${search.best.trialId} val AUC ${search.best.valAuc?.toFixed(4)}; baseline val AUC ${baseline.valAuc?.toFixed(4)}`,
    );

    progress.stage = 'final';
    const params = { ...search.best.params, epochs: config.training.finalEpochs, patience: config.training.patience };
    const final = await train.trainTrial({
      runId,
      trialId: 'final',
      params,
      seed: config.training.seed,
      ...data,
      backend: config.training.backend,
      step: 'final',
    });
    if (final.status !== 'completed' || !final.model) {
      throw ApplicationFailure.nonRetryable(`final training failed: ${final.error}`, 'NonFiniteLoss');
    }
    done('final', `${final.epochs} epochs on ${final.backend}, val AUC ${final.valAuc?.toFixed(4)}`);

    progress.stage = 'evaluate';
    const evaluation: EvaluateOutput = await cpu.evaluateModel({
      runId,
      modelName: config.modelName,
      mode: ingest.mode,
      model: final.model,
      baseline: baseline.model,
      test: split.test,
      val: split.val,
      preprocessing: split.preprocessing,
      gate: config.gate,
      evaluation: config.evaluation,
    });
    done('evaluate', `test AUC ${evaluation.metrics.rocAuc.toFixed(4)}, ${evaluation.blessed ? 'blessed' : 'not blessed'}`);

    let registered: { version: number; uri: string } | null = null;
    if (evaluation.blessed) {
      progress.stage = 'register';
      registered = await cpu.registerModel({
        runId,
        workflowId,
        modelName: config.modelName,
        model: final.model,
        preprocessing: split.preprocessing,
        evaluation,
        lineage: {
          configHash: started.configHash,
          codeVersion: started.codeVersion,
          dataSha256: split.dataSha256,
          params,
          seed: config.training.seed,
          backend: final.backend,
          cutoff: ingest.cutoff,
          horizonDays: ingest.horizonDays,
          source: ingest.mode,
          features: ingest.features.map((f) => f.name),
        },
      });
      done('register', `${config.modelName} v${registered.version}`);
    }

    const metrics = {
      testAuc: evaluation.metrics.rocAuc,
      testPrAuc: evaluation.metrics.prAuc,
      testLogLoss: evaluation.metrics.logLoss,
      testBrier: evaluation.metrics.brier,
    };
    const status = registered ? 'registered' : 'rejected';
    await cpu.finishRun({
      runId,
      status,
      modelVersion: registered?.version,
      metrics,
      error: registered ? undefined : { type: 'GateFailed', message: evaluation.reasons.join('; ') },
    });
    progress.stage = 'done';
    return {
      status,
      runId,
      workflowId,
      modelName: config.modelName,
      modelVersion: registered?.version ?? null,
      modelUri: registered?.uri ?? null,
      metrics,
      gate: { blessed: evaluation.blessed, reasons: evaluation.reasons },
      cutoff: ingest.cutoff,
      split: split.sizes,
      positiveRates: split.positiveRates,
      rows: { ingested: ingest.rows, cleaned: clean.rowsOut, quarantined: clean.quarantined },
      trials: search.trials.length,
      trialsFailed: search.failed,
      best: {
        trialId: search.best.trialId,
        params: search.best.params,
        valAuc: search.best.valAuc,
        valLogLoss: search.best.valLogLoss,
      },
      backend: final.backend,
      dataSha256: split.dataSha256,
      configHash: started.configHash,
      artifacts: { test: split.test, report: evaluation.report },
    };
  } catch (err) {
    progress.stage = 'failed';
    const cancelled = isCancellation(err);
    const cause = (err as { cause?: { type?: string; message?: string } }).cause;
    // Record the failure even when the workflow itself is being cancelled.
    await CancellationScope.nonCancellable(() =>
      cpu.finishRun({
        runId,
        status: cancelled ? 'cancelled' : 'failed',
        error: {
          type: cause?.type ?? (err as { type?: string }).type ?? (err as Error).name ?? 'Error',
          message: cause?.message ?? (err as Error).message ?? String(err),
        },
      }),
    );
    throw err;
  }
}

import {
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineUpdate,
  executeChild,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { PipelineConfig } from '../pipeline/config.js';
import type { Activities } from '../activities/index.js';
import type { EvaluateOutput } from '../activities/evaluate.js';
import type { SplitOutput } from '../activities/split.js';
import type { ArtifactRef } from '../store/artifacts.js';
import { activityOptions } from '../pipeline/retry.js';
import { TASK_QUEUES, type PipelineStage } from './constants.js';
import { baselineParams, familyOf, formatSelection } from '../ml/search.js';
import { cleanInput, searchInput, searchSpace } from './inputs.js';
import { better, hyperparameterSearch, type HyperparameterSearchOutput } from './search.js';
import type { TrainTrialOutput } from '../activities/train.js';
import { scoreAfterPromotion, scoreUsers, type ScoreUsersOutput } from './score.js';

export interface TrainPipelineInput {
  /** Validated by the first activity, so a bad key is recorded in ml.pipeline_runs before the run fails. */
  config: unknown;
  trigger?: string;
  /**
   * The run's as-of time (ISO): nothing at or after it is read; an events source without source.cutoff gets
   * cutoff = asOf − horizonDays. Default: the time a Temporal Schedule scheduled the run for, if any.
   */
  asOf?: string;
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
  /** the model family shipped: 'mlp', or 'logistic' when the baseline won on validation */
  family?: string;
  dataSha256: string;
  configHash: string;
  artifacts: { test: ArtifactRef; report: ArtifactRef };
  /** why a 'rejected' run registered nothing usable: the gate, a reviewer, or no decision in time */
  rejection: { type: 'GateFailed' | 'ApprovalRejected' | 'ApprovalTimeout'; message: string } | null;
  /** the approval wait with approval.required, else null */
  approval: ApprovalState | null;
  /** scoring.afterPromotion: the scoring child's counts, or its failure (the model stays registered); else null */
  scoring: { status: 'succeeded'; scoreRunId: string; rows: number } | { status: 'failed'; scoreRunId: string; error: string } | null;
}

/** What `propensity approve|reject` sends. */
export interface ApprovalDecisionInput {
  by: string;
  reason?: string | null;
}

export interface ApprovalState {
  /** pending: required but not reached yet; deciding: a decision is being recorded */
  status: 'not_required' | 'pending' | 'awaiting' | 'deciding' | 'approved' | 'rejected' | 'timeout';
  modelName: string | null;
  version: number | null;
  requestedAt: string | null;
  deadline: string | null;
  by: string | null;
  reason: string | null;
  decidedAt: string | null;
  /** the champion move an approval made */
  champion: { fromVersion: number | null; toVersion: number } | null;
}

type RequestedDecision = { decision: 'approved' | 'rejected'; by: string; reason: string | null };

export const approveUpdate = defineUpdate<ApprovalState, [ApprovalDecisionInput]>('approve');
export const rejectUpdate = defineUpdate<ApprovalState, [ApprovalDecisionInput]>('reject');
export const approvalQuery = defineQuery<ApprovalState>('approval');

export interface PipelineProgress {
  stage: PipelineStage | 'done' | 'failed';
  completed: { stage: PipelineStage; detail: string }[];
  searchWorkflowId: string | null;
}

export const progressQuery = defineQuery<PipelineProgress>('progress');

export type TaskQueues = { cpu: string; train: string };

/** pipeline/retry.ts: transient faults are retried in-process by the worker, typed errors are non-retryable. */
function activities(queues: TaskQueues, heartbeatTimeoutSeconds = 120) {
  return {
    cpu: proxyActivities<Activities>(activityOptions('cpu', queues.cpu)),
    // Training heartbeats every epoch; this much silence means its worker died: retry from the checkpoint.
    train: proxyActivities<Activities>(activityOptions('train', queues.train, heartbeatTimeoutSeconds)),
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

  // Approval: `propensity approve|reject` sends an update; the validator refuses it unless the run is waiting.
  const approval: ApprovalState = {
    status: 'pending', modelName: null, version: null, requestedAt: null, deadline: null, by: null, reason: null, decidedAt: null, champion: null,
  };
  let requested: RequestedDecision | null = null;
  setHandler(approvalQuery, () => approval);
  const validateDecision = (d: ApprovalDecisionInput) => {
    if (approval.status !== 'awaiting') throw new Error(`run ${runId} is not awaiting approval: ${describeApproval(approval, progress.stage)}`);
    if (typeof d?.by !== 'string' || !d.by.trim()) throw new Error('an approval decision needs a non-empty "by" (who decides)');
  };
  const decide = (decision: 'approved' | 'rejected') => async (d: ApprovalDecisionInput): Promise<ApprovalState> => {
    if (requested) throw ApplicationFailure.nonRetryable(`run ${runId}: a decision was already made`, 'NotAwaitingApproval');
    requested = { decision, by: d.by.trim(), reason: d.reason?.trim() || null };
    approval.status = 'deciding';
    // answer once the decision is recorded (and champion moved), so the caller sees the outcome
    await condition(() => approval.status !== 'deciding');
    return approval;
  };
  setHandler(approveUpdate, decide('approved'), { validator: validateDecision });
  setHandler(rejectUpdate, decide('rejected'), { validator: validateDecision });

  // A scheduled run's as-of time is the time it was scheduled for, never the wall clock: Temporal Schedules put it
  // on the workflow as the TemporalScheduledStartTime search attribute (a backfilled night gets that night), so
  // backfills reproduce past cutoffs. Reading workflowInfo issues no command; old histories replay unchanged.
  const attrs = workflowInfo().typedSearchAttributes.getAll();
  const scheduledFor = attrs.find((a) => a.key.name === 'TemporalScheduledStartTime')?.value;
  const scheduledBy = attrs.find((a) => a.key.name === 'TemporalScheduledById')?.value;
  const asOf = input.asOf ?? (scheduledFor instanceof Date ? scheduledFor.toISOString() : undefined);
  const trigger = input.trigger ?? (typeof scheduledBy === 'string' ? `schedule:${scheduledBy}` : undefined);
  const started = await cpu.startRun({ runId, workflowId, config: input.config, trigger, asOf });
  const config: PipelineConfig = started.config;
  const { train } = activities(queues, config.training.heartbeatTimeoutSeconds);
  // Histories recorded before approval existed carry configs without the key.
  const approvalRequired = config.approval?.required === true;
  if (!approvalRequired) approval.status = 'not_required';
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
    // Observed from the start: if the search fails first, the run fails with the search's cause and this
    // promise's later rejection must not surface as an unhandled rejection that fails every workflow task.
    baselinePromise.catch(() => undefined);
    const search: HyperparameterSearchOutput = await executeChild(hyperparameterSearch, {
      workflowId: searchWorkflowId,
      taskQueue: queues.cpu,
      args: [searchInput(runId, config, data, queues.train)],
    });
    const baseline = await baselinePromise;
    done(
      'search',
      `${search.trials.length} trials (${search.failed} failed) over rungs ${search.rungs.map((r) => `${r.trials}×${r.budget}ep`).join(' → ')}, ` +
        `best ${search.best.trialId} by ${formatSelection(config.search.metric, search.best[config.search.metric])} (val ROC-AUC ${search.best.valAuc?.toFixed(4)}); ` +
        `baseline val ROC-AUC ${baseline.valAuc?.toFixed(4)}`,
    );

    progress.stage = 'final';
    // The baseline competes: at least as good on validation by the search's own rule, it is the model the run
    // ships (simpler, and already trained for the final budget); histories from before this rule replay unchanged.
    const metric = config.search.metric;
    const baselineWins =
      patched('baseline-competes') &&
      config.search.baselineCompetes !== false &&
      baseline.status === 'completed' && !!baseline.model && baseline[metric] !== null &&
      better(metric)(baseline, search.best) <= 0;
    const params = baselineWins
      ? baseline.params
      : { ...search.best.params, epochs: config.training.finalEpochs, patience: config.training.patience };
    const final: TrainTrialOutput = baselineWins
      ? baseline
      : await train.trainTrial({
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
    const family = familyOf(params);
    done(
      'final',
      baselineWins
        ? `logistic baseline chosen: ${formatSelection(metric, baseline[metric])} is at least the best trial's ${formatSelection(metric, search.best[metric])}; no final training`
        : `${final.epochs} epochs on ${final.backend}, val AUC ${final.valAuc?.toFixed(4)}`,
    );

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
      split: config.split,
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
          family,
        },
        ...(approvalRequired && { approvalRequired: true }),
      });
      if (!approvalRequired) {
        done('register', `${config.modelName} v${registered.version}`);
      } else {
        const hours = config.approval.timeoutHours;
        const requestedAt = new Date(); // workflow time: deterministic
        const deadline = new Date(requestedAt.getTime() + hours * 3_600_000);
        Object.assign(approval, {
          status: 'awaiting', modelName: config.modelName, version: registered.version,
          requestedAt: requestedAt.toISOString(), deadline: deadline.toISOString(),
        });
        await cpu.markAwaitingApproval({
          runId, workflowId, modelName: config.modelName, version: registered.version,
          requestedAt: approval.requestedAt!, timeoutAt: approval.deadline!,
        });
        done('register', `${config.modelName} v${registered.version} pending approval until ${approval.deadline}: \`propensity approve|reject ${workflowId}\``);
        await condition(() => requested !== null, hours * 3_600_000);
        const d = (requested as RequestedDecision | null) ?? { decision: 'timeout' as const, by: `pipeline:${workflowId}`, reason: `no decision within ${hours} h` };
        approval.status = 'deciding';
        const decidedAt = new Date().toISOString();
        const recorded = await cpu.recordApprovalDecision({
          runId, modelName: config.modelName, version: registered.version, decision: d.decision, by: d.by, reason: d.reason, decidedAt,
        });
        Object.assign(approval, { status: d.decision, by: d.by, reason: d.reason, decidedAt, champion: recorded.champion });
        done(
          'register',
          d.decision === 'approved'
            ? `v${registered.version} approved by ${d.by}` + (recorded.champion ? `: champion v${recorded.champion.fromVersion ?? '-'} → v${recorded.champion.toVersion}` : '')
            : `v${registered.version} ${d.decision === 'timeout' ? 'rejected: no decision in time' : `rejected by ${d.by}`}`,
        );
      }
    }

    const metrics = {
      testAuc: evaluation.metrics.rocAuc,
      testPrAuc: evaluation.metrics.prAuc,
      testLogLoss: evaluation.metrics.logLoss,
      testBrier: evaluation.metrics.brier,
    };
    const rejection: TrainPipelineOutput['rejection'] = !registered
      ? { type: 'GateFailed', message: evaluation.reasons.join('; ') }
      : approval.status === 'rejected' || approval.status === 'timeout'
        ? {
            type: approval.status === 'timeout' ? 'ApprovalTimeout' : 'ApprovalRejected',
            message: `${config.modelName} v${registered.version} rejected by ${approval.by}${approval.reason ? `: ${approval.reason}` : ''}`,
          }
        : null;
    const status = rejection ? 'rejected' : 'registered';
    await cpu.finishRun({
      runId,
      status,
      modelVersion: registered?.version,
      metrics,
      error: rejection ?? undefined,
    });
    // scoring.afterPromotion: score every active user with the version just promoted, as a child workflow (its
    // history holds counts only). Only configs with the key reach patched(), so older histories replay unchanged.
    let scoring: TrainPipelineOutput['scoring'] = null;
    const promoted = registered && !rejection && (!approvalRequired || approval.status === 'approved');
    const child = promoted ? scoreAfterPromotion(workflowId, config, registered!.version, queues.cpu) : null;
    if (child && patched('score-after-promotion')) {
      progress.stage = 'score';
      if (asOf) child.args[0].asOf = asOf;
      try {
        const scored: ScoreUsersOutput = await executeChild(scoreUsers, child);
        scoring = { status: 'succeeded', scoreRunId: scored.scoreRunId, rows: scored.rows };
        done('score', `${scored.rows} users scored with v${scored.modelVersion} (${scored.scoreRunId})`);
      } catch (err) {
        if (isCancellation(err)) throw err;
        const message = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
        scoring = { status: 'failed', scoreRunId: child.workflowId, error: message };
        done('score', `scoring failed (the model stays registered): ${message}`);
      }
    }
    progress.stage = 'done';
    if (approvalRequired) await condition(allHandlersFinished);
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
      family,
      dataSha256: split.dataSha256,
      configHash: started.configHash,
      artifacts: { test: split.test, report: evaluation.report },
      rejection,
      approval: approvalRequired ? approval : null,
      scoring,
    };
  } catch (err) {
    progress.stage = 'failed';
    const cancelled = isCancellation(err);
    if (approval.status === 'awaiting') {
      // a run cancelled while it waited: its pending version can never be approved now
      await CancellationScope.nonCancellable(() =>
        cpu.recordApprovalDecision({
          runId, modelName: approval.modelName!, version: approval.version!, decision: 'rejected',
          by: `pipeline:${workflowId}`, reason: cancelled ? 'run cancelled while awaiting approval' : 'run failed while awaiting approval',
          decidedAt: new Date().toISOString(),
        }),
      ).catch(() => undefined);
    }
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

function describeApproval(a: ApprovalState, stage: string): string {
  switch (a.status) {
    case 'not_required':
      return 'its config does not require approval (approval.required is false)';
    case 'pending':
      return `it has not reached the approval step yet (stage ${stage})`;
    case 'deciding':
      return 'a decision is already being recorded';
    default:
      return `v${a.version} was already ${a.status === 'timeout' ? 'rejected by the approval timeout' : `${a.status} by ${a.by}`}`;
  }
}

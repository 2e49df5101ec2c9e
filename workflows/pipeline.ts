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
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import type { PipelineConfig } from '../pipeline/config.js';
import type { Activities } from '../activities/index.js';
import type { CleanOutput } from '../activities/clean.js';
import type { EvaluateOutput } from '../activities/evaluate.js';
import type { IngestOutput } from '../activities/ingest.js';
import type { SplitOutput } from '../activities/split.js';
import type { ArtifactRef } from '../store/artifacts.js';
import { REUSABLE_STEPS, reusedTrialLabel, reusedTrials } from '../pipeline/resume.js';
import { activityOptions } from '../pipeline/retry.js';
import { DEFAULT_POOL, TASK_QUEUES, trainQueueFor, type PipelineStage } from './constants.js';
import { baselineParams, familyOf, formatSelection } from '../ml/search.js';
import { formatEnsembleGain } from '../ml/ensemble-gain.js';
import { formatReplicaPlan, replicaPlan } from '../ml/replicas.js';
import { cleanInput, ensembleCandidates, gpuRequirement, REPLICA_STREAM, replicaId, searchInput, searchSpace } from './inputs.js';
import { better, hyperparameterSearch, rungBudgets, trainOrFail, type HyperparameterSearchOutput, type InterruptedSearchTrial, type SearchTrialResult } from './search.js';
import { deriveSeed } from '../ml/random.js';
import type { ModelRef, TrainTrialOutput } from '../activities/train.js';
import type { BuildEnsembleOutput } from '../activities/ensemble.js';
import { scoreAfterPromotion, scoreUsers, type ScoreUsersOutput } from './score.js';
import { MODEL_ATTRIBUTE, OUTCOME_ATTRIBUTE, TEST_AUC_ATTRIBUTE, TRIGGER_ATTRIBUTE, type RunOutcome } from './search-attributes.js';

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
  /** `propensity run resume`: the failed run whose completed steps this run takes instead of executing them */
  resume?: ResumeInput;
}

/**
 * A resumed run is a new execution of trainPipeline, not a Temporal reset of the failed one: its input carries the
 * failed run's step outputs (claim checks, counts and metrics, read from that run's history and verified against S3
 * by the CLI before it starts this run), and the workflow uses them in place of the steps. A reset would replay the
 * failed run's code path and history into the same run id, so ml.* would mix two attempts under one run, the failed
 * run's own record would be rewritten, and only the exact same config could continue; a new run keeps the failed
 * run as it was, records its own lineage (resumed from which run, which steps reused) and may change the config
 * sections read after the reused steps (the gate, say). Old histories have no `resume`, so they replay unchanged.
 */
export interface ResumeInput {
  fromRunId: string;
  fromWorkflowId: string;
  /** a prefix of ingest → clean → split → search (with the baseline) → final → ensemble: the outputs the failed run recorded */
  steps: ResumedSteps;
}

export interface ResumedSteps {
  ingest?: IngestOutput;
  clean?: CleanOutput;
  split?: SplitOutput;
  search?: { search: HyperparameterSearchOutput; baseline: TrainTrialOutput };
  final?: TrainTrialOutput;
  /**
   * The ensemble step: the seed replicas it trained (completed or failed for good, as trainOrFail returned them) and
   * the selection it built. With training.final 'reuse' there is no `final` before it: the best trial was the final
   * model. Older resumed runs have no key, so their histories replay unchanged.
   */
  ensemble?: { replicas: TrainTrialOutput[]; built: BuildEnsembleOutput };
  /**
   * Seed replicas the failed run completed before its ensemble step failed (no `ensemble` then): the new run takes
   * them in place of training them and trains only the others. Older resumed runs have no key.
   */
  replicas?: TrainTrialOutput[];
  /**
   * Seed replicas the failed run was still training when it stopped in its ensemble step: the new run continues each
   * from its last checkpoint (`rung` is 0). Older resumed runs have no key, so their histories replay unchanged.
   */
  interruptedReplicas?: InterruptedSearchTrial[];
  /**
   * The trial results (each at its rung) and the baseline the failed run completed before its search failed (no
   * `search` then): the new run's search takes them and trains only the rest, and continues the trials it was
   * training from their last checkpoints (`interrupted`). Older resumed runs have no key.
   */
  searchTrials?: { results: SearchTrialResult[]; baseline?: TrainTrialOutput; interrupted?: InterruptedSearchTrial[] };
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
  /** the model family shipped: 'mlp', 'ensemble', or 'logistic' when the baseline won on validation */
  family?: string;
  /** the model shipped (the registered version's source files) and an ensemble's members; absent in older histories */
  model?: { ref: ModelRef; preprocessing: ArtifactRef; members: string[] | null };
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
  /** the ensemble's seed replicas of the best trial while they train (stage 'final'); absent otherwise */
  replicas?: string[];
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

/**
 * What the Temporal Web UI shows of a run: search attributes (model, outcome, test AUC, trigger) and the current
 * details line. Upserts are commands, so histories recorded before them replay without (patched); current details
 * are not recorded in the history.
 */
function runDisplay() {
  const attributes = patched('search-attributes');
  return {
    set(pairs: SearchAttributeUpdatePair[]) {
      if (attributes) upsertSearchAttributes(pairs);
    },
    outcome(outcome: RunOutcome, testAuc?: number) {
      const pairs: SearchAttributeUpdatePair[] = [{ key: OUTCOME_ATTRIBUTE, value: outcome }];
      if (testAuc !== undefined && Number.isFinite(testAuc)) pairs.push({ key: TEST_AUC_ATTRIBUTE, value: testAuc });
      this.set(pairs);
    },
    details: (text: string) => setCurrentDetails(text),
  };
}
type RunDisplay = ReturnType<typeof runDisplay>;

/** The nightly retrain: ingest → clean → split → search → final training → evaluate → gate → register. */
export async function trainPipeline(input: TrainPipelineInput): Promise<TrainPipelineOutput> {
  const display = runDisplay();
  try {
    return await pipelineRun(input, display);
  } catch (err) {
    // a failed run says so in the UI too (the failure itself stays the workflow's)
    const cancelled = isCancellation(err);
    display.outcome(cancelled ? 'cancelled' : 'failed');
    const cause = (err as { cause?: { type?: string; message?: string } }).cause;
    display.details(cancelled ? 'cancelled' : `failed: ${cause?.type ?? (err as Error).name}: ${(cause?.message ?? (err as Error).message ?? '').slice(0, 500)}`);
    throw err;
  }
}

async function pipelineRun(input: TrainPipelineInput, display: RunDisplay): Promise<TrainPipelineOutput> {
  const { workflowId, runId } = workflowInfo();
  const queues = input.taskQueues ?? TASK_QUEUES;
  const { cpu } = activities(queues);
  const progress: PipelineProgress = { stage: 'validate', completed: [], searchWorkflowId: null };
  setHandler(progressQuery, () => progress);
  const done = (stage: PipelineStage, detail: string) => {
    progress.completed.push({ stage, detail });
    display.details(`${stage}: ${detail}`);
  };
  const reused: ResumedSteps = input.resume?.steps ?? {};
  const reusedNote = input.resume ? ` (reused from run ${input.resume.fromRunId})` : '';

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
  display.set([
    { key: OUTCOME_ATTRIBUTE, value: 'running' },
    { key: TRIGGER_ATTRIBUTE, value: trigger ?? 'manual' },
  ]);
  // trials taken one by one from a step the failed run did not complete: search trials (each through its last
  // reused rung), the baseline, seed replicas
  const taken = reusedTrials(reused);
  const resume = input.resume && {
    fromRunId: input.resume.fromRunId,
    fromWorkflowId: input.resume.fromWorkflowId,
    steps: REUSABLE_STEPS.filter((s) => reused[s] !== undefined),
    ...(taken.length ? { trials: taken } : {}),
  };
  const started = await cpu.startRun.executeWithOptions(
    {
      summary: resume
        ? `validate the config; resume of ${resume.fromWorkflowId}, reusing ${resume.steps.join(', ') || 'nothing'}${resume.trials ? ` and trials ${resume.trials.map(reusedTrialLabel).join(', ')}` : ''}`
        : 'validate the config',
    },
    [{ runId, workflowId, config: input.config, trigger, asOf, ...(resume && { resume }) }],
  );
  const config: PipelineConfig = started.config;
  display.set([{ key: MODEL_ATTRIBUTE, value: config.modelName }]);
  // training goes to the config's pool (propensity-train, or propensity-train-<pool>); the default pool keeps the
  // queue every earlier history used
  const trainQueue = trainQueueFor(config.training.pool ?? DEFAULT_POOL, queues.train);
  const { train } = activities({ ...queues, train: trainQueue }, config.training.heartbeatTimeoutSeconds);
  // Histories recorded before approval existed carry configs without the key.
  const approvalRequired = config.approval?.required === true;
  if (!approvalRequired) approval.status = 'not_required';
  done('validate', `model ${config.modelName}, config ${started.configHash}`);

  try {
    progress.stage = 'ingest';
    const source = config.source;
    const ingest =
      reused.ingest ??
      (await cpu.ingestSource.executeWithOptions(
        { summary: source.kind === 'events' ? `ingest: event features as of cutoff ${source.cutoff ?? '(default)'}, ${source.horizonDays}-day label` : 'ingest: table query' },
        [{ runId, source }],
      ));
    done(
      'ingest',
      `${ingest.rows} ${ingest.mode === 'events' ? 'users' : 'rows'}, ${ingest.positives} positive` +
        (ingest.cutoff ? `, cutoff ${ingest.cutoff}` : '') +
        (ingest.events ? `, ${ingest.events.total - ingest.events.valid} of ${ingest.events.total} events invalid` : '') +
        (reused.ingest ? reusedNote : ''),
    );

    progress.stage = 'clean';
    const clean =
      reused.clean ??
      (await cpu.cleanData.executeWithOptions({ summary: `clean: ${ingest.rows} rows, quarantine at most ${config.quality.maxQuarantineRate}, PSI at most ${config.quality.maxPsi}` }, [
        cleanInput(runId, config, ingest),
      ]));
    const maxDrift = Math.max(0, ...Object.values(clean.drift));
    done('clean', `${clean.rowsOut}/${clean.rowsIn} rows kept` + (clean.driftBaselineRunId ? `, max PSI ${maxDrift.toFixed(3)}` : '') + (reused.clean ? reusedNote : ''));

    progress.stage = 'split';
    const s = config.split;
    const split =
      reused.split ??
      (await cpu.splitData.executeWithOptions({ summary: `split ${clean.rowsOut} rows ${s.train}/${s.val}/${s.test} by entity hash (seed ${s.seed})` }, [
        { runId, clean: clean.clean, features: ingest.features, split: config.split },
      ]));
    done('split', `train ${split.sizes.train}, val ${split.sizes.val}, test ${split.sizes.test}` + (reused.split ? reusedNote : ''));

    progress.stage = 'search';
    const searchWorkflowId = `${workflowId}/search`;
    progress.searchWorkflowId = searchWorkflowId;
    const data = { train: split.train, val: split.val, preprocessing: split.preprocessing };
    const space = searchSpace(config);
    let search: HyperparameterSearchOutput;
    let baseline: TrainTrialOutput;
    if (reused.search) {
      ({ search, baseline } = reused.search);
    } else {
      // The logistic-regression baseline the gate compares with trains alongside the search (or is the failed
      // run's, when that run completed it before its search failed).
      const baselinePromise = reused.searchTrials?.baseline ? Promise.resolve(reused.searchTrials.baseline) : train.trainTrial.executeWithOptions({ summary: `baseline (logistic regression), up to ${config.training.finalEpochs} epochs` }, [
        {
          runId,
          trialId: 'baseline',
          params: { ...baselineParams(space), epochs: config.training.finalEpochs, patience: config.training.patience },
          seed: config.training.seed,
          ...data,
          backend: config.training.backend,
          ...gpuRequirement(config),
        },
      ]);
      // Observed from the start: if the search fails first, the run fails with the search's cause and this
      // promise's later rejection must not surface as an unhandled rejection that fails every workflow task.
      baselinePromise.catch(() => undefined);
      const budgets = rungBudgets(config.search.halving.minEpochs, config.search.halving.eta, config.search.epochs);
      search = await executeChild(hyperparameterSearch, {
        workflowId: searchWorkflowId,
        taskQueue: queues.cpu,
        args: [
          {
            ...searchInput(runId, config, data, trainQueue),
            ...(reused.searchTrials && { reused: reused.searchTrials.results }),
            ...(reused.searchTrials?.interrupted && { interrupted: reused.searchTrials.interrupted }),
          },
        ],
        staticSummary: `hyperparameter search: ${config.search.trials} trials, rungs of ${budgets.join(' → ')} epochs, ranked by ${config.search.metric}`,
      });
      baseline = await baselinePromise;
    }
    done(
      'search',
      `${search.trials.length} trials (${search.failed} failed) over rungs ${search.rungs.map((r) => `${r.trials}×${r.budget}ep`).join(' → ')}, ` +
        `best ${search.best.trialId} by ${formatSelection(config.search.metric, search.best[config.search.metric])} (val ROC-AUC ${search.best.valAuc?.toFixed(4)}); ` +
        `baseline val ROC-AUC ${baseline.valAuc?.toFixed(4)}` +
        (reused.search ? reusedNote : '') +
        (reused.searchTrials
          ? `; ${reused.searchTrials.results.length} trial results${reused.searchTrials.baseline ? ' and the baseline' : ''} reused from run ${input.resume!.fromRunId}` +
            (reused.searchTrials.interrupted?.length ? `, ${reused.searchTrials.interrupted.length} interrupted trials continued from its checkpoints` : '')
          : ''),
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
    // Model families (histories from before them replay unchanged): the final step may reuse the best trial's
    // weights instead of retraining its parameters (training.final 'reuse'), and may average several of the
    // search's networks when that beats the single model on validation (training.ensemble).
    const families = patched('model-families');
    const reuse = families && !baselineWins && config.training.final === 'reuse';
    const params = baselineWins
      ? baseline.params
      : reuse
        ? search.best.params
        : { ...search.best.params, epochs: config.training.finalEpochs, patience: config.training.patience };
    const final: TrainTrialOutput = baselineWins
      ? baseline
      : reuse
        ? search.best
        : (reused.final ??
          (await train.trainTrial.executeWithOptions({ summary: `final training: ${search.best.trialId}'s parameters, up to ${config.training.finalEpochs} epochs` }, [
            {
              runId,
              trialId: 'final',
              params,
              seed: config.training.seed,
              ...data,
              backend: config.training.backend,
              ...gpuRequirement(config),
              step: 'final',
            },
          ])));
    if (final.status !== 'completed' || !final.model) {
      throw ApplicationFailure.nonRetryable(`final training failed: ${final.error}`, 'NonFiniteLoss');
    }
    let ensemble: BuildEnsembleOutput | null = null;
    let replicas: TrainTrialOutput[] = [];
    let replicasCut = '';
    const buildsEnsemble = families && !baselineWins && config.training.ensemble.maxMembers > 1;
    if (buildsEnsemble && reused.ensemble) {
      // A resumed run takes the failed run's replicas and selection (input only new resumes carry): the ensemble
      // model it built was verified in S3 by the CLI before this run started.
      ({ replicas, built: ensemble } = reused.ensemble);
    } else if (buildsEnsemble) {
      // Deep ensemble (histories from before it replay unchanged): the best trial's parameters trained again with
      // other seeds, in parallel on the train pool; the replicas join the candidates. One that fails for good is left
      // out, not the run.
      const seeds = config.training.ensemble.seeds;
      // all seeds - 1, or (replicaBudgetSeconds, absent from older configs) those that fit the budget
      const budget = config.training.ensemble.replicaBudgetSeconds ?? undefined;
      const plan = replicaPlan({ seeds, budgetSeconds: budget, slots: config.search.parallelism, best: search.best });
      replicasCut = formatReplicaPlan(plan, budget);
      if (plan.count > 0 && patched('ensemble-seeds')) {
        const best = search.best;
        const ids = Array.from({ length: plan.count }, (_, i) => replicaId(best.trialId, i + 2));
        progress.replicas = ids;
        // a resumed run takes the replicas the failed run completed (input only new resumes carry)
        const completed = new Map((reused.replicas ?? []).map((r) => [r.trialId, r]));
        // and continues those it was training from their last checkpoints
        const continued = new Map((reused.interruptedReplicas ?? []).map((r) => [r.trialId, r.from]));
        replicas = await Promise.all(
          ids.map((trialId, i) =>
            completed.get(trialId) ?? trainOrFail(train.trainTrial, `ensemble replica ${trialId}: ${best.trialId}'s parameters, seed ${i + 2} of ${seeds}`, {
              runId,
              trialId,
              params: best.params,
              seed: deriveSeed(best.seed, REPLICA_STREAM, i + 2),
              ...data,
              backend: config.training.backend,
              ...gpuRequirement(config),
              ...(continued.has(trialId) && { resumeFrom: continued.get(trialId) }),
            }),
          ),
        );
        delete progress.replicas;
      }
      const candidates = [
        ...(reuse ? [] : [{ trialId: 'final', model: final.model, preprocessing: final.preprocessing ?? split.preprocessing }]),
        ...ensembleCandidates([...search.trials, ...replicas], split.preprocessing, better(metric)),
      ];
      ensemble = await cpu.buildEnsemble.executeWithOptions({ summary: `ensemble: up to ${config.training.ensemble.maxMembers} of ${candidates.length} networks, chosen on validation` }, [{
        runId,
        candidates,
        val: split.val,
        metric,
        maxMembers: config.training.ensemble.maxMembers,
        minGain: config.training.ensemble.minGain,
      }]);
    }
    const members = ensemble && ensemble.members.length > 1 ? ensemble.members : null;
    const shipped = {
      model: ensemble?.model ?? final.model,
      preprocessing: ensemble?.preprocessing ?? final.preprocessing ?? split.preprocessing,
      trialId: baselineWins ? 'baseline' : reuse ? final.trialId : 'final',
    };
    const family = members ? 'ensemble' : familyOf(params);
    done(
      'final',
      baselineWins
        ? `logistic baseline chosen: ${formatSelection(metric, baseline[metric])} is at least the best trial's ${formatSelection(metric, search.best[metric])}; no final training`
        : (reuse ? `${final.trialId}'s weights reused (${final.epochs} epochs), val AUC ${final.valAuc?.toFixed(4)}` : `${final.epochs} epochs on ${final.backend}, val AUC ${final.valAuc?.toFixed(4)}`) +
            (reused.final ? reusedNote : '') +
            // with replicas taken from the failed run, not all of them trained here
            (replicas.length ? `; ${replicas.filter((r) => r.status === 'completed').length} of ${replicas.length} seed replicas ${reused.replicas?.length ? 'completed' : 'trained'}` : '') +
            (replicasCut ? (replicas.length ? ` (${replicasCut})` : `; no seed replica trained (${replicasCut})`) : '') +
            (reused.replicas?.length || reused.interruptedReplicas?.length
              ? ` (${[
                  ...(reused.replicas?.length ? [`${reused.replicas.map((r) => r.trialId).join(', ')} reused from run ${input.resume!.fromRunId}`] : []),
                  ...(reused.interruptedReplicas ?? []).map((r) => `${r.trialId} continued from its epoch-${r.from.epoch} checkpoint`),
                ].join('; ')})`
              : '') +
            (members
              ? `; ensemble of ${members.length} (${members.join(', ')}), val AUC ${ensemble!.val.auc.toFixed(4)}` +
                (ensemble!.gain ? `, ${formatEnsembleGain(ensemble!.gain)}` : '')
              : ensemble
                ? `; no ensemble beat it on validation (of ${ensemble.steps.length === 1 ? 'the candidates' : ensemble.steps.length})`
                : '') +
            (reused.ensemble ? `; ensemble step${reusedNote}` : ''),
    );

    progress.stage = 'evaluate';
    const gateSummary = [
      ...config.gate.thresholds.map((t) => `${t.metric} ${t.op} ${t.value}`),
      ...(config.gate.versusBaseline.enabled ? ['vs baseline'] : []),
      ...(config.gate.versusChampion.enabled ? ['vs champion'] : []),
    ].join(', ');
    const evaluation: EvaluateOutput = await cpu.evaluateModel.executeWithOptions({ summary: `evaluate on the test split; gate: ${gateSummary}` }, [{
      runId,
      modelName: config.modelName,
      mode: ingest.mode,
      model: shipped.model,
      baseline: baseline.model,
      test: split.test,
      val: split.val,
      preprocessing: shipped.preprocessing,
      ...(baseline.preprocessing && { baselinePreprocessing: baseline.preprocessing }),
      ...(families && { shipped: { trialId: shipped.trialId, family, ...(members && { members }), ...(members && ensemble!.gain && { ensembleGain: ensemble!.gain }) } }),
      gate: config.gate,
      evaluation: config.evaluation,
      split: config.split,
    }]);
    display.set(Number.isFinite(evaluation.metrics.rocAuc) ? [{ key: TEST_AUC_ATTRIBUTE, value: evaluation.metrics.rocAuc }] : []);
    done('evaluate', `test AUC ${evaluation.metrics.rocAuc.toFixed(4)}, ${evaluation.blessed ? 'blessed' : 'not blessed'}`);

    let registered: { version: number; uri: string } | null = null;
    if (evaluation.blessed) {
      progress.stage = 'register';
      registered = await cpu.registerModel.executeWithOptions({ summary: `register ${config.modelName}${approvalRequired ? ' (pending approval)' : ''}` }, [{
        runId,
        workflowId,
        modelName: config.modelName,
        model: shipped.model,
        preprocessing: shipped.preprocessing,
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
          ...(members && { members }),
          ...(resume && { resumedFrom: { runId: resume.fromRunId, workflowId: resume.fromWorkflowId, steps: resume.steps, ...(resume.trials && { trials: resume.trials.map(reusedTrialLabel) }) } }),
        },
        ...(approvalRequired && { approvalRequired: true }),
      }]);
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
        display.outcome('awaiting_approval');
        await cpu.markAwaitingApproval.executeWithOptions({ summary: `await approval of ${config.modelName} v${registered.version} until ${approval.deadline}` }, [{
          runId, workflowId, modelName: config.modelName, version: registered.version,
          requestedAt: approval.requestedAt!, timeoutAt: approval.deadline!,
        }]);
        done('register', `${config.modelName} v${registered.version} pending approval until ${approval.deadline}: \`propensity approve|reject ${workflowId}\``);
        await condition(() => requested !== null, hours * 3_600_000);
        const d = (requested as RequestedDecision | null) ?? { decision: 'timeout' as const, by: `pipeline:${workflowId}`, reason: `no decision within ${hours} h` };
        approval.status = 'deciding';
        const decidedAt = new Date().toISOString();
        const recorded = await cpu.recordApprovalDecision.executeWithOptions({ summary: `record the decision on v${registered.version}: ${d.decision} by ${d.by}` }, [{
          runId, modelName: config.modelName, version: registered.version, decision: d.decision, by: d.by, reason: d.reason, decidedAt,
        }]);
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
    display.outcome(status, metrics.testAuc);
    display.details(
      rejection
        ? `rejected (${rejection.type}): ${rejection.message.slice(0, 500)}`
        : `registered: ${config.modelName} v${registered!.version}, test ROC-AUC ${metrics.testAuc.toFixed(4)}`,
    );
    await cpu.finishRun.executeWithOptions({ summary: `close the run: ${status}` }, [{
      runId,
      status,
      modelVersion: registered?.version,
      metrics,
      error: rejection ?? undefined,
    }]);
    // scoring.afterPromotion: score every active user with the version just promoted, as a child workflow (its
    // history holds counts only). Only configs with the key reach patched(), so older histories replay unchanged.
    let scoring: TrainPipelineOutput['scoring'] = null;
    const promoted = registered && !rejection && (!approvalRequired || approval.status === 'approved');
    const child = promoted ? scoreAfterPromotion(workflowId, config, registered!.version, queues.cpu) : null;
    if (child && patched('score-after-promotion')) {
      progress.stage = 'score';
      if (asOf) child.args[0].asOf = asOf;
      try {
        const scored: ScoreUsersOutput = await executeChild(scoreUsers, { ...child, staticSummary: `score active users with ${config.modelName} v${registered!.version}` });
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
      ...(families && { model: { ref: shipped.model, preprocessing: shipped.preprocessing, members } }),
      dataSha256: split.dataSha256,
      configHash: started.configHash,
      artifacts: { test: split.test, report: evaluation.report },
      rejection,
      approval: approvalRequired ? approval : null,
      scoring,
    };
  } catch (err) {
    const failedAt = progress.stage;
    progress.stage = 'failed';
    const cancelled = isCancellation(err);
    if (approval.status === 'awaiting') {
      // a run cancelled while it waited: its pending version can never be approved now
      await CancellationScope.nonCancellable(() =>
        cpu.recordApprovalDecision.executeWithOptions({ summary: `reject the pending v${approval.version}: the run ${cancelled ? 'was cancelled' : 'failed'}` }, [{
          runId, modelName: approval.modelName!, version: approval.version!, decision: 'rejected',
          by: `pipeline:${workflowId}`, reason: cancelled ? 'run cancelled while awaiting approval' : 'run failed while awaiting approval',
          decidedAt: new Date().toISOString(),
        }]),
      ).catch(() => undefined);
    }
    const cause = (err as { cause?: { type?: string; message?: string } }).cause;
    // Record the failure even when the workflow itself is being cancelled.
    await CancellationScope.nonCancellable(() =>
      cpu.finishRun.executeWithOptions({ summary: `close the run: ${cancelled ? 'cancelled' : 'failed'} at ${failedAt}` }, [{
        runId,
        status: cancelled ? 'cancelled' : 'failed',
        error: {
          type: cause?.type ?? (err as { type?: string }).type ?? (err as Error).name ?? 'Error',
          message: cause?.message ?? (err as Error).message ?? String(err),
        },
      }]),
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

import type { Command } from 'commander';
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import type { CleanOutput } from '../../activities/clean.js';
import type { IngestOutput } from '../../activities/ingest.js';
import type { SplitOutput } from '../../activities/split.js';
import type { TrainTrialInput, TrainTrialOutput } from '../../activities/train.js';
import type { BuildEnsembleOutput } from '../../activities/ensemble.js';
import type { InterruptedTrial, ReusableStep } from '../../pipeline/resume.js';
import type { ArtifactRef } from '../../store/artifacts.js';
import type { Services } from '../../workers/deps.js';
import type { ResumedSteps, TrainPipelineInput, TrainPipelineOutput } from '../../workflows/pipeline.js';
import type { HyperparameterSearchOutput, InterruptedSearchTrial, SearchTrialResult } from '../../workflows/search.js';
import { CliError, ExitCode, idParser, output, withTemporal } from '../common.js';
import type { findRun } from './runs.js';

// `propensity run resume <id>`: a new run of a failed run's pipeline that takes every step the failed run completed
// (ingest, clean, split, search with its baseline, final training, the ensemble with its seed replicas) from that
// run's history instead of executing it,
// after checking that nothing they depend on changed. Why a new run and not a Temporal reset: see ResumeInput in
// workflows/pipeline.ts. Heavy modules (Temporal SDK, S3, config schema) load inside the action.

interface ResumeOptions {
  config?: string;
  id?: string;
  detach?: boolean;
  json?: boolean;
}

/** What the command found and started: also its --json output with --detach. */
export interface ResumePlan {
  fromRunId: string;
  fromWorkflowId: string;
  workflowId: string;
  runId: string;
  reusedSteps: ReusableStep[];
  /**
   * trials taken one by one from a step the failed run did not complete: its search (`t003@1`: trial t003 through
   * rung 1, 0-based; `baseline`) or its ensemble step (`t010-s2`, a seed replica)
   */
  reusedTrials: string[];
  /** the first step the new run executes */
  startsAt: string;
  changedSections: string[];
  verified: { artifacts: number; hashed: number };
  /** resumes passed over because no code of theirs ever ran (cancelled before a worker started them), newest first */
  passedOver?: string[];
}

type Row = Awaited<ReturnType<typeof findRun>>;

/** Adds `run resume` to the `run` command. */
export function registerResumeCommand(run: Command): void {
  run
    .command('resume')
    .description(
      "start a new run of a failed or cancelled run's pipeline that reuses every step it completed (ingest, clean, split, search, final training, ensemble), " +
        'and the trials it completed inside a search or ensemble step it did not finish, ' +
        'once their artifacts in S3 still have their recorded sha256, and executes the rest (evaluate and later); refused, with nothing started, ' +
        'for a run that succeeded or still runs (exit 5), whose config or data changed since (exit 5), or that does not exist (exit 4)',
    )
    .argument('<id>', 'run id or workflow id (its latest run) of the failed run', idParser('runRef'))
    .option('--config <file>', 'a changed config: only sections the reused steps do not read may differ (gate, evaluation, approval, scoring)')
    .option('--id <workflowId>', "workflow id of the new run (default: the failed run's, as its next run)", idParser('workflowId'))
    .option('--detach', 'start and print the new run without following it')
    .option('--json', 'print the result as one JSON line')
    .action((id: string, o: ResumeOptions) => withTemporal((s, client) => resumeRun(s, client, id, o)));
}

async function resumeRun(s: Services, client: Client, id: string, o: ResumeOptions): Promise<void> {
  const runs = await import('./runs.js');
  let r = await recordIfStopped(s, client, await runs.findRun(s.db, id));
  await refuseUnlessResumable(s, r);
  let history = await readFailedRun(client, r);
  // A resume cancelled before any worker ran its first step (`code_version` none: `propensity cancel` wrote its row)
  // did nothing and copied no records: the run it was resuming is resumed instead, so the new run's records are whole.
  const passedOver: string[] = [];
  while (r.code_version === 'none' && history.input.resume) {
    passedOver.push(r.run_id);
    r = await runs.findRun(s.db, history.input.resume.fromRunId);
    await refuseUnlessResumable(s, r);
    history = await readFailedRun(client, r);
  }
  const { reusablePrefix, reusableReplicas, reusableSearchResults, reusableBaseline, reusableInterrupted, reusableInterruptedReplicas, carriedInterrupted, reusedTrials: taken, reusedTrialLabel, firstExecutedStep, stepsRead } = await import(
    '../../pipeline/resume.js'
  );
  const steps: ResumedSteps = reusablePrefix(history.steps);
  const reusedSteps = Object.keys(steps) as ReusableStep[];
  // trials taken one by one from the step the failed run was in when it stopped: its search, or its ensemble step
  const replicas = reusableReplicas(steps, history.replicas);
  if (replicas.length) steps.replicas = replicas;
  const results = reusableSearchResults(steps, history.searchTrials.results);
  const baseline = reusableBaseline(steps, history.searchTrials.baseline);
  // trials it was still training (or had been given to continue and never started), continued from their last
  // checkpoints where the rule takes them
  const earlier = history.input.resume?.steps;
  const interrupted =
    steps.split && !steps.search
      ? await lastCheckpoints(
          s,
          r.run_id,
          steps.split.train.bucket,
          carriedInterrupted(history.interrupted, earlier?.searchTrials?.interrupted ?? [], history.started.search),
          (candidates) => reusableInterrupted(steps, history.searchTrials.results, candidates),
          earlier?.searchTrials?.interrupted,
        )
      : [];
  if (results.length || baseline || interrupted.length) {
    steps.searchTrials = { results, ...(baseline && { baseline }), ...(interrupted.length && { interrupted }) };
  }
  // seed replicas it was still training, continued the same way once the search is taken whole
  const interruptedReplicas =
    steps.split && steps.search && !steps.ensemble
      ? await lastCheckpoints(
          s,
          r.run_id,
          steps.split.train.bucket,
          carriedInterrupted(history.interruptedReplicas, earlier?.interruptedReplicas ?? [], history.started.replicas),
          (candidates) => reusableInterruptedReplicas(steps, candidates),
          earlier?.interruptedReplicas,
        )
      : [];
  if (interruptedReplicas.length) steps.interruptedReplicas = interruptedReplicas;
  const reusedTrials = taken(steps).map(reusedTrialLabel);
  const { raw, changed, buildsEnsemble } = await checkConfig(r, history, stepsRead(reusedSteps, reusedTrials), o.config);
  const verified = await verifyArtifacts(s, steps, r.run_id);

  const { WorkflowExecutionAlreadyStartedError } = await import('@temporalio/client');
  // no silent waits: the run's queues (and its config's training pool) must have workers before anything starts
  const { pipelineNeeds, requireWorkers } = await import('../preflight.js');
  const { DEFAULT_POOL, TASK_QUEUES } = await import('../../workflows/constants.js');
  const pool = (raw as { training?: { pool?: string } } | null)?.training?.pool ?? DEFAULT_POOL;
  await requireWorkers(client, pipelineNeeds({ cpu: history.taskQueue, train: history.input.taskQueues?.train ?? TASK_QUEUES.train }, pool));
  const workflowId = o.id ?? r.workflow_id;
  const startsAt = firstExecutedStep(reusedSteps, buildsEnsemble);
  const input: TrainPipelineInput = {
    config: raw,
    trigger: 'resume',
    ...(history.asOf && { asOf: history.asOf }),
    ...(history.input.taskQueues && { taskQueues: history.input.taskQueues }),
    resume: { fromRunId: r.run_id, fromWorkflowId: r.workflow_id, steps },
  };
  let handle;
  try {
    handle = await client.workflow.start<(i: TrainPipelineInput) => Promise<TrainPipelineOutput>>('trainPipeline', {
      taskQueue: history.taskQueue,
      workflowId,
      args: [input],
      staticSummary: `resume of ${r.workflow_id} (run ${r.run_id}) from ${startsAt}, reusing ${reusedSteps.join(', ') || 'nothing'}`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new CliError(`workflow id ${workflowId} has a run that is still open: wait for it, cancel it, or pass --id`, ExitCode.conflict, 'NotResumable');
    }
    throw err;
  }
  const plan: ResumePlan = {
    fromRunId: r.run_id,
    fromWorkflowId: r.workflow_id,
    workflowId,
    runId: handle.firstExecutionRunId,
    reusedSteps,
    reusedTrials,
    startsAt,
    changedSections: changed,
    verified,
    ...(passedOver.length && { passedOver }),
  };
  const head =
    (passedOver.length ? `run ${passedOver.join(', then run ')} never started (cancelled before a worker ran it): resuming the run it was resuming; ` : '') +
    `resumed ${r.workflow_id} (run ${r.run_id}) as ${workflowId} (run ${plan.runId}): ` +
    `reused ${reusedSteps.join(', ') || 'nothing'}${reusedTrials.length ? ` and trials ${reusedTrials.join(', ')}` : ''} (${verified.artifacts} artifacts verified, ${verified.hashed} by their sha256), starting at ${startsAt}` +
    (changed.length ? `; config sections changed: ${changed.join(', ')}` : '');
  if (o.detach) {
    output(o.json, plan, () => head);
    return;
  }
  if (!o.json) console.log(`${head}; Ctrl-C stops following, not the run`);
  const { followPipeline } = await import('../follow.js');
  const out = await followPipeline(client, handle, o.json ? () => {} : console.log);
  output(o.json, { ...out, resume: plan }, () =>
    out.status === 'registered'
      ? `registered: ${out.modelName} v${out.modelVersion} (test ROC-AUC ${out.metrics.testAuc.toFixed(4)}) at ${out.modelUri}`
      : `rejected: ${out.modelName} test ROC-AUC ${out.metrics.testAuc.toFixed(4)}: ${out.gate.reasons.join('; ')}`,
  );
  process.exitCode = out.status === 'registered' ? ExitCode.ok : ExitCode.notRegistered;
}

/**
 * A run its record calls running whose execution was cancelled or terminated outside `propensity cancel` (the Web UI,
 * `temporal workflow terminate`) never recorded its end: it is recorded as cancelled now, as `propensity cancel`
 * records it, so it can be resumed. Any other run is returned as it is.
 */
async function recordIfStopped(s: Services, client: Client, r: Row): Promise<Row> {
  if (r.status !== 'running' && r.status !== 'awaiting_approval') return r;
  const d = await client.workflow.getHandle(r.workflow_id, r.run_id).describe();
  const type = d.status.name === 'TERMINATED' ? 'Terminated' : d.status.name === 'CANCELLED' ? 'Cancelled' : null;
  if (!type) return r;
  const { recordCancelled } = await import('./cancel.js');
  const message = `${type === 'Terminated' ? 'terminated' : 'cancelled'} outside propensity (Temporal: ${d.status.name}); recorded by \`propensity run resume\``;
  await recordCancelled(s.db, client, { workflowId: r.workflow_id, runId: r.run_id, workflowType: d.type, startTime: d.startTime }, { type, message });
  return { ...r, status: 'cancelled' };
}

/** Only a failed or cancelled run resumes, and only once at a time. */
async function refuseUnlessResumable(s: Services, r: Row): Promise<void> {
  const name = `run ${r.run_id} (${r.workflow_id})`;
  if (r.status === 'registered' || r.status === 'rejected') {
    throw new CliError(`${name} finished (${r.status}): only a failed or cancelled run can be resumed; start a new one with \`propensity run\``, ExitCode.conflict, 'NotResumable');
  }
  if (r.status === 'running' || r.status === 'awaiting_approval') {
    throw new CliError(`${name} is still ${r.status.replace('_', ' ')}: only a failed or cancelled run can be resumed (\`propensity cancel\` ends it)`, ExitCode.conflict, 'NotResumable');
  }
  const resumedBy = await s.db.db
    .selectFrom('ml.pipeline_runs')
    .select(['run_id', 'workflow_id', 'status'])
    .where('resumed_from_run_id', '=', r.run_id)
    .where('status', 'not in', ['failed', 'cancelled'])
    .executeTakeFirst();
  if (resumedBy) {
    throw new CliError(
      `${name} was already resumed by run ${resumedBy.run_id} (${resumedBy.workflow_id}), which is ${resumedBy.status}`,
      ExitCode.conflict,
      'NotResumable',
    );
  }
}

interface FailedRun {
  input: TrainPipelineInput;
  taskQueue: string;
  asOf: string | undefined;
  /** every reusable output the run completed or itself reused */
  steps: ResumedSteps;
  /** its seed replicas (completed, or failed for good), also when its ensemble step did not complete */
  replicas: TrainTrialOutput[];
  /** its search's trial results at each rung and its baseline, also when its search did not complete */
  searchTrials: { results: SearchTrialResult[]; baseline?: TrainTrialOutput };
  /** the search trials it was still training when it stopped, each in its rung */
  interrupted: { trialId: string; rung: number }[];
  /** the seed replicas it was still training when it stopped (rung 0, as their ml.trials rows) */
  interruptedReplicas: { trialId: string; rung: number }[];
  /** every training it scheduled: in its search child, and the seed replicas (rung 0) */
  started: { search: { trialId: string; rung: number }[]; replicas: { trialId: string; rung: number }[] };
}

/**
 * Where each trial the failed run was still training (or had been given to continue and never started:
 * `carriedInterrupted`) had got to, among those `keep` (the pure rule) would take: the
 * last epoch whose checkpoint it wrote in the rung it was in (its ml.trials row's curve, written after each
 * checkpoint; the epoch before when the last one's files are not both there), or, when it wrote none there, the
 * checkpoint it had itself been given by the run it resumed. Each ref carries the sha256 its files were written
 * with; `verifyArtifacts` reads and hashes them with every other artifact the new run takes.
 */
async function lastCheckpoints(
  s: Services,
  runId: string,
  bucket: string,
  open: { trialId: string; rung: number }[],
  keep: (candidates: InterruptedTrial[]) => InterruptedTrial[],
  earlier: readonly InterruptedSearchTrial[] = [],
): Promise<InterruptedSearchTrial[]> {
  if (!open.length) return [];
  const { HeadObjectCommand } = await import('@aws-sdk/client-s3');
  const { keys } = await import('../../store/artifacts.js');
  const rows = await s.db.db.selectFrom('ml.trials').select(['trial_id', 'rung', 'curve']).where('run_id', '=', runId).where('trial_id', 'in', open.map((t) => t.trialId)).execute();
  // a checkpoint file the failed run wrote, with the sha256 stored with it; null when it is not there (403: a store
  // that hides missing keys)
  const file = async (key: string): Promise<ArtifactRef | null> => {
    try {
      const head = await s.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { bucket, key, sha256: head.Metadata?.sha256 ?? '', bytes: head.ContentLength ?? 0 };
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404 || status === 403 || (err as Error).name === 'NotFound') return null;
      throw err;
    }
  };
  const candidates = open.flatMap((t) => {
    const row = rows.find((x) => x.trial_id === t.trialId);
    if (!row || row.rung !== t.rung) return [];
    return [{ ...t, epoch: Math.max(0, ...((row.curve ?? []) as { epoch: number }[]).map((p) => p.epoch)) }];
  });
  const found: InterruptedSearchTrial[] = [];
  for (const t of keep(candidates)) {
    let from: InterruptedSearchTrial['from'] | undefined;
    for (const epoch of [t.epoch, t.epoch - 1].filter((e) => e >= 1)) {
      const [modelJson, weights] = await Promise.all(['model.json', 'weights.bin'].map((f) => file(keys.trialCheckpoint(runId, t.trialId, epoch, f))));
      if (modelJson && weights) {
        from = { ref: { modelJson, weights }, epoch };
        break;
      }
    }
    const before = earlier.find((e) => e.trialId === t.trialId && e.rung === t.rung);
    if (!from && before) from = before.from;
    if (from) found.push({ trialId: t.trialId, rung: t.rung, from });
  }
  // the rule again, at the epochs found (one before the curve's last, or the earlier run's)
  const kept = keep(found.map((f) => ({ trialId: f.trialId, rung: f.rung, epoch: f.from.epoch })));
  return found.filter((f) => kept.some((k) => k.trialId === f.trialId));
}

/**
 * The failed run's input and the outputs of its completed steps, from its Temporal history: ActivityTaskCompleted
 * results of ingestSource, cleanData, splitData, the baseline, final and replica trainTrials and buildEnsemble, and
 * the search child's ChildWorkflowExecutionCompleted result, or, when the search step did not complete (its child, or
 * the baseline beside it), the trainTrial results in the search child's own history. These are what the steps
 * returned — claim checks, counts and metrics. A replica that failed for good (its ActivityTaskFailed or
 * ActivityTaskTimedOut event) is rebuilt as the failed trial the run recorded.
 */
async function readFailedRun(client: Client, r: Row): Promise<FailedRun> {
  const { WorkflowNotFoundError } = await import('@temporalio/client');
  const { decodeFromPayloadsAtIndex } = await import('@temporalio/common/lib/internal-non-workflow/index.js');
  const converter = client.options.loadedDataConverter;
  const { isReplicaId } = await import('../../workflows/inputs.js');
  const decode = <T>(payloads: temporal.api.common.v1.IPayloads | null | undefined) => decodeFromPayloadsAtIndex<T>(converter, 0, payloads?.payloads);
  let events: temporal.api.history.v1.IHistoryEvent[];
  try {
    events = (await client.workflow.getHandle(r.workflow_id, r.run_id).fetchHistory()).events ?? [];
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
    throw new CliError(
      `run ${r.run_id} (${r.workflow_id}) has no history on the Temporal server any more (past the namespace's retention): its step outputs cannot be read; start a new run`,
      ExitCode.conflict,
      'NotResumable',
    );
  }
  const started = events[0]?.workflowExecutionStartedEventAttributes;
  if (!started) throw new CliError(`run ${r.run_id}: its history does not start with WorkflowExecutionStarted`, ExitCode.error, 'NotResumable');
  if (started.workflowType?.name !== 'trainPipeline') {
    throw new CliError(`run ${r.run_id} is a ${started.workflowType?.name} workflow, not a pipeline run`, ExitCode.conflict, 'NotResumable');
  }
  const input = await decode<TrainPipelineInput>(started.input);
  const steps: ResumedSteps = { ...input.resume?.steps };
  const scheduled = new Map<string, { type: string; input: temporal.api.common.v1.IPayloads | null | undefined }>();
  let search: HyperparameterSearchOutput | undefined;
  let baseline: TrainTrialOutput | undefined;
  let built: BuildEnsembleOutput | undefined;
  let searchRun: temporal.api.common.v1.IWorkflowExecution | undefined;
  // replicas it took from the run it resumed, and those it trained
  const replicas: TrainTrialOutput[] = [...(input.resume?.steps.replicas ?? [])];
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(String(e.eventId), { type: s.activityType?.name ?? '', input: s.input });
    const done = e.activityTaskCompletedEventAttributes;
    if (done) {
      const activity = scheduled.get(String(done.scheduledEventId));
      if (activity?.type === 'ingestSource') steps.ingest = await decode<IngestOutput>(done.result);
      else if (activity?.type === 'cleanData') steps.clean = await decode<CleanOutput>(done.result);
      else if (activity?.type === 'splitData') steps.split = await decode<SplitOutput>(done.result);
      else if (activity?.type === 'trainTrial') {
        const { trialId } = await decode<{ trialId: string }>(activity.input);
        if (trialId === 'baseline') baseline = await decode<TrainTrialOutput>(done.result);
        else if (trialId === 'final') steps.final = await decode<TrainTrialOutput>(done.result);
        else if (isReplicaId(trialId)) replicas.push(await decode<TrainTrialOutput>(done.result));
      } else if (activity?.type === 'buildEnsemble') built = await decode<BuildEnsembleOutput>(done.result);
    }
    // a replica whose attempts were spent is a failed trial in the run
    const spent = await spentTrainTrial(client, e, (id) => {
      const activity = scheduled.get(id);
      return activity?.type === 'trainTrial' ? activity.input : undefined;
    });
    if (spent && isReplicaId(spent.rebuilt.trialId)) replicas.push(spent.rebuilt);
    const child = e.childWorkflowExecutionCompletedEventAttributes;
    if (child?.workflowType?.name === 'hyperparameterSearch') search = await decode<HyperparameterSearchOutput>(child.result);
    const childStarted = e.childWorkflowExecutionStartedEventAttributes;
    if (childStarted?.workflowType?.name === 'hyperparameterSearch') searchRun = childStarted.workflowExecution ?? undefined;
  }
  const { searchFromHistory } = await import('../../pipeline/resume.js');
  // read unless the search step is whole: a completed child whose baseline failed or was interrupted keeps its results
  const child = (search && (baseline ?? input.resume?.steps.searchTrials?.baseline)) || !searchRun ? { results: [], interrupted: [], started: [] } : await searchResults(client, searchRun);
  const fromHistory = searchFromHistory({ search, baseline, earlier: input.resume?.steps.searchTrials, results: child.results });
  if (fromHistory.search) steps.search = fromHistory.search;
  const searchTrials = fromHistory.trials;
  delete steps.searchTrials;
  // the replicas in the order the workflow started them (their ids), as the ensemble's candidates listed them
  replicas.sort((a, b) => a.trialId.localeCompare(b.trialId, 'en', { numeric: true }));
  if (built) steps.ensemble = { replicas, built };
  // which replicas a resume may take one by one is decided with the prefix (reusableReplicas), from `replicas`, and
  // which it continues (reusableInterruptedReplicas) from `interruptedReplicas`
  delete steps.replicas;
  delete steps.interruptedReplicas;
  const trainings = await trainTrialActivities(events, decode);
  const ofReplicas = (list: { trialId: string; rung: number }[]) => list.filter((t) => isReplicaId(t.trialId));
  // The failed run's as-of time, so its config resolves to the same cutoff: its input's, else its schedule's.
  const scheduledFor = started.searchAttributes?.indexedFields?.TemporalScheduledStartTime;
  const scheduledAt = scheduledFor ? await decode<unknown>({ payloads: [scheduledFor] }) : undefined;
  const at = Array.isArray(scheduledAt) ? scheduledAt[0] : scheduledAt;
  const asOf = input.asOf ?? (at ? new Date(at as string).toISOString() : undefined);
  return {
    input,
    taskQueue: started.taskQueue?.name ?? 'propensity-cpu',
    asOf,
    steps,
    replicas,
    searchTrials,
    interrupted: child.interrupted,
    interruptedReplicas: ofReplicas(trainings.open),
    started: { search: child.started, replicas: ofReplicas(trainings.started) },
  };
}

/**
 * The trial results in the history of a search that did not complete, each at its rung: completions, and trials whose
 * attempts were spent (failed or timed out), rebuilt as the failed trial the search recorded (trainOrFail). A trial
 * cancelled with the run was interrupted, not failed: it has neither.
 */
async function searchResults(
  client: Client,
  run: temporal.api.common.v1.IWorkflowExecution,
): Promise<{ results: SearchTrialResult[]; interrupted: { trialId: string; rung: number }[]; started: { trialId: string; rung: number }[] }> {
  const { decodeFromPayloadsAtIndex } = await import('@temporalio/common/lib/internal-non-workflow/index.js');
  const converter = client.options.loadedDataConverter;
  const decode = <T>(payloads: temporal.api.common.v1.IPayloads | null | undefined) => decodeFromPayloadsAtIndex<T>(converter, 0, payloads?.payloads);
  const events = (await client.workflow.getHandle(run.workflowId!, run.runId ?? undefined).fetchHistory()).events ?? [];
  const scheduled = new Map<string, temporal.api.common.v1.IPayloads | null | undefined>();
  const out: SearchTrialResult[] = [];
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s?.activityType?.name === 'trainTrial') scheduled.set(String(e.eventId), s.input);
    const done = e.activityTaskCompletedEventAttributes;
    const input = done && scheduled.get(String(done.scheduledEventId));
    if (done && input) {
      const { rung } = await decode<TrainTrialInput>(input);
      out.push({ rung: rung ?? 0, result: await decode<TrainTrialOutput>(done.result) });
    }
    const spent = await spentTrainTrial(client, e, (id) => scheduled.get(id));
    if (spent) out.push({ rung: spent.input.rung ?? 0, result: spent.rebuilt });
  }
  const trainings = await trainTrialActivities(events, decode);
  return { results: out, interrupted: trainings.open, started: trainings.started };
}

/**
 * The trainTrial activities of a history, each as its trial and rung (0 when the input has none): every one it
 * scheduled, and those still open when it stopped (neither completed, failed nor timed out: the trial was still
 * training, or was cancelled with the run).
 */
async function trainTrialActivities(
  events: temporal.api.history.v1.IHistoryEvent[],
  decode: <T>(payloads: temporal.api.common.v1.IPayloads | null | undefined) => Promise<T>,
): Promise<{ started: { trialId: string; rung: number }[]; open: { trialId: string; rung: number }[] }> {
  const inputs = new Map<string, temporal.api.common.v1.IPayloads | null | undefined>();
  const open = new Set<string>();
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s?.activityType?.name === 'trainTrial') {
      inputs.set(String(e.eventId), s.input);
      open.add(String(e.eventId));
    }
    const closed = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes;
    if (closed) open.delete(String(closed.scheduledEventId));
  }
  const trial = async (id: string) => {
    const { trialId, rung } = await decode<TrainTrialInput>(inputs.get(id));
    return { trialId, rung: rung ?? 0 };
  };
  return { started: await Promise.all([...inputs.keys()].map(trial)), open: await Promise.all([...open].map(trial)) };
}

/**
 * A trainTrial whose attempts were spent (its ActivityTaskFailed or ActivityTaskTimedOut event), as the failed trial
 * the workflow recorded (trainOrFail): from its input and the failure it saw as the ActivityFailure's cause. Null for
 * any other event, or one whose scheduling `inputOf` does not know as a trainTrial.
 */
async function spentTrainTrial(
  client: Client,
  e: temporal.api.history.v1.IHistoryEvent,
  inputOf: (scheduledEventId: string) => temporal.api.common.v1.IPayloads | null | undefined,
): Promise<{ input: TrainTrialInput; rebuilt: TrainTrialOutput } | null> {
  const spent = e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes;
  const payloads = spent && inputOf(String(spent.scheduledEventId));
  if (!spent || !payloads) return null;
  const [{ decodeFromPayloadsAtIndex }, { failedTrial }] = await Promise.all([import('@temporalio/common/lib/internal-non-workflow/index.js'), import('../../workflows/inputs.js')]);
  const converter = client.options.loadedDataConverter;
  const input = await decodeFromPayloadsAtIndex<TrainTrialInput>(converter, 0, payloads.payloads);
  return { input, rebuilt: failedTrial(input, { cause: converter.failureConverter.failureToError(spent.failure ?? {}, converter.payloadConverter) }) };
}

/**
 * The new run's config: the failed run's own input, or --config. Either way it must resolve (with the failed run's
 * as-of time) to the same sections the reused steps read: a section that differs — edited in the file, or parsed
 * differently by today's code — is refused by name (InputsChanged).
 */
async function checkConfig(r: Row, { input, asOf }: FailedRun, reused: ReusableStep[], file: string | undefined): Promise<{ raw: unknown; changed: string[]; buildsEnsemble: boolean }> {
  const [{ parsePipelineConfig, configHash }, { applyAsOf }, { changedSections, upstreamChanges, describeUpstreamChanges }] = await Promise.all([
    import('../../pipeline/config.js'),
    import('../../pipeline/as-of.js'),
    import('../../pipeline/resume.js'),
  ]);
  let raw = input.config;
  if (file) {
    const { loadConfigFile } = await import('../config-file.js');
    raw = loadConfigFile(file).raw;
  }
  let config;
  try {
    config = applyAsOf(parsePipelineConfig(raw), asOf);
  } catch (err) {
    const where = file ?? `run ${r.run_id}'s config`;
    throw new CliError(`${where}: ${(err as Error).message}${file ? '' : '; pass --config with a corrected one'}`, file ? ExitCode.usage : ExitCode.conflict, file ? 'InvalidConfig' : 'NotResumable');
  }
  const changed = changedSections(r.config as Record<string, unknown>, config as unknown as Record<string, unknown>);
  const upstream = upstreamChanges(reused, changed);
  if (upstream.length) {
    const hash = configHash(config);
    throw new CliError(
      `cannot resume run ${r.run_id}: ${describeUpstreamChanges(upstream)} (config hash ${r.config_hash} → ${hash})` +
        (file ? '' : ": today's code reads the run's config differently") +
        '; start a new run instead',
      ExitCode.conflict,
      'InputsChanged',
    );
  }
  return { raw, changed, buildsEnsemble: config.training.ensemble.maxMembers > 1 };
}

/**
 * Every artifact a reused step produced must still be what the failed run recorded: the ones the new run reads
 * (the split, the models, the data of the last reused data step) are downloaded and hashed, the others are checked
 * by the sha256 stored with the object. A missing or changed object is InputsChanged, naming it.
 */
async function verifyArtifacts(s: Services, steps: ResumedSteps, runId: string): Promise<{ artifacts: number; hashed: number }> {
  const { HeadObjectCommand } = await import('@aws-sdk/client-s3');
  const { sha256, s3Uri } = await import('../../store/artifacts.js');
  const { lastRungs } = await import('../../pipeline/resume.js');
  const lastTaken = lastRungs(steps.searchTrials?.results ?? []).map((r) => r.result);
  let read: { step: string; ref: ArtifactRef }[] = [];
  let head: { step: string; ref: ArtifactRef }[] = [];
  const lastData = steps.split ? 'split' : steps.clean ? 'clean' : 'ingest';
  for (const ref of steps.ingest?.raw.shards ?? []) (lastData === 'ingest' ? read : head).push({ step: 'ingest', ref });
  for (const ref of steps.clean?.clean.shards ?? []) (lastData === 'clean' ? read : head).push({ step: 'clean', ref });
  if (steps.split) for (const ref of [steps.split.train, steps.split.val, steps.split.test, steps.split.preprocessing]) read.push({ step: 'split', ref });
  const models = [
    ['search', steps.search?.baseline.model],
    ['search', steps.search?.search.best.model],
    ['final', steps.final?.model],
    // the averaged model the new run evaluates and registers (absent when one member was chosen: a model above or a
    // replica), and each replica's own model
    ['ensemble', steps.ensemble?.built.model],
    ...(steps.ensemble?.replicas ?? []).map((r) => ['ensemble', r.model] as const),
    // replicas taken one by one from an ensemble step that did not complete
    ...(steps.replicas ?? []).map((r) => ['ensemble', r.model] as const),
    // the baseline and each trial's result at its last rung taken from a search that did not complete, with the
    // checkpoint its next rung continues from
    ['search', steps.searchTrials?.baseline?.model],
    ...lastTaken.flatMap((r) => [['search', r.model] as const, ['search', r.checkpoint?.ref] as const]),
    // the checkpoint each interrupted trial continues from: the failed run's own, or one an earlier run gave it
    ...(steps.searchTrials?.interrupted ?? []).map((t) => [`search, ${t.trialId}'s checkpoint`, t.from.ref] as const),
    ...(steps.interruptedReplicas ?? []).map((t) => [`ensemble, ${t.trialId}'s checkpoint`, t.from.ref] as const),
  ] as const;
  for (const [step, m] of models) if (m) read.push({ step, ref: m.modelJson }, { step, ref: m.weights });
  for (const r of lastTaken) if (r.preprocessing) read.push({ step: 'search', ref: r.preprocessing });
  // a replica's own encoding, which the ensemble step reads for it (ensembleCandidates)
  for (const r of [...(steps.ensemble?.replicas ?? []), ...(steps.replicas ?? [])]) if (r.preprocessing) read.push({ step: 'ensemble', ref: r.preprocessing });
  // the ensemble's preprocessing: its members' encodings side by side, written by the step when they differ
  if (steps.ensemble) read.push({ step: 'ensemble', ref: steps.ensemble.built.preprocessing });

  // an object two steps share (the split's preprocessing as the ensemble's, say) is checked once
  const unique = <T extends { ref: ArtifactRef }>(list: T[]) => [...new Map(list.map((x) => [`${x.ref.bucket}/${x.ref.key}`, x])).values()];
  read = unique(read);
  head = unique(head).filter((h) => !read.some((x) => x.ref.bucket === h.ref.bucket && x.ref.key === h.ref.key));
  const problems: string[] = [];
  const status = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  await Promise.all([
    ...read.map(async ({ step, ref }) => {
      try {
        const digest = sha256(await s.store.getKey(ref.key, ref.bucket));
        if (digest !== ref.sha256) problems.push(`${s3Uri(ref.bucket, ref.key)} (${step}) has sha256 ${digest.slice(0, 12)}…, recorded ${ref.sha256 ? `${ref.sha256.slice(0, 12)}…` : 'none (no sha256 stored with it)'}`);
      } catch (err) {
        if (status(err) !== 404 && (err as Error).name !== 'NoSuchKey') throw err;
        problems.push(`${s3Uri(ref.bucket, ref.key)} (${step}) no longer exists`);
      }
    }),
    ...head.map(async ({ step, ref }) => {
      try {
        const res = await s.s3.send(new HeadObjectCommand({ Bucket: ref.bucket, Key: ref.key }));
        const stored = res.Metadata?.sha256;
        if (stored !== ref.sha256) problems.push(`${s3Uri(ref.bucket, ref.key)} (${step}) carries sha256 ${stored?.slice(0, 12) ?? 'none'}…, recorded ${ref.sha256.slice(0, 12)}…`);
      } catch (err) {
        if (status(err) !== 404 && (err as Error).name !== 'NotFound') throw err;
        problems.push(`${s3Uri(ref.bucket, ref.key)} (${step}) no longer exists`);
      }
    }),
  ]);
  if (problems.length) {
    problems.sort();
    throw new CliError(
      `cannot resume run ${runId}: ${problems.length} artifact(s) it would reuse changed since they were written: ${problems.slice(0, 5).join('; ')}` +
        `${problems.length > 5 ? `; … ${problems.length - 5} more` : ''}; start a new run instead`,
      ExitCode.conflict,
      'InputsChanged',
    );
  }
  return { artifacts: read.length + head.length, hashed: read.length };
}

import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Db } from '../../db/client.js';
import { createS3Client } from '../../infra/index.js';
import { sha256, type ArtifactStore } from '../../store/artifacts.js';
import { progressQuery, trainPipeline, type TrainPipelineOutput } from '../../workflows/pipeline.js';
import type { hyperparameterSearch } from '../../workflows/search.js';
import { lastJson, runCli } from '../support/cli.js';
import { drainedAfterEpoch, stall } from '../support/drain.js';
import { pipelineHarness, type PipelineHarness } from '../support/pipeline-harness.js';
import { connections } from '../support/services.js';

// `propensity run resume` on the real dev stack: a run fails at evaluate (its cpu worker's evaluate crashes, as a
// defect shipped in a worker image would), the fix is deployed (workers with the real activities), and the resumed
// run — with a gate section changed on the way — completes without executing ingest, clean, split, the search or the
// final training again. Bad input is refused with its type and exit code, and nothing starts.
let h: PipelineHarness;
let db: Db;
let dbUrl: string;
let store: ArtifactStore;
let client: Client;
let cutoff: string;
let queues: { cpu: string; train: string };
const dir = mkdtempSync(path.join(os.tmpdir(), 'resume-test-'));

beforeAll(async () => {
  h = await pipelineHarness('resume', { users: 1500, days: 40, seed: 17, horizonDays: 14 }, 'ERROR');
  ({ db, dbUrl, store, client, cutoff, queues } = h);
});

afterAll(async () => {
  await h?.close();
});

type Activities = ReturnType<typeof createActivities>;

/** Runs `fn` with a cpu and a train worker on this file's queues; `faulty` replaces activities (a broken image). */
const withWorkers = <T>(fn: () => Promise<T>, faulty: Partial<Activities> = {}): Promise<T> => h.withWorkers(fn, { faulty });

const config = (over: Record<string, unknown> = {}) => ({
  modelName: 'resumed',
  source: { kind: 'events', cutoff, horizonDays: 14 },
  // no baseline shortcut: the failed run trains a final model, so the resume reuses the final training too
  search: { trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 }, baselineCompetes: false },
  // retrained final model, one network: the final step is a training this resume can reuse
  training: { finalEpochs: 3, backend: 'wasm', final: 'retrain', ensemble: { maxMembers: 1 } },
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.55 }], versusBaseline: { enabled: false } },
  evaluation: { bootstrapSamples: 10, importanceRepeats: 0 },
  ...over,
});

const configFile = (name: string, value: unknown) => {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify(value));
  return file;
};

/** A defect shipped in a worker image: the step's activity fails for good. */
const evaluateCrashes = async (): Promise<never> => {
  throw ApplicationFailure.nonRetryable('evaluate crashed: the worker image shipped a defect in the evaluation step', 'EvaluateCrashed');
};
/** Three one-epoch trials, the best one replicated with seeds 2 and 3, all of them ensemble candidates. */
const replicasConfig = (modelName: string) =>
  config({
    modelName,
    search: { trials: 3, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 }, baselineCompetes: false },
    training: { backend: 'wasm', final: 'reuse', ensemble: { maxMembers: 4, minGain: 0, seeds: 3, replicaBudgetSeconds: null } },
  });
/** trainTrial whose third seed's replica fails for good (its attempts spent): the run goes on without it. */
const thirdReplicaFails = (real: Activities): Activities['trainTrial'] => async (input) => {
  if (/-s3$/.test(input.trialId)) throw ApplicationFailure.nonRetryable(`replica ${input.trialId}: out of memory on this worker`, 'ReplicaCrashed');
  return real.trainTrial(input);
};

const cli = (...args: string[]) => runCli(args, { databaseUrl: dbUrl });
/** Polls `probe` every 200 ms until it answers; after `ms`, fails naming what it waited for (and `context()`, if given). */
async function waitUntil<T>(what: string, probe: () => Promise<T | null | undefined | false>, context?: () => Promise<unknown>, ms = 60_000): Promise<T> {
  for (const deadline = Date.now() + ms; ; ) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${context ? `: ${JSON.stringify(await context())}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
/** The seed replicas' executions of a run, the best trial's id replaced by `best`: [['best-s2', 'succeeded'], …]. */
const replicaExecutions = async (runId: string) =>
  (await db.db.selectFrom('ml.run_steps').select(['trial_id', 'status']).where('run_id', '=', runId).where('trial_id', '~', '-s[0-9]+$').orderBy('trial_id').execute()).map(
    (r) => [r.trial_id.replace(/^t\d+/, 'best'), r.status],
  );
/** A run's detail line for one stage, from its progress query. */
const stageDetail = async (workflowId: string, runId: string, stage: string) =>
  (await client.workflow.getHandle(workflowId, runId).query(progressQuery)).completed.find((c) => c.stage === stage)?.detail;
/**
 * `propensity run resume <workflowId> --detach --json` with workers up (`faulty` replacing activities), the new run
 * followed to its end: the CLI's result, its plan, the run's output, and the detail of its `stage` line if asked.
 */
async function resumeAndFollow(workflowId: string, opts: { stage?: string; faulty?: Partial<Activities> } = {}) {
  return withWorkers(async () => {
    const res = await cli('run', 'resume', workflowId, '--detach', '--json');
    if (res.code !== 0) return { res, plan: null, out: null, detail: undefined };
    const plan = lastJson(res.stdout);
    const out = await client.workflow.getHandle(plan.workflowId, plan.runId).result();
    return { res, plan, out, detail: opts.stage ? await stageDetail(plan.workflowId, plan.runId, opts.stage) : undefined };
  }, opts.faulty);
}
/**
 * `propensity run resume <workflowId> --detach --json` with workers up (`faulty` replacing activities), the new run
 * cancelled once `ready` holds (waiting for `what`) and followed to its end: the CLI's plan.
 */
async function resumeAndCancel(workflowId: string, what: string, ready: () => boolean, faulty: Partial<Activities>) {
  return withWorkers(async () => {
    const res = await cli('run', 'resume', workflowId, '--detach', '--json');
    expect(res.code, res.stderr).toBe(0);
    const plan = lastJson(res.stdout);
    await waitUntil(what, async () => ready());
    const handle = client.workflow.getHandle(plan.workflowId, plan.runId);
    await handle.cancel();
    await handle.result().catch(() => undefined);
    return plan;
  }, faulty);
}
/** The trainTrial activities a run's search child scheduled, in order, with their inputs. */
const searchTrainings = async (workflowId: string) =>
  (await client.workflow.getHandle(`${workflowId}/search`).fetchHistory()).events!.flatMap((e) =>
    e.activityTaskScheduledEventAttributes
      ? [defaultPayloadConverter.fromPayload(e.activityTaskScheduledEventAttributes.input!.payloads![0] as never) as { trialId: string; runId: string; rung: number; resumeFrom?: { ref: { modelJson: { key: string } }; epoch: number } }]
      : [],
  );
const runCount = async () => Number((await db.db.selectFrom('ml.pipeline_runs').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
const closedRuns = async (workflowId: string) => {
  let n = 0;
  for await (const _ of client.workflow.list({ query: `WorkflowId = "${workflowId}"` })) n++;
  return n;
};

/**
 * `run resume <workflowId>` with the object at `key` overwritten by other bytes under the sha256 they were written
 * with (as a copy gone wrong leaves them), then put back: the CLI's result, and whether a run started.
 */
async function resumeWithTampered(workflowId: string, key: string) {
  const bytes = await store.getKey(key);
  const s3 = createS3Client(connections().s3);
  const before = await runCount();
  try {
    await s3.send(new PutObjectCommand({ Bucket: store.bucket, Key: key, Body: new Uint8Array([...bytes.slice(0, -1), bytes.at(-1)! ^ 1]), Metadata: { sha256: sha256(bytes) } }));
    const res = await cli('run', 'resume', workflowId);
    return { res, started: (await runCount()) !== before };
  } finally {
    await store.put(key, bytes);
    s3.destroy();
  }
}

describe('propensity run resume', () => {
  const workflowId = `train-resume-${randomUUID()}`;
  let failedRunId: string;
  let resumed: TrainPipelineOutput;

  it('an unknown id is UnknownRun (exit 4) and starts nothing', async () => {
    const res = await cli('run', 'resume', 'train-resume-nosuchrun');
    expect(res.code, res.stderr).toBe(4);
    expect(res.stderr).toMatch(/UnknownRun: no pipeline run has run id or workflow id "train-resume-nosuchrun"/);
    expect(await runCount()).toBe(0);
  });

  it('a run whose evaluate crashes fails at evaluate, after ingest, clean, split, search and final training completed', async () => {
    const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config: config(), taskQueues: queues, trigger: 'test' }] });
    failedRunId = handle.firstExecutionRunId;
    const err = await withWorkers(() => handle.result().catch((e: unknown) => e), {
      evaluateModel: evaluateCrashes,
    });
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const row = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', failedRunId).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ status: 'failed', error_type: 'EvaluateCrashed' });
    const steps = await db.db.selectFrom('ml.run_steps').select(['step', 'status']).where('run_id', '=', failedRunId).execute();
    for (const s of ['ingest', 'clean', 'split', 'final']) expect(steps.find((x) => x.step === s)?.status, s).toBe('succeeded');
    expect(steps.filter((x) => x.step === 'trial').length).toBeGreaterThanOrEqual(3); // 2 trials + the baseline, and a promotion
    expect(steps.find((x) => x.step === 'evaluate')?.status).toBe('failed');
  });

  it('refuses a changed config section that a reused step read (InputsChanged, exit 5), naming it; nothing starts', async () => {
    const before = await closedRuns(workflowId);
    const res = await cli('run', 'resume', workflowId, '--config', configFile('more-trials.json', config({ search: { ...config().search, trials: 3 } })));
    expect(res.code, res.stderr).toBe(5);
    expect(res.stderr).toMatch(/InputsChanged: cannot resume run .*config section "search" changed but step search, which reads it, would be reused/);
    expect(await runCount()).toBe(1);
    expect(await closedRuns(workflowId)).toBe(before);
  });

  it('refuses when an artifact of a completed step changed or is gone (InputsChanged, exit 5), naming it; nothing starts', async () => {
    const testKey = `runs/${failedRunId}/split/test.arrow`;
    const original = await store.getKey(testKey);
    const rawKey = `runs/${failedRunId}/raw/part-00000.arrow`;
    const raw = await store.getKey(rawKey);
    const s3 = createS3Client(connections().s3);
    try {
      // the test split overwritten with other bytes: its sha256 no longer matches what the run recorded
      await store.put(testKey, new Uint8Array([...original.slice(0, -1), original.at(-1)! ^ 1]));
      let res = await cli('run', 'resume', failedRunId);
      expect(res.code, res.stderr).toBe(5);
      expect(res.stderr).toContain(`InputsChanged: cannot resume run ${failedRunId}: 1 artifact(s) it would reuse changed since they were written: s3://${store.bucket}/${testKey} (split) has sha256`);
      await store.put(testKey, original);

      // a raw shard deleted (checked by the sha256 stored with the object, not downloaded)
      await s3.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: rawKey }));
      res = await cli('run', 'resume', failedRunId);
      expect(res.code, res.stderr).toBe(5);
      expect(res.stderr).toContain(`s3://${store.bucket}/${rawKey} (ingest) no longer exists`);
    } finally {
      await store.put(rawKey, raw);
      await store.put(testKey, original);
      s3.destroy();
    }
    expect(await runCount()).toBe(1);
  });

  it('resumes at evaluate with a changed gate: completes, and ml.run_steps has no ingest, clean, split, trial or final execution', async () => {
    const gate = { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false } };
    const [res] = await withWorkers(async () => {
      const started = await cli('run', 'resume', workflowId, '--config', configFile('gate.json', config({ gate })), '--detach', '--json');
      if (started.code !== 0) return [started, null] as const;
      const plan = lastJson(started.stdout);
      resumed = await client.workflow.getHandle(plan.workflowId, plan.runId).result();
      return [started, plan] as const;
    });
    expect(res.code, res.stderr).toBe(0);
    const plan = lastJson(res.stdout);
    expect(plan).toMatchObject({
      fromRunId: failedRunId,
      fromWorkflowId: workflowId,
      workflowId, // the failed run's workflow id, as its next run
      reusedSteps: ['ingest', 'clean', 'split', 'search', 'final'],
      startsAt: 'evaluate',
      changedSections: ['gate'],
    });
    expect(plan.verified.hashed).toBeGreaterThan(0);
    expect(resumed.status).toBe('registered');
    expect(resumed.runId).toBe(plan.runId);

    const steps = await db.db.selectFrom('ml.run_steps').select(['step', 'status']).where('run_id', '=', resumed.runId).execute();
    expect(steps.map((s) => s.step).sort()).toEqual(['evaluate', 'register', 'validate']);
    expect(steps.every((s) => s.status === 'succeeded')).toBe(true);

    // lineage: the run names the run and the steps it reused; the model is built on the failed run's data snapshot
    const run = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', resumed.runId).executeTakeFirstOrThrow();
    expect(run).toMatchObject({ status: 'registered', trigger: 'resume', resumed_from_run_id: failedRunId, reused_steps: ['ingest', 'clean', 'split', 'search', 'final'] });
    const failed = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', failedRunId).executeTakeFirstOrThrow();
    expect(failed.status).toBe('failed'); // the failed run stays as it was
    expect(run.cutoff?.toISOString()).toBe(failed.cutoff?.toISOString());
    const version = await db.db.selectFrom('ml.model_versions').selectAll().where('run_id', '=', resumed.runId).executeTakeFirstOrThrow();
    expect(version.data_sha256).toBe(resumed.dataSha256);
    const metadata = JSON.parse(new TextDecoder().decode(await store.getKey(`models/resumed/v${version.version}/metadata.json`)));
    expect(metadata.lineage.resumedFrom).toEqual({ runId: failedRunId, workflowId, steps: ['ingest', 'clean', 'split', 'search', 'final'] });
    // the model evaluated is the failed run's final model, not a new one
    expect(resumed.trials).toBe(2);
    const trials = await db.db.selectFrom('ml.trials').select('trial_id').where('run_id', '=', resumed.runId).orderBy('trial_id').execute();
    expect(trials.map((t) => t.trial_id)).toEqual(['baseline', 'final', 't001', 't002']);

    const show = await cli('run', 'show', resumed.runId);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`resumed from run ${failedRunId}: reused ingest, clean, split, search, final`);
  });

  it('refuses a run that succeeded, and a failed run already resumed (NotResumable, exit 5); nothing starts', async () => {
    let res = await cli('run', 'resume', resumed.runId);
    expect(res.code, res.stderr).toBe(5);
    expect(res.stderr).toMatch(/NotResumable: run .* finished \(registered\): only a failed or cancelled run can be resumed/);
    res = await cli('run', 'resume', failedRunId);
    expect(res.code, res.stderr).toBe(5);
    expect(res.stderr).toContain(`NotResumable: run ${failedRunId} (${workflowId}) was already resumed by run ${resumed.runId}`);
    expect(await runCount()).toBe(2);
  });
});

// The default final step (the best trial's weights reused, nothing trained) followed by an ensemble with seed
// replicas, one of which fails for good: a run that then fails at evaluate is resumed with its ensemble step reused —
// no replica trains again and the ensemble it registers is the one the failed run built.
describe('propensity run resume after an ensemble step', () => {
  const workflowId = `train-resume-ensemble-${randomUUID()}`;
  let failedRunId: string;
  let members: string[];
  /** what a run's workflow passed to evaluateModel: the model it ships, its preprocessing and its members */
  const evaluated = async (runId: string) => {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const attrs = history.events!.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'evaluateModel')!.activityTaskScheduledEventAttributes!;
    const input = defaultPayloadConverter.fromPayload(attrs.input!.payloads![0] as never) as { model: unknown; preprocessing: unknown; shipped: { members?: string[] } };
    return { model: input.model, preprocessing: input.preprocessing, members: input.shipped.members ?? null };
  };

  it('a run fails at evaluate after its ensemble step, which trained one replica and recorded the other as failed', async () => {
    const real = createActivities({ db, store, codeVersion: 'test' });
    const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config: replicasConfig('resumed_ensemble'), taskQueues: queues, trigger: 'test' }] });
    failedRunId = handle.firstExecutionRunId;
    const err = await withWorkers(() => handle.result().catch((e: unknown) => e), {
      evaluateModel: evaluateCrashes,
      trainTrial: thirdReplicaFails(real),
    });
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const steps = await db.db.selectFrom('ml.run_steps').select(['step', 'status', 'detail']).where('run_id', '=', failedRunId).execute();
    expect(steps.find((s) => s.step === 'ensemble')?.status).toBe('succeeded');
    expect(steps.some((s) => s.step === 'final')).toBe(false); // reuse: nothing trained after the search
    members = (steps.find((s) => s.step === 'ensemble')!.detail as { members: string[] }).members;
    expect(members.length).toBeGreaterThanOrEqual(1);
    // the replica's worker failed before it trained, so only its execution is on record
    expect(await replicaExecutions(failedRunId)).toEqual([
      ['best-s2', 'succeeded'],
      ['best-s3', 'failed'],
    ]);
  });

  it('resumes at evaluate reusing the ensemble step: no trial, replica or ensemble runs again, and the failed run’s ensemble is registered', async () => {
    const [res, resumed, details] = await withWorkers(async () => {
      const started = await cli('run', 'resume', workflowId, '--detach', '--json');
      if (started.code !== 0) return [started, null, null] as const;
      const plan = lastJson(started.stdout);
      const out = await client.workflow.getHandle(plan.workflowId, plan.runId).result();
      return [started, out, { failed: await stageDetail(workflowId, failedRunId, 'final'), resumed: await stageDetail(workflowId, plan.runId, 'final') }] as const;
    });
    expect(res.code, res.stderr).toBe(0);
    const plan = lastJson(res.stdout);
    // the final step trained nothing in the failed run (reuse), so the ensemble step follows the search directly
    expect(plan).toMatchObject({ fromRunId: failedRunId, reusedSteps: ['ingest', 'clean', 'split', 'search', 'ensemble'], startsAt: 'evaluate', changedSections: [] });
    expect(resumed!.status).toBe('registered');
    const runId = resumed!.runId;

    const steps = await db.db.selectFrom('ml.run_steps').select(['step', 'status']).where('run_id', '=', runId).execute();
    expect(steps.map((s) => s.step).sort()).toEqual(['evaluate', 'register', 'validate']);
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const scheduled = history.events!.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    expect(scheduled).toEqual(['startRun', 'evaluateModel', 'registerModel', 'finishRun']);

    // the model evaluated and registered is the one the failed run built and would have evaluated: the same
    // objects (key and sha256), the same preprocessing, the same members
    const before = await evaluated(failedRunId);
    expect(await evaluated(runId)).toEqual(before);
    expect(resumed!.model).toEqual({ ref: before.model, preprocessing: before.preprocessing, members: before.members });
    const version = await db.db.selectFrom('ml.model_versions').selectAll().where('run_id', '=', runId).executeTakeFirstOrThrow();
    expect(version.members).toEqual(members.length > 1 ? members : null);
    // the final stage tells the failed run's story, the failed replica included, and says what was reused
    expect(details!.failed).toMatch(/1 of 2 seed replicas trained/);
    expect(details!.resumed).toBe(`${details!.failed}; ensemble step (reused from run ${failedRunId})`);
    // the completed replica's record came with the step
    const trials = await db.db.selectFrom('ml.trials').select(['trial_id', 'status']).where('run_id', '=', runId).where('trial_id', '~', '-s[0-9]+$').execute();
    expect(trials.map((t) => t.status)).toEqual(['completed']);
    const run = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', runId).executeTakeFirstOrThrow();
    expect(run.reused_steps).toEqual(['ingest', 'clean', 'split', 'search', 'ensemble']);
    const show = await cli('run', 'show', runId);
    expect(show.stdout).toContain(`resumed from run ${failedRunId}: reused ingest, clean, split, search, ensemble`);
  });
});

// A run whose ensemble step fails after some of its seed replicas trained: the resume reuses the search and the
// replica that completed, trains only the one that had failed for good, and runs the ensemble step again.
describe('propensity run resume inside an ensemble step', () => {
  const workflowId = `train-resume-replicas-${randomUUID()}`;
  let failedRunId: string;
  /** the candidates a run's workflow passed to buildEnsemble (trial id → model refs) */
  const candidates = async (runId: string) => {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const attrs = history.events!.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'buildEnsemble')!.activityTaskScheduledEventAttributes!;
    const input = defaultPayloadConverter.fromPayload(attrs.input!.payloads![0] as never) as { candidates: { trialId: string; model: unknown }[] };
    return new Map(input.candidates.map((c) => [c.trialId, c.model]));
  };

  it('a run fails in its ensemble step after one replica trained and the other failed for good', async () => {
    const real = createActivities({ db, store, codeVersion: 'test' });
    const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config: replicasConfig('resumed_replicas'), taskQueues: queues, trigger: 'test' }] });
    failedRunId = handle.firstExecutionRunId;
    const err = await withWorkers(() => handle.result().catch((e: unknown) => e), {
      async buildEnsemble() {
        throw ApplicationFailure.nonRetryable('ensemble crashed: the worker image shipped a defect in the ensemble step', 'EnsembleCrashed');
      },
      trainTrial: thirdReplicaFails(real),
    });
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(await replicaExecutions(failedRunId)).toEqual([
      ['best-s2', 'succeeded'],
      ['best-s3', 'failed'],
    ]);
  });

  it('resumes after the search with the completed replica reused: only the failed one trains, and the ensemble step runs again', async () => {
    const { res, plan, out: resumed, detail } = await resumeAndFollow(workflowId, { stage: 'final' });
    expect(res.code, res.stderr).toBe(0);
    expect(plan).toMatchObject({ fromRunId: failedRunId, reusedSteps: ['ingest', 'clean', 'split', 'search'], startsAt: 'final', changedSections: [] });
    expect(plan.reusedTrials).toHaveLength(1);
    const [reusedReplica] = plan.reusedTrials as string[];
    expect(reusedReplica).toMatch(/^t\d+-s2$/);
    const retrained = reusedReplica.replace(/-s2$/, '-s3');
    expect(resumed!.status).toBe('registered');
    const runId = resumed!.runId;

    // one training: the replica that had failed; then the ensemble step again
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const scheduled = history.events!.flatMap((e) => e.activityTaskScheduledEventAttributes ?? []);
    expect(scheduled.map((s) => s.activityType?.name)).toEqual(['startRun', 'trainTrial', 'buildEnsemble', 'evaluateModel', 'registerModel', 'finishRun']);
    const trained = defaultPayloadConverter.fromPayload(scheduled[1].input!.payloads![0] as never) as { trialId: string };
    expect(trained.trialId).toBe(retrained);
    // the reused replica's model is the failed run's own (key and sha256), among the new ensemble's candidates
    const [before, after] = [await candidates(failedRunId), await candidates(runId)];
    expect(after.get(reusedReplica)).toEqual(before.get(reusedReplica));
    expect(before.has(retrained)).toBe(false);
    expect(after.has(retrained)).toBe(true);

    // records: both replicas' trials under the new run, only the trained one executed by it; the run names the reused one
    const trials = await db.db.selectFrom('ml.trials').select(['trial_id', 'status']).where('run_id', '=', runId).where('trial_id', '~', '-s[0-9]+$').orderBy('trial_id').execute();
    expect(trials).toEqual([
      { trial_id: reusedReplica, status: 'completed' },
      { trial_id: retrained, status: 'completed' },
    ]);
    const executed = await db.db.selectFrom('ml.run_steps').select(['trial_id']).where('run_id', '=', runId).where('trial_id', '~', '-s[0-9]+$').execute();
    expect(executed.map((s) => s.trial_id)).toEqual([retrained]);
    const run = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', runId).executeTakeFirstOrThrow();
    expect(run).toMatchObject({ reused_steps: ['ingest', 'clean', 'split', 'search'], reused_trials: [reusedReplica] });
    expect(detail).toContain(`; 2 of 2 seed replicas completed (${reusedReplica} reused from run ${failedRunId})`);
    const version = await db.db.selectFrom('ml.model_versions').select(['version']).where('run_id', '=', runId).executeTakeFirstOrThrow();
    const metadata = JSON.parse(new TextDecoder().decode(await store.getKey(`models/resumed_replicas/v${version.version}/metadata.json`)));
    expect(metadata.lineage.resumedFrom).toEqual({ runId: failedRunId, workflowId, steps: ['ingest', 'clean', 'split', 'search'], trials: [reusedReplica] });
    const show = await cli('run', 'show', runId);
    expect(show.stdout).toContain(`resumed from run ${failedRunId}: reused ingest, clean, split, search and trials ${reusedReplica} (not executed again)`);
  });
});

// A run cancelled while a seed replica trains: the resume takes the search whole and continues the replica from the
// failed run's last checkpoint, not from epoch 1.
describe('propensity run resume inside a seed replica', () => {
  const workflowId = `train-resume-replica-${randomUUID()}`;
  let failedRunId: string;
  let replica: string;
  let reached: number;
  const replicaRow = (runId: string) =>
    db.db.selectFrom('ml.trials').select(['trial_id', 'status', 'rung', 'epochs_run', 'curve', 'resumed_from_epoch', 'error']).where('run_id', '=', runId).where('trial_id', '~', '-s2$').executeTakeFirst();

  it('a run is cancelled after its seed replica was interrupted past its second epoch (its worker drained)', async () => {
    const real = createActivities({ db, store, codeVersion: 'test' });
    let interrupted = false;
    // two trials of one four-epoch rung; the best one replicated with seed 2, four epochs
    const cfg = config({
      modelName: 'resumed_replica',
      search: { trials: 2, parallelism: 2, epochs: 4, patience: 4, halving: { eta: 3, minEpochs: 4 }, baselineCompetes: false },
      training: { backend: 'wasm', final: 'reuse', heartbeatTimeoutSeconds: 5, ensemble: { maxMembers: 3, minGain: 0, seeds: 2, replicaBudgetSeconds: null } },
    });
    const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config: cfg, taskQueues: queues, trigger: 'test' }] });
    failedRunId = handle.firstExecutionRunId;
    const err = await withWorkers(
      async () => {
        await waitUntil('the replica interrupted', async () => interrupted, undefined, 120_000);
        await handle.cancel();
        return handle.result().catch((e: unknown) => e);
      },
      {
        // the replica trains for real and stops, as a drained worker stops it, once it has checkpointed epoch 2;
        // its activity then never reports back before the run is cancelled
        trainTrial: drainedAfterEpoch(real.trainTrial, (id) => /-s2$/.test(id), 2, () => (interrupted = true)),
      },
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const row = await replicaRow(failedRunId);
    expect(row).toMatchObject({ status: 'failed', rung: 0 });
    replica = row!.trial_id;
    reached = Math.max(...(row!.curve as { epoch: number }[]).map((p) => p.epoch));
    expect(reached).toBeGreaterThanOrEqual(2);
    expect(reached).toBeLessThan(4);
  });

  it('refuses the replica’s checkpoint when its bytes differ from the sha256 written with them (InputsChanged, exit 5); nothing starts', async () => {
    const weightsKey = `runs/${failedRunId}/trials/${replica}/checkpoints/epoch-${String(reached).padStart(4, '0')}/weights.bin`;
    const { res, started } = await resumeWithTampered(workflowId, weightsKey);
    expect(res.code, res.stderr).toBe(5);
    expect(res.stderr).toContain(`s3://${store.bucket}/${weightsKey} (ensemble, ${replica}'s checkpoint) has sha256`);
    expect(started).toBe(false);
  });

  it('resumes after the search: continues the replica from the failed run’s last checkpoint, builds the ensemble, registers', async () => {
    const { res, plan, out: resumed, detail } = await resumeAndFollow(workflowId, { stage: 'final' });
    expect(res.code, res.stderr).toBe(0);
    expect(plan).toMatchObject({ fromRunId: failedRunId, reusedSteps: ['ingest', 'clean', 'split', 'search'], startsAt: 'final' });
    expect(plan.reusedTrials).toEqual([`${replica}:${reached}`]);
    expect(resumed!.status).toBe('registered');
    const runId = resumed!.runId;

    // one training, the replica, from the failed run's checkpoint; then the ensemble step
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const scheduled = history.events!.flatMap((e) => e.activityTaskScheduledEventAttributes ?? []);
    expect(scheduled.map((s) => s.activityType?.name)).toEqual(['startRun', 'trainTrial', 'buildEnsemble', 'evaluateModel', 'registerModel', 'finishRun']);
    const trained = defaultPayloadConverter.fromPayload(scheduled[1].input!.payloads![0] as never) as { trialId: string; resumeFrom?: { ref: { modelJson: { key: string } }; epoch: number } };
    expect([trained.trialId, trained.resumeFrom?.epoch, trained.resumeFrom?.ref.modelJson.key]).toEqual([
      replica,
      reached,
      `runs/${failedRunId}/trials/${replica}/checkpoints/epoch-${String(reached).padStart(4, '0')}/model.json`,
    ]);
    // its row: the curve the failed run reached, then the new run's epochs, each once
    const row = await replicaRow(runId);
    expect(row).toMatchObject({ status: 'completed', resumed_from_epoch: reached, epochs_run: 4, error: null });
    expect((row!.curve as { epoch: number }[]).map((p) => p.epoch)).toEqual([1, 2, 3, 4]);
    expect(await db.db.selectFrom('ml.pipeline_runs').select('reused_trials').where('run_id', '=', runId).executeTakeFirstOrThrow()).toEqual({ reused_trials: plan.reusedTrials });
    expect(detail).toContain(`1 of 1 seed replicas trained (${replica} continued from its epoch-${reached} checkpoint)`);
    const show = await cli('run', 'show', runId);
    expect(show.stdout).toContain(`and trials ${replica}:${reached} (not executed again; the interrupted ${replica}:${reached} trained on from the checkpoint of the epoch after ':')`);
  });
});

// A run cancelled while its search's second rung trains: the resume takes every first-rung result and the baseline
// from it, trains only the promoted trials' second rung (from the failed run's checkpoints), and completes.
describe('propensity run resume inside a search', () => {
  const workflowId = `train-resume-search-${randomUUID()}`;
  let failedRunId: string;
  const searchConfig = () =>
    config({
      modelName: 'resumed_search',
      // four trials for 1 epoch, the best two promoted to 3
      search: { trials: 4, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 }, baselineCompetes: false },
      training: { finalEpochs: 3, backend: 'wasm', final: 'reuse', heartbeatTimeoutSeconds: 5, ensemble: { maxMembers: 1 } },
    });
  const trialRows = (runId: string) =>
    db.db.selectFrom('ml.trials').select(['trial_id', 'status', 'rung', 'budget_epochs', 'epochs_run', 'curve', 'model_uri', 'resumed_from_epoch']).where('run_id', '=', runId).orderBy('trial_id').execute();
  const waitFor = <T,>(what: string, probe: () => Promise<T | null | undefined | false>) => waitUntil(what, probe, () => trialRows(failedRunId));

  it('a run is cancelled after its promoted trials trained their second rung, before its search heard of it', async () => {
    const real = createActivities({ db, store, codeVersion: 'test' });
    const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config: searchConfig(), taskQueues: queues, trigger: 'test' }] });
    failedRunId = handle.firstExecutionRunId;
    const err = await withWorkers(
      async () => {
        // both promoted trials have trained their second rung, but the run is cancelled before it hears of it
        await waitFor('the baseline and the second rung trained', async () => {
          const rows = await trialRows(failedRunId);
          return rows.some((r) => r.trial_id === 'baseline' && r.status === 'completed') && rows.filter((r) => r.rung === 1 && r.status === 'completed').length === 2;
        });
        await handle.cancel();
        return handle.result().catch((e: unknown) => e);
      },
      {
        // a second rung trains and records itself, then its worker hangs before it reports back, until cancelled
        async trainTrial(input) {
          const out = await real.trainTrial(input);
          if ((input.rung ?? 0) < 1) return out;
          return stall();
        },
      },
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    await waitFor('the run recorded as cancelled', async () => (await db.db.selectFrom('ml.pipeline_runs').select('status').where('run_id', '=', failedRunId).executeTakeFirst())?.status === 'cancelled');
    // its records show the second rung that its history never received
    const rows = await trialRows(failedRunId);
    expect(rows.filter((r) => r.rung === 1).map((r) => [r.status, r.budget_epochs, (r.curve as unknown[]).length > 1, r.resumed_from_epoch, /\/rung-1\/model\//.test(r.model_uri ?? '')])).toEqual([
      ['completed', 3, true, 1, true],
      ['completed', 3, true, 1, true],
    ]);
  });

  it('resumes at the search: takes the first rung and the baseline, continues the second rung from the failed run’s last checkpoints to the same results, registers', async () => {
    const real = createActivities({ db, store, codeVersion: 'test' });
    const seenAtStart = new Map<string, Awaited<ReturnType<typeof trialRows>>[number]>();
    const failedRows = await trialRows(failedRunId);
    const secondRung = failedRows.filter((r) => r.rung === 1).map((r) => r.trial_id);
    const { res, plan, out: resumed, detail } = await resumeAndFollow(workflowId, {
      stage: 'search',
      faulty: {
        // what the new run's records say of a trial when its second rung starts again
        async trainTrial(input) {
          seenAtStart.set(input.trialId, (await trialRows(input.runId)).find((r) => r.trial_id === input.trialId)!);
          return real.trainTrial(input);
        },
      },
    });
    expect(res.code, res.stderr).toBe(0);
    expect(plan).toMatchObject({ fromRunId: failedRunId, reusedSteps: ['ingest', 'clean', 'split'], startsAt: 'search', changedSections: [] });
    // the first rung's results, and the second rung's two trials, which had trained all three epochs but never
    // reported: each continues from its checkpoint at epoch 3
    expect(plan.reusedTrials).toEqual([...['t001', 't002', 't003', 't004'].map((t) => (secondRung.includes(t) ? `${t}@1:3` : `${t}@0`)), 'baseline']);
    expect(resumed!.status).toBe('registered');
    const runId = resumed!.runId;

    // the pipeline trained nothing itself (the baseline was taken); its search ran the two promoted trials' second rung
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    expect(history.events!.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? [])).toEqual(['startRun', 'evaluateModel', 'registerModel', 'finishRun']);
    const trained = await searchTrainings(workflowId);
    expect(trained.map((t) => t.trialId).sort()).toEqual([...secondRung].sort());
    expect(trained.map((t) => t.rung)).toEqual([1, 1]);
    for (const t of trained) {
      expect(t.runId).toBe(runId);
      // from the failed run's last checkpoint in that rung
      expect(t.resumeFrom?.epoch).toBe(3);
      expect(t.resumeFrom?.ref.modelJson.key).toContain(`runs/${failedRunId}/trials/${t.trialId}/checkpoints/epoch-0003/`);
      // and its row, copied from the failed run, showed where that run had got to in the second rung, and no outcome
      expect(seenAtStart.get(t.trialId)).toMatchObject({ status: 'failed', rung: 1, budget_epochs: 3, epochs_run: 3, model_uri: null });
      expect(seenAtStart.get(t.trialId)!.curve).toHaveLength(3);
    }

    // records: every trial under the new run, completed at the rung it reached, the second rung with the very results
    // the failed run's training had reached (a checkpoint holds the whole training state); the run names what it took
    const rows = await trialRows(runId);
    expect(rows.map((r) => r.trial_id)).toEqual(['baseline', 't001', 't002', 't003', 't004']);
    expect(rows.every((r) => r.status === 'completed')).toBe(true);
    const valAuc = (runId: string) => db.db.selectFrom('ml.trials').select(['trial_id', 'val_auc', 'val_log_loss']).where('run_id', '=', runId).where('rung', '=', 1).orderBy('trial_id').execute();
    expect(await valAuc(runId)).toEqual(await valAuc(failedRunId));
    const executed = await db.db.selectFrom('ml.run_steps').select(['step', 'trial_id']).where('run_id', '=', runId).where('trial_id', '<>', '').execute();
    expect(executed.map((s) => s.trial_id).sort()).toEqual([...secondRung].sort());
    const run = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', runId).executeTakeFirstOrThrow();
    expect(run).toMatchObject({ reused_steps: ['ingest', 'clean', 'split'], reused_trials: plan.reusedTrials });
    expect(detail).toContain(`; 4 trial results and the baseline reused from run ${failedRunId}, 2 interrupted trials continued from its checkpoints`);
  });
});

describe('propensity run resume of a run terminated outside propensity', () => {
  it('records it as cancelled (Terminated), then resumes it from the steps it completed', async () => {
    const workflowId = `train-resume-terminated-${randomUUID()}`;
    const handle = await client.workflow.start(trainPipeline, {
      taskQueue: queues.cpu, workflowId, args: [{ config: config({ modelName: 'resumed_terminated' }), taskQueues: queues, trigger: 'test' }],
    });
    const runId = handle.firstExecutionRunId;
    const row = () => db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', runId).executeTakeFirstOrThrow();
    const [res, before, out] = await withWorkers(async () => {
      // terminated as an operator does in the Web UI once its split completed: the workflow never records its end
      await waitUntil('the split', async () => (await db.db.selectFrom('ml.run_steps').select('status').where('run_id', '=', runId).where('step', '=', 'split').executeTakeFirst())?.status === 'succeeded');
      await handle.terminate('by an operator in the Web UI');
      const before = await row();
      const started = await cli('run', 'resume', workflowId, '--detach', '--json');
      if (started.code !== 0) return [started, before, null] as const;
      const plan = lastJson(started.stdout);
      return [started, before, await client.workflow.getHandle(plan.workflowId, plan.runId).result()] as const;
    });
    expect(before.status).toBe('running');
    expect(res.code, res.stderr).toBe(0);
    expect(lastJson(res.stdout).reusedSteps).toEqual(expect.arrayContaining(['ingest', 'clean', 'split']));
    expect(out!.status).toBe('registered');
    expect(await row()).toMatchObject({ status: 'cancelled', error_type: 'Terminated' });
    expect((await row()).error_message).toMatch(/^terminated outside propensity \(Temporal: TERMINATED\); recorded by `propensity run resume`$/);
  });
});

// A resume that itself fails after its search completed: its search took the first rung and the baseline from the
// run it resumed, so its own history has no baseline training. Resuming it again takes the whole search.
describe('propensity run resume of a resumed run', () => {
  const workflowId = `train-resume-chain-${randomUUID()}`;
  const chainConfig = () =>
    config({
      modelName: 'resumed_chain',
      search: { trials: 4, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 }, baselineCompetes: false },
      training: { finalEpochs: 3, backend: 'wasm', final: 'reuse', heartbeatTimeoutSeconds: 5, ensemble: { maxMembers: 1 } },
    });
  const completedRows = (runId: string) => db.db.selectFrom('ml.trials').select(['trial_id', 'rung']).where('run_id', '=', runId).where('status', '=', 'completed').execute();
  const scheduledActivities = async (runId: string) =>
    (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events!.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
  let firstRunId: string;
  let secondRunId: string;

  it('a run is cancelled in its second rung; its resume takes the first rung and the baseline, completes the search, then fails at evaluate', async () => {
    const real = createActivities({ db, store, codeVersion: 'test' });
    const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config: chainConfig(), taskQueues: queues, trigger: 'test' }] });
    firstRunId = handle.firstExecutionRunId;
    await withWorkers(
      async () => {
        await waitUntil('the first rung', async () => {
          const rows = await completedRows(firstRunId);
          return rows.some((r) => r.trial_id === 'baseline') && rows.filter((r) => r.rung === 0 && r.trial_id !== 'baseline').length === 4;
        });
        await handle.cancel();
        return handle.result().catch((e: unknown) => e);
      },
      {
        // the second rung never reports back before the cancellation
        async trainTrial(input) {
          if ((input.rung ?? 0) < 1) return real.trainTrial(input);
          return stall();
        },
      },
    );
    const [res, err] = await withWorkers(
      async () => {
        const started = await cli('run', 'resume', workflowId, '--detach', '--json');
        if (started.code !== 0) return [started, null] as const;
        const plan = lastJson(started.stdout);
        secondRunId = plan.runId;
        return [started, await client.workflow.getHandle(plan.workflowId, plan.runId).result().catch((e: unknown) => e)] as const;
      },
      {
        evaluateModel: evaluateCrashes,
      },
    );
    expect(res.code, res.stderr).toBe(0);
    expect(lastJson(res.stdout).reusedTrials).toEqual(['t001@0', 't002@0', 't003@0', 't004@0', 'baseline']);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    // it trained the second rung only, and no baseline of its own
    const search = await client.workflow.getHandle(`${workflowId}/search`, undefined).fetchHistory();
    expect(search.events!.filter((e) => e.activityTaskScheduledEventAttributes).length).toBe(2);
    expect(await scheduledActivities(secondRunId)).not.toContain('trainTrial');
    expect((await db.db.selectFrom('ml.pipeline_runs').select('status').where('run_id', '=', secondRunId).executeTakeFirstOrThrow()).status).toBe('failed');
  });

  it('resuming the resume takes its whole search (the baseline it had taken included) and trains nothing', async () => {
    const { res, plan, out } = await resumeAndFollow(workflowId);
    expect(res.code, res.stderr).toBe(0);
    expect(plan).toMatchObject({ fromRunId: secondRunId, reusedSteps: ['ingest', 'clean', 'split', 'search'] });
    expect(plan.reusedTrials ?? []).toEqual([]);
    expect(out!.status).toBe('registered');
    expect(await scheduledActivities(out!.runId)).toEqual(['startRun', 'evaluateModel', 'registerModel', 'finishRun']);
  });
});

describe('propensity run resume after a trial and the baseline failed for good', () => {
  const workflowId = `train-resume-failures-${randomUUID()}`;
  let failedRunId: string;
  // the trial that failed for good at the second rung, and every trial that reached it
  let failedTrialId: string | undefined;
  const secondRung = new Set<string>();
  const failuresConfig = () =>
    config({
      modelName: 'resumed_failures',
      // six trials for 1 epoch, the best three to 2, the best two of those to 4
      search: { trials: 6, parallelism: 2, epochs: 4, patience: 4, halving: { eta: 2, minEpochs: 1 }, baselineCompetes: false },
      training: { finalEpochs: 3, backend: 'wasm', final: 'reuse', heartbeatTimeoutSeconds: 5, ensemble: { maxMembers: 1 } },
    });
  const trialRows = (runId: string) =>
    db.db.selectFrom('ml.trials').select(['trial_id', 'status', 'rung', 'epochs_run']).where('run_id', '=', runId).orderBy('trial_id').execute();

  it('a run whose search completes with a trial failed at its second rung fails when its baseline fails for good', async () => {
    const real = createActivities({ db, store, codeVersion: 'test' });
    const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config: failuresConfig(), taskQueues: queues, trigger: 'test' }] });
    failedRunId = handle.firstExecutionRunId;
    const err = await withWorkers(() => handle.result().catch((e: unknown) => e), {
      async trainTrial(input) {
        if (input.trialId === 'baseline') throw ApplicationFailure.nonRetryable('baseline: out of memory on this worker', 'BaselineCrashed');
        if (input.rung === 1) {
          secondRung.add(input.trialId);
          // the first trial to start its second rung fails for good
          if ((failedTrialId ??= input.trialId) === input.trialId) throw ApplicationFailure.nonRetryable(`trial ${input.trialId}: out of memory on this worker`, 'TrialCrashed');
        }
        return real.trainTrial(input);
      },
    });
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(await db.db.selectFrom('ml.pipeline_runs').select(['status', 'error_type']).where('run_id', '=', failedRunId).executeTakeFirstOrThrow()).toEqual({ status: 'failed', error_type: 'BaselineCrashed' });
    // its search completed, with the failed trial and a third rung of the two second-rung trials left, past the failure
    expect(secondRung.size).toBe(3);
    const search = await client.workflow.getHandle<typeof hyperparameterSearch>(`${workflowId}/search`).result();
    expect(search.rungs).toEqual([{ budget: 1, trials: 6 }, { budget: 2, trials: 3 }, { budget: 4, trials: 2 }]);
    expect(search.trials.filter((t) => t.status === 'failed').map((t) => t.trialId)).toEqual([failedTrialId]);
    expect((await trialRows(failedRunId)).filter((r) => r.rung === 2 && r.status === 'completed')).toHaveLength(2);
  });

  it('resumes at the search: takes the results up to the failed rung, trains the baseline, the failed trial and the third rung, the latter from the failed run’s second-rung checkpoints', async () => {
    const real = createActivities({ db, store, codeVersion: 'test' });
    // what the new run's records say of a trial when its third rung starts
    const seenAtStart = new Map<string, Awaited<ReturnType<typeof trialRows>>[number]>();
    const { res, plan, out: resumed } = await resumeAndFollow(workflowId, {
      faulty: {
        async trainTrial(input) {
          if (input.rung === 2) seenAtStart.set(input.trialId, (await trialRows(input.runId)).find((r) => r.trial_id === input.trialId)!);
          return real.trainTrial(input);
        },
      },
    });
    expect(res.code, res.stderr).toBe(0);
    expect(plan).toMatchObject({ fromRunId: failedRunId, reusedSteps: ['ingest', 'clean', 'split'], startsAt: 'search', changedSections: [] });
    // each trial through the last rung at or below the failure; not the third rung (past the failure), not the baseline
    const survivors = [...secondRung].filter((t) => t !== failedTrialId);
    expect(plan.reusedTrials).toEqual(['t001', 't002', 't003', 't004', 't005', 't006'].map((t) => `${t}@${survivors.includes(t) ? 1 : 0}`));
    expect(resumed!.status).toBe('registered');
    const runId = resumed!.runId;

    // the pipeline trained the baseline; its search the failed trial's second rung (from the failed run's first-rung
    // checkpoint), then the third rung, a taken second-rung trial from the failed run's checkpoint at its end
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const parentTrials = history.events!.flatMap((e) =>
      e.activityTaskScheduledEventAttributes?.activityType?.name === 'trainTrial' ? [(defaultPayloadConverter.fromPayload(e.activityTaskScheduledEventAttributes.input!.payloads![0] as never) as { trialId: string }).trialId] : [],
    );
    expect(parentTrials).toEqual(['baseline']);
    const trained = await searchTrainings(workflowId);
    expect(trained.map((t) => t.rung)).toEqual([1, 2, 2]);
    expect(trained[0].trialId).toBe(failedTrialId);
    expect(trained[0].resumeFrom?.epoch).toBe(1);
    expect(trained[0].resumeFrom?.ref.modelJson.key).toContain(`runs/${failedRunId}/trials/${failedTrialId}/checkpoints/epoch-0001/`);
    const third = trained.slice(1);
    // at most one of the two is the retrained trial, so a taken second rung continues in the new run
    expect(third.filter((t) => survivors.includes(t.trialId)).length).toBeGreaterThanOrEqual(1);
    for (const t of third) {
      expect(t.resumeFrom?.epoch).toBe(2);
      expect(t.resumeFrom?.ref.modelJson.key).toContain(`runs/${survivors.includes(t.trialId) ? failedRunId : runId}/trials/${t.trialId}/checkpoints/epoch-0002/`);
      // a taken trial's row, copied from the failed run (which had trained this rung), was set back to its second rung
      if (survivors.includes(t.trialId)) expect(seenAtStart.get(t.trialId)).toMatchObject({ status: 'completed', rung: 1, epochs_run: 2 });
    }

    // records: every trial and the baseline completed under the new run; the run names what it took
    const rows = await trialRows(runId);
    expect(rows.map((r) => [r.trial_id, r.status])).toEqual(['baseline', 't001', 't002', 't003', 't004', 't005', 't006'].map((t) => [t, 'completed']));
    expect(rows.filter((r) => r.rung === 2).map((r) => r.trial_id).sort()).toEqual(third.map((t) => t.trialId).sort());
    expect(await db.db.selectFrom('ml.pipeline_runs').select(['reused_steps', 'reused_trials']).where('run_id', '=', runId).executeTakeFirstOrThrow()).toEqual({
      reused_steps: ['ingest', 'clean', 'split'],
      reused_trials: plan.reusedTrials,
    });
  });
});

describe('propensity run resume inside a first rung', () => {
  const workflowId = `train-resume-first-rung-${randomUUID()}`;
  let failedRunId: string;
  // the last epoch t001 checkpointed in the failed run, and the one the resume continues from
  let reached: number;
  let continuedFrom: number;
  const firstRungConfig = () =>
    config({
      modelName: 'resumed_first_rung',
      // one rung of four epochs
      search: { trials: 2, parallelism: 2, epochs: 4, patience: 4, halving: { eta: 3, minEpochs: 4 }, baselineCompetes: false },
      training: { finalEpochs: 3, backend: 'wasm', final: 'reuse', heartbeatTimeoutSeconds: 5, ensemble: { maxMembers: 1 } },
    });
  const trialRow = (runId: string, trialId: string) =>
    db.db.selectFrom('ml.trials').select(['status', 'rung', 'epochs_run', 'curve', 'resumed_from_epoch']).where('run_id', '=', runId).where('trial_id', '=', trialId).executeTakeFirst();

  it('a run is cancelled after a trial of its first rung was interrupted past its second epoch (its worker drained)', async () => {
    const real = createActivities({ db, store, codeVersion: 'test' });
    let interrupted = false;
    const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config: firstRungConfig(), taskQueues: queues, trigger: 'test' }] });
    failedRunId = handle.firstExecutionRunId;
    const err = await withWorkers(
      async () => {
        await waitUntil('t001 interrupted, t002 and the baseline trained', async () => {
          const done = await Promise.all(['t002', 'baseline'].map((t) => trialRow(failedRunId, t)));
          return interrupted && done.every((r) => r?.status === 'completed');
        });
        await handle.cancel();
        return handle.result().catch((e: unknown) => e);
      },
      {
        // t001 trains for real and stops, as a drained worker stops it, once it has checkpointed epoch 2; its
        // activity then never reports back before the run is cancelled
        trainTrial: drainedAfterEpoch(real.trainTrial, (id) => id === 't001', 2, () => (interrupted = true)),
      },
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const row = await trialRow(failedRunId, 't001');
    expect(row).toMatchObject({ status: 'failed', rung: 0 });
    reached = Math.max(...(row!.curve as { epoch: number }[]).map((p) => p.epoch));
    expect(reached).toBeGreaterThanOrEqual(2);
    expect(reached).toBeLessThan(4);
  });

  it('refuses a checkpoint whose bytes differ from the sha256 written with them (InputsChanged, exit 5); takes the epoch before when the last is incomplete', async () => {
    const dir = (epoch: number) => `runs/${failedRunId}/trials/t001/checkpoints/epoch-${String(epoch).padStart(4, '0')}`;
    const weightsKey = `${dir(reached)}/weights.bin`;
    const { res, started } = await resumeWithTampered(workflowId, weightsKey);
    expect(res.code, res.stderr).toBe(5);
    expect(res.stderr).toContain(`InputsChanged: cannot resume run ${failedRunId}: 1 artifact(s) it would reuse changed since they were written: s3://${store.bucket}/${weightsKey} (search, t001's checkpoint) has sha256`);
    expect(started).toBe(false);
    const s3 = createS3Client(connections().s3);
    try {
      // the last epoch's model.json gone, as a worker stopped between the checkpoint's two files leaves it: the
      // resume below continues from the epoch before
      await s3.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: `${dir(reached)}/model.json` }));
      continuedFrom = reached - 1;
    } finally {
      s3.destroy();
    }
  });

  let resumeRunId: string;
  const checkpointKey = (runId: string, epoch: number) => `runs/${runId}/trials/t001/checkpoints/epoch-${String(epoch).padStart(4, '0')}/model.json`;

  it('its resume continues t001 from the failed run’s last whole checkpoint, and is cancelled before t001 writes an epoch', async () => {
    let started = false;
    // t001's worker stalls before its first epoch (loading its data, say): it writes no checkpoint and never reports
    // before the run is cancelled
    const plan = await resumeAndCancel(workflowId, 'the resume to start t001', () => started, {
      async trainTrial() {
        started = true;
        return stall();
      },
    });
    expect(plan).toMatchObject({ fromRunId: failedRunId, reusedSteps: ['ingest', 'clean', 'split'], startsAt: 'search' });
    expect(plan.reusedTrials).toEqual([`t001@0:${continuedFrom}`, 't002@0', 'baseline']);
    resumeRunId = plan.runId;
    const trained = await searchTrainings(workflowId);
    expect(trained.map((t) => [t.trialId, t.runId, t.resumeFrom?.ref.modelJson.key])).toEqual([['t001', resumeRunId, checkpointKey(failedRunId, continuedFrom)]]);
    expect(await db.db.selectFrom('ml.pipeline_runs').select('status').where('run_id', '=', resumeRunId).executeTakeFirstOrThrow()).toEqual({ status: 'cancelled' });
  });

  let neverStarted: string;
  it('a resume of it started while no worker runs and cancelled never started (its row: code_version none)', async () => {
    const res = await runCli(['run', 'resume', workflowId, '--detach', '--json'], { databaseUrl: dbUrl, env: { PROPENSITY_REQUIRE_WORKERS: 'false' } });
    expect(res.code, res.stderr).toBe(0);
    neverStarted = lastJson(res.stdout).runId;
    const cancel = await cli('cancel', workflowId, '--grace', '1');
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(await db.db.selectFrom('ml.pipeline_runs').select(['status', 'code_version']).where('run_id', '=', neverStarted).executeTakeFirstOrThrow()).toEqual({ status: 'cancelled', code_version: 'none' });
  });

  let stoppedBeforeSearch: string;
  it('the next resume passes over the one that never started; it opens its run, then is cancelled before its search starts', async () => {
    let opened = false;
    // startRun opens the run and copies the taken records, then its worker stalls: the search never starts
    const plan = await resumeAndCancel(workflowId, 'the resume to open its run', () => opened, {
      async startRun(input) {
        await createActivities({ db, store, codeVersion: 'test' }).startRun(input);
        opened = true;
        return stall();
      },
    });
    // the resume that never started is passed over: it copied no records, so its own resume would lack them
    expect(plan.passedOver).toEqual([neverStarted]);
    expect(plan).toMatchObject({ fromRunId: resumeRunId, reusedTrials: [`t001@0:${continuedFrom}`, 't002@0', 'baseline'] });
    stoppedBeforeSearch = plan.runId;
    const history = await client.workflow.getHandle(workflowId, stoppedBeforeSearch).fetchHistory();
    expect(history.events!.some((e) => e.startChildWorkflowExecutionInitiatedEventAttributes)).toBe(false);
  });

  it('resuming that resume continues t001 from the checkpoint the first run gave it, takes the rest, registers', async () => {
    const { res, plan, out: resumed, detail } = await resumeAndFollow(workflowId, { stage: 'search' });
    expect(res.code, res.stderr).toBe(0);
    // neither resume since the first wrote a checkpoint for t001 (the last never started it), so the one the first
    // run gave is taken again
    expect(plan).toMatchObject({ fromRunId: stoppedBeforeSearch, reusedSteps: ['ingest', 'clean', 'split'], startsAt: 'search' });
    expect(plan.reusedTrials).toEqual([`t001@0:${continuedFrom}`, 't002@0', 'baseline']);
    expect(resumed!.status).toBe('registered');
    const runId = resumed!.runId;

    // the search trained t001 only, from the first run's last whole checkpoint
    const trained = await searchTrainings(workflowId);
    expect(trained.map((t) => [t.trialId, t.rung, t.resumeFrom?.epoch])).toEqual([['t001', 0, continuedFrom]]);
    expect(trained[0].resumeFrom!.ref.modelJson.key).toBe(checkpointKey(failedRunId, continuedFrom));
    // its row: the curve the failed run reached, then the new run's epochs, each once
    const row = await trialRow(runId, 't001');
    expect(row).toMatchObject({ status: 'completed', rung: 0, resumed_from_epoch: continuedFrom, epochs_run: 4 });
    expect((row!.curve as { epoch: number }[]).map((p) => p.epoch)).toEqual([1, 2, 3, 4]);
    expect(await db.db.selectFrom('ml.pipeline_runs').select('reused_trials').where('run_id', '=', runId).executeTakeFirstOrThrow()).toEqual({ reused_trials: plan.reusedTrials });
    expect(detail).toContain(`; 1 trial results and the baseline reused from run ${stoppedBeforeSearch}, 1 interrupted trials continued from its checkpoints`);
  });
});

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { spawnWorkers, stopWorkers, waitForPollers, type WorkerProcess } from '../../cli/workers.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import { loadEnv } from '../../infra/index.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { trainPipeline } from '../../workflows/pipeline.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { connections, freshDatabase, testStore } from '../support/services.js';
import { runCli } from '../support/cli.js';
import { workerServiceEnv } from '../support/worker-env.js';

// The acceptance test for resumable training: the train worker is a real process (spawned as `propensity
// workers` does), killed with SIGKILL in the middle of a search trial. Temporal notices the silence
// (training.heartbeatTimeoutSeconds), retries the trial on a fresh train process, and the retry resumes from the
// checkpoint named by the last heartbeat the server holds. Workflows and data activities run in this process.

const queues = { cpu: `kill-cpu-${randomUUID()}`, train: `kill-train-${randomUUID()}` };
// the promoted trial's budget; the kill lands in the first rung, timed by the trial's row (below)
const EPOCHS = 30;
// successive halving: both trials train to RUNG0 epochs, the better one goes on to EPOCHS
const RUNG0 = 15;

let db: Db;
let dbUrl: string;
let store: ArtifactStore;
let closeStore: () => void;
let nativeConnection: NativeConnection;
let client: Client;
let cutoff: string;
let logDir: string;
const spawned: WorkerProcess[] = [];

const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  ({ db, url: dbUrl } = await freshDatabase('kill_resume'));
  ({ store, close: closeStore } = await testStore());
  const shop = await seedShop(db.pool, { users: 3000, days: 40, seed: 11, horizonDays: 14 });
  cutoff = shop.timeline.cutoff.toISOString();
  const { address, namespace } = connections().temporal;
  nativeConnection = await NativeConnection.connect({ address });
  client = new Client({ connection: await Connection.connect({ address }), namespace });
  // this test's worker logs: <dataDir>/kill-resume/logs/worker-train-1.log, appended by each process
  logDir = path.join(loadEnv().PROPENSITY_DATA_DIR, 'kill-resume');
});

afterAll(async () => {
  // SIGTERM, then SIGKILL after the grace period: no train process outlives the test, pass or fail.
  await stopWorkers(spawned, 10_000);
  await client?.connection.close();
  await nativeConnection?.close();
  closeStore?.();
  await db?.close();
});

/** One train worker process pointed at this test's database, bucket and task queue. */
function spawnTrainWorker(): WorkerProcess {
  const extraEnv: Record<string, string> = {
    ...workerServiceEnv(dbUrl),
    PROPENSITY_TRAIN_QUEUE: queues.train,
    PROPENSITY_CPU_QUEUE: queues.cpu,
    PROPENSITY_BACKEND: 'wasm',
    PROPENSITY_TRAIN_SLOTS: '1',
    PROPENSITY_CODE_VERSION: 'test',
  };
  const [worker] = spawnWorkers({ ...loadEnv(), PROPENSITY_DATA_DIR: logDir }, { cpu: 0, train: 1 }, extraEnv);
  spawned.push(worker);
  return worker;
}

const logTail = () => {
  try {
    return readFileSync(path.join(logDir, 'logs', 'worker-train-1.log'), 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '(no worker log)';
  }
};

interface PendingTrial {
  epoch: number;
  attempt: number;
}

/** The search child's running training activity and the epoch of the last heartbeat the server holds. */
async function pendingSearchTrial(searchWorkflowId: string): Promise<PendingTrial | null> {
  const res = await client.workflowService
    .describeWorkflowExecution({ namespace: client.options.namespace, execution: { workflowId: searchWorkflowId } })
    .catch(() => null); // the child is not started yet
  for (const a of res?.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.[0];
    if (!payload) continue;
    const details = defaultPayloadConverter.fromPayload<{ epoch?: number }>(payload as Payload);
    if (typeof details?.epoch === 'number') return { epoch: details.epoch, attempt: a.attempt ?? 1 };
  }
  return null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a train worker killed mid-trial', () => {
  it(
    'is replaced: the run completes, the killed trial resumes from its checkpoint, nothing is duplicated',
    async () => {
      const first = spawnTrainWorker();
      await waitForPollers(client, [{ name: queues.train, min: 1, kind: 'activity' }], [first], 180_000);

      const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
      const activities = createActivities({ db, store, codeVersion: 'test' });
      const cpu = await Worker.create({
        connection: nativeConnection,
        namespace: connections().temporal.namespace,
        taskQueue: queues.cpu,
        workflowBundle: bundle,
        activities,
        interceptors: activityInterceptors({ db }),
      });

      const config = {
        modelName: 'kill',
        source: { kind: 'events', cutoff, horizonDays: 14 },
        // two trials one after the other, with successive halving (rungs of 15 and 30 epochs); small batches and wide
        // layers so that an epoch takes a good fraction of a second, and patience = epochs so that no trial stops early
        search: {
          trials: 2,
          parallelism: 1,
          epochs: EPOCHS,
          patience: EPOCHS,
          halving: { eta: 2, minEpochs: RUNG0 },
          // the final training must run (this test reads its step), whatever the baseline scores
          baselineCompetes: false,
          // standard encoding: epochs well inside the 5 s heartbeat timeout (PLE's wider input doubles them)
          space: { hiddenLayers: [2, 2], units: [128], batchSize: [16], numericEncoding: ['standard'] },
        },
        // a silent trial is retried after 5 s (the activity's heartbeat timeout)
        // seeds 1: no seed replicas, so ml.trials holds the search's trials, the baseline and the final model
        training: { finalEpochs: 6, backend: 'wasm', heartbeatTimeoutSeconds: 5, final: 'retrain', ensemble: { seeds: 1 } },
        gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false } },
        evaluation: { bootstrapSamples: 20, importanceRepeats: 1 },
      };
      const workflowId = `train-kill-${randomUUID()}`;
      const searchWorkflowId = `${workflowId}/search`;

      const { out, killed } = await cpu.runUntil(async () => {
        const handle = await client.workflow.start(trainPipeline, {
          taskQueue: queues.cpu,
          workflowId,
          args: [{ config, taskQueues: queues, trigger: 'test' }],
        });
        // Wait until a search trial's row (written every epoch) is mid-rung and the server holds a checkpointed
        // heartbeat for it, then kill its worker outright. The server holds heartbeats throttled (one per 0.8 × the
        // 5 s timeout), so on a fast machine its epoch can jump past any window of the rung: the row times the kill,
        // the server's heartbeat is what the retry resumes from.
        const deadline = Date.now() + 240_000;
        let victim: { trialId: string; epochsRun: number; heartbeatEpoch: number } | null = null;
        while (!victim) {
          if (Date.now() > deadline) throw new Error(`no search trial reached epoch 2 with a heartbeat the server holds in time\n${logTail()}`);
          if (first.child.exitCode !== null) throw new Error(`train worker exited early (${first.child.exitCode})\n${logTail()}`);
          const running = await db.db
            .selectFrom('ml.trials')
            .select(['trial_id', 'epochs_run'])
            .where('status', '=', 'running')
            .where('trial_id', 'like', 't%')
            .execute();
          const epochsRun = running.length === 1 ? (running[0].epochs_run ?? 0) : 0;
          if (epochsRun >= 2 && epochsRun < RUNG0 - 2) {
            const pending = await pendingSearchTrial(searchWorkflowId);
            if (pending && pending.epoch >= 1 && pending.attempt === 1) victim = { trialId: running[0].trial_id, epochsRun, heartbeatEpoch: pending.epoch };
          }
          if (!victim) await sleep(200);
        }
        const exited = new Promise((r) => first.child.once('exit', r));
        first.child.kill('SIGKILL');
        await exited;
        console.log(`SIGKILLed train worker pid ${first.child.pid} in ${victim.trialId} after ${victim.epochsRun} epochs (server's last heartbeat: epoch ${victim.heartbeatEpoch})`);
        // a fresh train process takes over the queue; the retry finds it once the heartbeat timeout has fired
        spawnTrainWorker();
        return { out: await handle.result(), killed: victim };
      });

      expect(out.status).toBe('registered');
      expect(out.trials).toBe(2);
      expect(out.trialsFailed).toBe(0);
      expect(killed.heartbeatEpoch).toBeGreaterThanOrEqual(1);
      expect(killed.heartbeatEpoch).toBeLessThan(RUNG0);

      // ml.run_steps keeps every execution — (trial, rung, attempt) — with its own timing: the killed attempt, the
      // attempt that resumed it from its checkpoint, and the promoted trial's second rung
      const steps = await db.db.selectFrom('ml.run_steps').selectAll().where('run_id', '=', out.runId).execute();
      const execs = steps.map((s) => `${s.step}/${s.trial_id}@${s.rung}#${s.attempt}`);
      expect(new Set(execs).size).toBe(execs.length);
      for (const one of ['validate', 'ingest', 'clean', 'split', 'final', 'evaluate', 'register']) {
        expect(steps.filter((s) => s.step === one && s.status === 'succeeded'), one).toHaveLength(1);
      }
      const of = (trialId: string) => steps.filter((s) => s.step === 'trial' && s.trial_id === trialId);
      const lost = of(killed.trialId).find((s) => s.rung === 0 && s.attempt === 1)!;
      expect(lost).toMatchObject({ status: 'failed', error_type: 'WorkerLost' });
      const resumed = of(killed.trialId).find((s) => s.rung === 0 && s.attempt === 2)!;
      expect(resumed.status).toBe('succeeded');
      expect(resumed.duration_ms).toBeGreaterThan(0);
      const resumedFrom = (resumed.detail as { resumedFromEpoch: number; epochs: number }).resumedFromEpoch;
      console.log(`${killed.trialId}: attempt 2 resumed from epoch ${resumedFrom} (killed after ${killed.epochsRun}, heartbeat ${killed.heartbeatEpoch})`);
      // from its checkpoint, not from the start
      expect(resumedFrom).toBeGreaterThanOrEqual(1);
      expect(resumedFrom).toBeGreaterThanOrEqual(killed.heartbeatEpoch);
      expect(resumedFrom).toBeLessThan(RUNG0);
      for (const t of ['t001', 't002']) expect(of(t).filter((s) => s.rung === 0 && s.status === 'succeeded'), t).toHaveLength(1);
      const rung1 = steps.filter((s) => s.step === 'trial' && s.rung === 1);
      expect(rung1).toHaveLength(1); // eta 2: one of the two trials goes on
      expect(rung1[0]).toMatchObject({ status: 'succeeded' });
      expect((rung1[0].detail as { resumedFromEpoch: number }).resumedFromEpoch).toBe(RUNG0);
      expect(steps.filter((s) => s.status === 'running')).toEqual([]);

      // `propensity run show` lists each execution with its own duration: the lost attempt and the one that resumed it
      const show = await runCli(['run', 'show', workflowId], { databaseUrl: dbUrl });
      expect(show.code, show.stderr).toBe(0);
      const rows = show.stdout.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f[0] === 'trial' && f[1] === killed.trialId && f[2] === '0');
      expect(rows.map((f) => `${f[3]} ${f[4]}`)).toEqual(['1 failed', '2 succeeded']);
      expect(Number(rows[1][5])).toBeGreaterThan(0);
      expect(show.stdout).toMatch(/WorkerLost/);

      // the killed trial's learning curve: each epoch exactly once — the resumed attempt continued it
      const trial = await db.db.selectFrom('ml.trials').selectAll().where('run_id', '=', out.runId).where('trial_id', '=', killed.trialId).executeTakeFirstOrThrow();
      expect(trial.status).toBe('completed');
      expect((trial.curve as { epoch: number }[]).map((p) => p.epoch)).toEqual(Array.from({ length: trial.epochs_run! }, (_, i) => i + 1));
      expect([RUNG0, EPOCHS]).toContain(trial.epochs_run);

      // the same in Temporal's own record: the search child's trial activity started a second time
      const history = await client.workflow.getHandle(searchWorkflowId).fetchHistory();
      const attempts = (history.events ?? []).flatMap((e) => (e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt ?? 1] : []));
      expect(Math.max(...attempts)).toBeGreaterThanOrEqual(2);

      const trials = await db.db.selectFrom('ml.trials').select(['trial_id', 'status']).where('run_id', '=', out.runId).orderBy('trial_id').execute();
      expect(trials.map((t) => t.trial_id)).toEqual(['baseline', 'final', 't001', 't002']);
      for (const t of trials) expect(t.status, t.trial_id).toBe('completed');

      const versions = await db.db.selectFrom('ml.model_versions').select(['model_name', 'version', 'run_id']).execute();
      expect(versions).toEqual([{ model_name: 'kill', version: 1, run_id: out.runId }]);
      const runs = await db.db.selectFrom('ml.pipeline_runs').select(['run_id', 'workflow_id', 'status']).execute();
      expect(runs).toEqual([{ run_id: out.runId, workflow_id: workflowId, status: 'registered' }]);
      expect(await store.exists(out.modelUri!.replace(`s3://${store.bucket}/`, ''))).toBe(true);
    },
    420_000,
  );
});

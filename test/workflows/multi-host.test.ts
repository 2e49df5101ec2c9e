import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForPollers } from '../../cli/workers.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import { buildState, nodeArgsFor } from '../../infra/build.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { trainPipeline, type TrainPipelineOutput } from '../../workflows/pipeline.js';
import { connections, freshDatabase, testStore } from '../support/services.js';
import { workerServiceEnv } from '../support/worker-env.js';

// The multi-host rehearsal (issue 15, item 4) on one machine: every worker is a process of its own with its own
// working directory, data dir and a clean environment (only what a pod would be given: connection URLs, queues, its
// host name), as on separate hosts. The same pipeline runs twice: once with one train host, once with two train
// hosts sharing the search, one of them SIGKILLed mid-trial so that the other finishes its trial from the
// checkpoint. Both must register the same model: the same sha256 of the weights, with the same seeds.

let db: Db;
let dbUrl: string;
let store: ArtifactStore;
let closeStore: () => void;
let client: Client;
let cutoff: string;
const root = path.join(os.tmpdir(), `propensity-hosts-${randomUUID().slice(0, 8)}`);
const hosts: { name: string; child: ChildProcess; log: string }[] = [];
const EPOCHS = 24;
const RUNG0 = 12;

beforeAll(async () => {
  ({ db, url: dbUrl } = await freshDatabase('multi_host'));
  ({ store, close: closeStore } = await testStore());
  const shop = await seedShop(db.pool, { users: 3000, days: 40, seed: 11, horizonDays: 14 });
  cutoff = shop.timeline.cutoff.toISOString();
  const { address, namespace } = connections().temporal;
  client = new Client({ connection: await Connection.connect({ address }), namespace });
});

afterAll(async () => {
  for (const h of hosts) if (h.child.exitCode === null && h.child.signalCode === null) h.child.kill('SIGKILL');
  await client?.connection.close();
  closeStore?.();
  await db?.close();
});

/** What a pod of `kind` would be given, and nothing of this process's environment but PATH and HOME. */
function hostEnv(name: string, queues: { cpu: string; train: string }): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PROPENSITY_DATA_DIR: path.join(root, name, 'data'),
    PROPENSITY_WORKER_HOST: name,
    ...workerServiceEnv(dbUrl),
    PROPENSITY_CPU_QUEUE: queues.cpu,
    PROPENSITY_TRAIN_QUEUE: queues.train,
    PROPENSITY_BACKEND: 'wasm',
    PROPENSITY_CODE_VERSION: 'rehearsal',
  };
}

/** One "host": a worker process started in its own directory, logging there. */
function startHost(name: string, kind: 'cpu' | 'train', queues: { cpu: string; train: string }) {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, 'data'), { recursive: true });
  const log = path.join(dir, 'worker.log');
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, nodeArgsFor(`workers/${kind}.ts`, buildState()), { cwd: dir, env: hostEnv(name, queues), stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const host = { name, child, log };
  hosts.push(host);
  return host;
}

const tail = (file: string) => {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '(no log)';
  }
};

const config = (modelName: string) => ({
  modelName,
  source: { kind: 'events', cutoff, horizonDays: 14 },
  search: {
    trials: 4,
    parallelism: 2,
    epochs: EPOCHS,
    patience: EPOCHS,
    halving: { eta: 2, minEpochs: RUNG0 },
    baselineCompetes: false,
    // standard encoding: epochs short enough for the 5 s heartbeat timeout on a loaded 2-core machine (PLE's wider
    // input made one attempt miss it)
    space: { hiddenLayers: [2, 2], units: [128], batchSize: [16], numericEncoding: ['standard'] },
  },
  // seeds 1: the default's replica count follows measured time, and both runs must train the same networks
  training: { finalEpochs: 4, backend: 'wasm', heartbeatTimeoutSeconds: 5, ensemble: { seeds: 1 } },
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false }, versusChampion: { enabled: false } },
  evaluation: { bootstrapSamples: 10, importanceRepeats: 0 },
});

async function weightsSha(out: TrainPipelineOutput): Promise<string> {
  const key = out.modelUri!.replace(`s3://${store.bucket}/`, '').replace(/[^/]+$/, 'weights.bin');
  return createHash('sha256').update(await store.getKey(key)).digest('hex');
}

/**
 * The epoch of the trial's last heartbeat the server holds for its first attempt, or null. A heartbeat names its trial
 * only through its checkpoint's key (runs/<run>/trials/<trial>/checkpoints/…): matching on anything looser reads the
 * other host's trial, and the kill then lands on a trial that is epochs behind the epoch the test expects it to resume
 * from.
 */
async function heartbeatOf(searchWorkflowId: string, trialId: string): Promise<number | null> {
  const res = await client.workflowService
    .describeWorkflowExecution({ namespace: client.options.namespace, execution: { workflowId: searchWorkflowId } })
    .catch(() => null);
  for (const a of res?.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.[0];
    if (!payload || (a.attempt ?? 1) !== 1) continue;
    const d = defaultPayloadConverter.fromPayload<{ epoch?: number; checkpoint?: { modelJson?: { key?: string } } }>(payload as Payload);
    if (typeof d?.epoch === 'number' && d.checkpoint?.modelJson?.key?.includes(`/trials/${trialId}/checkpoints/`)) return d.epoch;
  }
  return null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runPipeline(queues: { cpu: string; train: string }, modelName: string, during?: (workflowId: string) => Promise<void>) {
  const workflowId = `train-hosts-${randomUUID()}`;
  const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config: config(modelName), taskQueues: queues, trigger: 'rehearsal' }] });
  await during?.(workflowId);
  return handle.result();
}

describe('the multi-host rehearsal', () => {
  it(
    'two train hosts share a search, one is killed mid-trial, the other finishes it; the model is the one a single host trains',
    async () => {
      // one host: the reference
      const one = { cpu: `hosts1-cpu-${randomUUID()}`, train: `hosts1-train-${randomUUID()}` };
      const cpu1 = startHost('cpu-1', 'cpu', one);
      const solo = startHost('train-solo', 'train', one);
      await waitForPollers(client, [{ name: one.cpu, min: 1, kind: 'workflow' }, { name: one.train, min: 1, kind: 'activity' }], [], 180_000).catch((e) => {
        throw new Error(`${e.message}\n${tail(cpu1.log)}\n${tail(solo.log)}`);
      });
      const reference = await runPipeline(one, 'rehearsal');
      expect(reference.status).toBe('registered');
      cpu1.child.kill('SIGTERM');
      solo.child.kill('SIGTERM');

      // two train hosts; host-a is SIGKILLed while it trains a search trial
      const two = { cpu: `hosts2-cpu-${randomUUID()}`, train: `hosts2-train-${randomUUID()}` };
      const cpu2 = startHost('cpu-2', 'cpu', two);
      const a = startHost('host-a', 'train', two);
      const b = startHost('host-b', 'train', two);
      await waitForPollers(client, [{ name: two.cpu, min: 1, kind: 'workflow' }, { name: two.train, min: 2, kind: 'activity' }], [], 180_000).catch((e) => {
        throw new Error(`${e.message}\n${tail(cpu2.log)}\n${tail(a.log)}\n${tail(b.log)}`);
      });
      let killed: { trialId: string; epoch: number } | null = null;
      const rehearsal = await runPipeline(two, 'rehearsal', async (workflowId) => {
        const deadline = Date.now() + 240_000;
        while (!killed) {
          if (Date.now() > deadline) throw new Error(`host-a never trained a search trial to epoch 2 with a heartbeat the server holds\n${tail(a.log)}`);
          const onA = await db.db
            .selectFrom('ml.trials')
            .select(['trial_id', 'epochs_run'])
            .where('status', '=', 'running')
            .where('host', '=', 'host-a')
            .where('trial_id', 'like', 't%')
            .where('rung', '=', 0)
            .execute();
          for (const t of onA) {
            // The kill lands mid-rung by the row's epoch, written every epoch. The server holds heartbeats throttled
            // (at most one per 0.8 × the 5 s timeout), so on a fast machine a trial's rung can pass between two of
            // them: waiting for the server to hold an epoch in the window missed every trial on host-a once. The
            // server need only hold a checkpointed heartbeat, which the retry resumes from.
            if (t.epochs_run === null || t.epochs_run < 2 || t.epochs_run >= RUNG0 - 2) continue;
            const epoch = await heartbeatOf(`${workflowId}/search`, t.trial_id);
            if (epoch !== null && epoch >= 1) {
              a.child.kill('SIGKILL');
              killed = { trialId: t.trial_id, epoch };
              break;
            }
          }
          if (!killed) await sleep(200);
        }
      });
      expect(killed).not.toBeNull();
      const victim = killed! as { trialId: string; epoch: number };
      console.log(`SIGKILLed host-a in ${victim.trialId} (server's last heartbeat: epoch ${victim.epoch})`);

      expect(rehearsal.status).toBe('registered');
      expect(rehearsal.metrics.testAuc).toBe(reference.metrics.testAuc);
      const [shaOne, shaTwo] = [await weightsSha(reference), await weightsSha(rehearsal)];
      console.log(`final weights sha256: one host ${shaOne.slice(0, 16)}…, two hosts ${shaTwo.slice(0, 16)}…`);
      expect(shaTwo).toBe(shaOne);

      // the killed trial's rung: attempt 1 lost with host-a, attempt 2 (on host-b, the only train host left) resumed it
      // from its checkpoint and succeeded; the search ran on both hosts
      const steps = await db.db
        .selectFrom('ml.run_steps')
        .select(['attempt', 'status', 'error_type', 'detail'])
        .where('run_id', '=', rehearsal.runId)
        .where('step', '=', 'trial')
        .where('trial_id', '=', victim.trialId)
        .where('rung', '=', 0)
        .orderBy('attempt')
        .execute();
      expect(steps.map((st) => `${st.attempt} ${st.status}`), JSON.stringify(steps.map((st) => [st.attempt, st.status, st.error_type]))).toEqual(['1 failed', '2 succeeded']);
      expect(steps[0].error_type).toBe('WorkerLost');
      expect((steps[1].detail as { resumedFromEpoch: number }).resumedFromEpoch).toBeGreaterThanOrEqual(victim.epoch);
      const trials = await db.db.selectFrom('ml.trials').select(['trial_id', 'host', 'status']).where('run_id', '=', rehearsal.runId).execute();
      expect(new Set(trials.map((t) => t.host))).toContain('host-b');
      for (const t of trials) expect(t.status, t.trial_id).toBe('completed');
      for (const h of [cpu2, b]) h.child.kill('SIGTERM');
    },
    600_000,
  );
});

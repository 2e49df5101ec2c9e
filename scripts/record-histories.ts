/**
 * Records workflow histories of real runs into test/replay/ for the replay tests: a small pipeline (with its
 * hyperparameter search and the scoring child of scoring.afterPromotion), a second one that waits for approval
 * and is approved by an update, a third that is cancelled in its ensemble step (one seed replica completed, the other
 * interrupted after its first epoch) and a fourth cancelled inside its search, each resumed by `propensity run resume`
 * (a child process, as a user runs it), on the dev stack with in-process workers;
 * then exports each history with `exportHistory` (the wrapper {workflowId, runId, workflowType,
 * codeVersion, history}, history as `temporal workflow show --output json` writes it; also stored in S3).
 * Usage: node --import tsx scripts/record-histories.ts <tag> [outDir]   (outDir defaults to test/replay)
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import pg from 'pg';
import { createActivities } from '../activities/index.js';
import { exportHistory, serializeHistoryFile } from '../audit/history.js';
import { createDb } from '../db/client.js';
import { migrateToLatest } from '../db/migrate.js';
import { seedShop } from '../db/synthetic/load.js';
import { resolveConnections } from '../infra/connections.js';
import { createS3Client, ensureBucket, findRepoRoot } from '../infra/index.js';
import { loadEnv } from '../infra/env.js';
import { createArtifactStore } from '../store/artifacts.js';
import { drainedAfterEpoch, stall } from '../test/support/drain.js';
import { trainPipeline } from '../workflows/pipeline.js';
import { codeVersion, WORKFLOWS_PATH } from '../workers/deps.js';
import { activityInterceptors } from '../workers/interceptors.js';

const tag = process.argv[2] ?? 'current';
const outDir = path.resolve(process.argv[3] ?? 'test/replay');
const env = loadEnv();
const conn = resolveConnections(env);
const dbName = 'replay_record';
const admin = new pg.Client({ connectionString: conn.databaseUrl });
await admin.connect();
await admin.query(`drop database if exists ${dbName} with (force)`);
await admin.query(`create database ${dbName}`);
await admin.end();
const url = new URL(conn.databaseUrl);
url.pathname = `/${dbName}`;
const db = createDb(url.toString());
await migrateToLatest(db.db as never);
const s3 = createS3Client(conn.s3);
await ensureBucket(s3, conn.s3.bucket);
const store = createArtifactStore({ client: s3, bucket: conn.s3.bucket });
const shop = await seedShop(db.pool, { users: 2000, days: 40, seed: 5, horizonDays: 14 });

const queues = { cpu: `record-cpu-${randomUUID()}`, train: `record-train-${randomUUID()}` };
const nativeConnection = await NativeConnection.connect({ address: conn.temporal.address });
const client = new Client({ connection: await Connection.connect({ address: conn.temporal.address }), namespace: conn.temporal.namespace });
const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH });
const activities = createActivities({ db, store, codeVersion: 'record' });
const workerOptions = { connection: nativeConnection, namespace: conn.temporal.namespace, interceptors: activityInterceptors({ db }) };

// A run cancelled in its ensemble step (v10): seed replica -s2 completes, -s3 stops after its first epoch's checkpoint
// (as a drained worker stops it) and never reports back, and the run is cancelled. Its resume takes -s2 and continues
// -s3 from that checkpoint. (v8 and v9: -s3 failed for good and buildEnsemble crashed; up to v7 the run failed at
// evaluate after the ensemble step.)
const failedWorkflowId = `record-${tag}-${randomUUID().slice(0, 8)}-resume`;
const resumeConfig = {
  modelName: 'replay_resume',
  source: { kind: 'events', cutoff: shop.timeline.cutoff.toISOString(), horizonDays: 14 },
  search: { trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 }, baselineCompetes: false },
  // a final training the resume reuses, and an ensemble step with two seed replicas
  training: { finalEpochs: 3, backend: 'wasm', final: 'retrain', heartbeatTimeoutSeconds: 5, ensemble: { maxMembers: 3, minGain: 0, seeds: 3 } },
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false } },
  evaluation: { bootstrapSamples: 10, importanceRepeats: 0 },
};
{
  let interrupted = false;
  const drainedReplica = { ...activities, trainTrial: drainedAfterEpoch(activities.trainTrial, (id) => /-s3$/.test(id), 1, () => (interrupted = true)) };
  const cpuWorker = await Worker.create({ ...workerOptions, taskQueue: queues.cpu, workflowBundle: bundle, activities });
  const drainedTrain = await Worker.create({ ...workerOptions, taskQueue: queues.train, activities: drainedReplica });
  const cancelled = await cpuWorker.runUntil(
    drainedTrain.runUntil(
      (async () => {
        const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId: failedWorkflowId, args: [{ config: resumeConfig, taskQueues: queues, trigger: 'record' }] });
        for (const deadline = Date.now() + 180_000; ; ) {
          const rows = await db.db.selectFrom('ml.trials').select(['trial_id', 'status']).where('run_id', '=', handle.firstExecutionRunId).where('trial_id', '~', '-s2$').execute();
          if (interrupted && rows.some((r) => r.status === 'completed')) break;
          if (Date.now() > deadline) throw new Error(`the run did not reach its replicas: ${JSON.stringify(rows)}`);
          await new Promise((r) => setTimeout(r, 200));
        }
        await handle.cancel();
        return handle.result().catch((err: unknown) => err);
      })(),
    ),
  );
  if (!(cancelled instanceof WorkflowFailedError)) throw new Error(`the run meant to be cancelled in its ensemble step was not: ${JSON.stringify(cancelled)}`);
}

// A run cancelled inside its search (v8): its two promoted trials train their second rung, then their worker hangs
// before reporting back, and the run is cancelled; the resume takes the first rung's results and the baseline, and
// (since v9) continues the two interrupted trials from their last checkpoints.
const searchFailedWorkflowId = `record-${tag}-${randomUUID().slice(0, 8)}-resume-search`;
const searchResumeConfig = {
  ...resumeConfig,
  modelName: 'replay_resume_search',
  search: { trials: 4, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 }, baselineCompetes: false },
  training: { finalEpochs: 3, backend: 'wasm', final: 'reuse', heartbeatTimeoutSeconds: 5, ensemble: { maxMembers: 1 } },
};
{
  const hanging = {
    ...activities,
    async trainTrial(input: Parameters<typeof activities.trainTrial>[0]) {
      const out = await activities.trainTrial(input);
      if ((input.rung ?? 0) < 1) return out;
      return stall();
    },
  };
  const cpuWorker = await Worker.create({ ...workerOptions, taskQueue: queues.cpu, workflowBundle: bundle, activities });
  const hangingTrain = await Worker.create({ ...workerOptions, taskQueue: queues.train, activities: hanging });
  const cancelled = await cpuWorker.runUntil(
    hangingTrain.runUntil(
      (async () => {
        const handle = await client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId: searchFailedWorkflowId, args: [{ config: searchResumeConfig, taskQueues: queues, trigger: 'record' }] });
        for (const deadline = Date.now() + 120_000; ; ) {
          const rows = await db.db.selectFrom('ml.trials').select(['trial_id', 'rung', 'status']).where('run_id', '=', handle.firstExecutionRunId).execute();
          if (rows.some((r) => r.trial_id === 'baseline' && r.status === 'completed') && rows.filter((r) => r.rung === 1 && r.status === 'completed').length === 2) break;
          if (Date.now() > deadline) throw new Error(`the search run did not reach its second rung: ${JSON.stringify(rows)}`);
          await new Promise((r) => setTimeout(r, 200));
        }
        await handle.cancel();
        return handle.result().catch((err: unknown) => err);
      })(),
    ),
  );
  if (!(cancelled instanceof WorkflowFailedError)) throw new Error(`the run meant to be cancelled in its search was not: ${JSON.stringify(cancelled)}`);
}

/** `propensity run resume <workflowId> --detach --json` against the recording database; resolves with its plan. */
function resumeWithCli(id: string): Promise<{ workflowId: string; runId: string; reusedSteps: string[]; reusedTrials: string[] }> {
  const env = {
    ...process.env,
    DATABASE_URL: url.toString(),
    TEMPORAL_ADDRESS: conn.temporal.address,
    TEMPORAL_NAMESPACE: conn.temporal.namespace,
    S3_ENDPOINT: conn.s3.endpoint,
    S3_BUCKET: conn.s3.bucket,
    AWS_ACCESS_KEY_ID: conn.s3.credentials?.accessKeyId,
    AWS_SECRET_ACCESS_KEY: conn.s3.credentials?.secretAccessKey,
  };
  const bin = path.join(findRepoRoot(), 'bin', 'propensity.mjs');
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [bin, 'run', 'resume', id, '--detach', '--json'], { env }, (err, stdout, stderr) =>
      err ? reject(new Error(`run resume failed: ${stderr || err.message}`)) : resolve(JSON.parse(stdout.trim().split('\n').at(-1)!)),
    ),
  );
}

const cpu = await Worker.create({ ...workerOptions, taskQueue: queues.cpu, workflowBundle: bundle, activities });
const train = await Worker.create({ ...workerOptions, taskQueue: queues.train, activities });

const workflowId = `record-${tag}-${randomUUID().slice(0, 8)}`;
const config = {
  modelName: 'replay',
  // every model family: MLP trials (standard and PLE encodings) and GRU trials over the last 6 events, the best
  // trial's weights reused and an ensemble chosen on validation (v4), with a seed replica of the best trial among its
  // candidates (v5); the search's second rung dispatched longest first (v6)
  source: { kind: 'events', cutoff: shop.timeline.cutoff.toISOString(), horizonDays: 14, sequenceLength: 6 },
  search: { trials: 4, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 }, baselineCompetes: false, space: { sequenceUnits: [0, 8] } },
  training: { finalEpochs: 4, backend: 'wasm', ensemble: { maxMembers: 3, minGain: 0, seeds: 2 } },
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false } },
  evaluation: { bootstrapSamples: 20, importanceRepeats: 1 },
};
// The first run scores its promoted model as a child workflow (scoring.afterPromotion), as of the shop's last day;
// the second requires approval and is approved by an update, so both paths of the workflow have a history. The second
// also asks for 15 seed replicas within a 1 s budget (v11), which trains only those that fit (fewer, often none).
const asOf = shop.timeline.end.toISOString();
const approvalWorkflowId = `${workflowId}-approval`;
await cpu.runUntil(
  train.runUntil(
    (async () => {
      const out = await client.workflow.execute(trainPipeline, {
        taskQueue: queues.cpu,
        workflowId,
        args: [{ config: { ...config, scoring: { afterPromotion: true } }, taskQueues: queues, trigger: 'record', asOf }],
      });
      if (out.status !== 'registered' || out.scoring?.status !== 'succeeded') {
        throw new Error(`the recording run was ${out.status}, scoring ${JSON.stringify(out.scoring)} (${out.gate.reasons.join('; ')})`);
      }
      const handle = await client.workflow.start(trainPipeline, {
        taskQueue: queues.cpu,
        workflowId: approvalWorkflowId,
        args: [
          {
            config: {
              ...config,
              training: { ...config.training, ensemble: { ...config.training.ensemble, seeds: 16, replicaBudgetSeconds: 1 } },
              approval: { required: true, timeoutHours: 1 },
              gate: { ...config.gate, versusChampion: { enabled: false } },
            },
            taskQueues: queues,
            trigger: 'record',
            asOf,
          },
        ],
      });
      for (;;) {
        const state = await handle.query<{ status: string }>('approval').catch(() => null);
        if (state?.status === 'awaiting') break;
        await new Promise((r) => setTimeout(r, 200));
      }
      await handle.executeUpdate('approve', { args: [{ by: 'auditor', reason: 'recorded for the replay tests' }] });
      const approved = await handle.result();
      if (approved.status !== 'registered') throw new Error(`the approval run was ${approved.status}`);
      // the run cancelled in its ensemble step, resumed: the next run of its workflow id, with the completed steps'
      // outputs, the completed replica and the interrupted one's checkpoint as input
      const plan = await resumeWithCli(failedWorkflowId);
      const resumed = await client.workflow.getHandle(plan.workflowId, plan.runId).result();
      if (resumed.status !== 'registered' || plan.reusedSteps.join() !== 'ingest,clean,split,search,final' || plan.reusedTrials.length !== 2 || !plan.reusedTrials.some((t) => /-s3:\d+$/.test(t))) {
        throw new Error(`the resumed run was ${resumed.status}, reusing ${plan.reusedSteps.join(', ')} and trials ${plan.reusedTrials.join(', ')}`);
      }
      // the run cancelled in its search, resumed at the search with the first rung and the baseline taken
      const searchPlan = await resumeWithCli(searchFailedWorkflowId);
      const searchResumed = await client.workflow.getHandle(searchPlan.workflowId, searchPlan.runId).result();
      const continued = searchPlan.reusedTrials.filter((t) => /^t00[1-4]@1:3$/.test(t)).length;
      if (searchResumed.status !== 'registered' || searchPlan.reusedSteps.join() !== 'ingest,clean,split' || searchPlan.reusedTrials.length !== 5 || continued !== 2) {
        throw new Error(`the run resumed in its search was ${searchResumed.status}, reusing ${searchPlan.reusedSteps.join(', ')} and trials ${searchPlan.reusedTrials.join(', ')}`);
      }
    })(),
  ),
);
mkdirSync(outDir, { recursive: true });
const failedRunId = (await db.db.selectFrom('ml.pipeline_runs').select('run_id').where('workflow_id', '=', failedWorkflowId).where('status', '=', 'cancelled').executeTakeFirstOrThrow()).run_id;
const cancelledRunId = (await db.db.selectFrom('ml.pipeline_runs').select('run_id').where('workflow_id', '=', searchFailedWorkflowId).where('status', '=', 'cancelled').executeTakeFirstOrThrow()).run_id;
const recorded: [string, string, string?][] = [
  ['pipeline', workflowId],
  ['search', `${workflowId}/search`],
  ['score', `${workflowId}/score`],
  ['pipeline-approval', approvalWorkflowId],
  // the run cancelled in its ensemble step (its first run id; failed up to v9) and its resume (the latest run of the
  // same workflow id)
  ['pipeline-failed', failedWorkflowId, failedRunId],
  ['pipeline-resumed', failedWorkflowId],
  // the run cancelled in its search, its resume, and the resume's search, which took the first rung's results (v8)
  ['pipeline-cancelled-search', searchFailedWorkflowId, cancelledRunId],
  ['pipeline-resumed-search', searchFailedWorkflowId],
  ['search-resumed', `${searchFailedWorkflowId}/search`],
];
for (const [kind, id, runId] of recorded) {
  // Replay needs the workflow id (child ids derive from it), which a bare history does not hold: the wrapper has it.
  const exported = await exportHistory(client, store, { workflowId: id, runId, codeVersion: codeVersion() });
  const file = path.join(outDir, `${kind}-${tag}.json`);
  writeFileSync(file, serializeHistoryFile(exported.file));
  console.log(`wrote ${file} (${exported.events} events, workflow ${id}, also ${exported.uri})`);
}
await client.connection.close();
await nativeConnection.close();
s3.destroy();
await db.close();

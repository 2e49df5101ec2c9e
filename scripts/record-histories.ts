/**
 * Records workflow histories of real runs into test/replay/ for the replay tests: runs a small pipeline (with its
 * hyperparameter search) and a scoring run of the model it registered against the dev stack with in-process
 * workers, then exports each history with `exportHistory` (the wrapper {workflowId, runId, workflowType,
 * codeVersion, history}, history as `temporal workflow show --output json` writes it; also stored in S3).
 * Usage: node --import tsx scripts/record-histories.ts <tag> [outDir]   (outDir defaults to test/replay)
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import pg from 'pg';
import { createActivities } from '../activities/index.js';
import { exportHistory, serializeHistoryFile } from '../audit/history.js';
import { createDb } from '../db/client.js';
import { migrateToLatest } from '../db/migrate.js';
import { seedShop } from '../db/synthetic/load.js';
import { resolveConnections } from '../infra/connections.js';
import { createS3Client, ensureBucket } from '../infra/index.js';
import { loadEnv } from '../infra/env.js';
import { createArtifactStore } from '../store/artifacts.js';
import { trainPipeline } from '../workflows/pipeline.js';
import { scoreUsers } from '../workflows/score.js';
import { codeVersion, WORKFLOWS_PATH } from '../workers/deps.js';

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
const cpu = await Worker.create({ connection: nativeConnection, namespace: conn.temporal.namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities });
const train = await Worker.create({ connection: nativeConnection, namespace: conn.temporal.namespace, taskQueue: queues.train, activities });

const workflowId = `record-${tag}-${randomUUID().slice(0, 8)}`;
const config = {
  modelName: 'replay',
  source: { kind: 'events', cutoff: shop.timeline.cutoff.toISOString(), horizonDays: 14 },
  search: { trials: 3, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 } },
  training: { finalEpochs: 4, backend: 'wasm' },
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false } },
  evaluation: { bootstrapSamples: 20, importanceRepeats: 1 },
};
const scoreWorkflowId = `${workflowId}-score`;
await cpu.runUntil(
  train.runUntil(
    (async () => {
      const out = await client.workflow.execute(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config, taskQueues: queues, trigger: 'record' }] });
      if (out.status !== 'registered') throw new Error(`the recording run was ${out.status} (${out.gate.reasons.join('; ')}): nothing to score`);
      // Score the version just registered, as of the shop's last day (its active users are the ones scored).
      await client.workflow.execute(scoreUsers, {
        taskQueue: queues.cpu,
        workflowId: scoreWorkflowId,
        args: [{ model: `${out.modelName}:${out.modelVersion}`, asOf: shop.timeline.end.toISOString(), trigger: 'record', taskQueues: { cpu: queues.cpu } }],
      });
    })(),
  ),
);
mkdirSync(outDir, { recursive: true });
const recorded = [['pipeline', workflowId], ['search', `${workflowId}/search`], ['score', scoreWorkflowId]] as const;
for (const [kind, id] of recorded) {
  // Replay needs the workflow id (child ids derive from it), which a bare history does not hold: the wrapper has it.
  const exported = await exportHistory(client, store, { workflowId: id, codeVersion: codeVersion() });
  const file = path.join(outDir, `${kind}-${tag}.json`);
  writeFileSync(file, serializeHistoryFile(exported.file));
  console.log(`wrote ${file} (${exported.events} events, workflow ${id}, also ${exported.uri})`);
}
await client.connection.close();
await nativeConnection.close();
s3.destroy();
await db.close();

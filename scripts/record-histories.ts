/**
 * Records workflow histories of real runs into test/replay/ for the replay tests: runs a small pipeline (and
 * whatever else is listed) against the dev stack with in-process workers, then exports each history as the
 * JSON `temporal workflow show --output json` writes. Usage: node --import tsx scripts/record-histories.ts <tag>
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import pg from 'pg';
import { createActivities } from '../activities/index.js';
import { createDb } from '../db/client.js';
import { migrateToLatest } from '../db/migrate.js';
import { seedShop } from '../db/synthetic/load.js';
import { resolveConnections } from '../infra/connections.js';
import { createS3Client, ensureBucket } from '../infra/index.js';
import { loadEnv } from '../infra/env.js';
import { createArtifactStore } from '../store/artifacts.js';
import { trainPipeline } from '../workflows/pipeline.js';
import { WORKFLOWS_PATH } from '../workers/deps.js';

const tag = process.argv[2] ?? 'current';
const outDir = path.resolve('test/replay');
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
await cpu.runUntil(
  train.runUntil(client.workflow.execute(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config, taskQueues: queues, trigger: 'record' }] })),
);
mkdirSync(outDir, { recursive: true });
for (const [kind, id] of [['pipeline', workflowId], ['search', `${workflowId}/search`]] as const) {
  const history = await client.workflow.getHandle(id).fetchHistory();
  const file = path.join(outDir, `${kind}-${tag}.json`);
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  // Replay needs the workflow id (child ids derive from it), which a bare history does not hold.
  const wrapped = {
    workflowId: id,
    runId: started?.originalExecutionRunId,
    workflowType: started?.workflowType?.name,
    codeVersion: process.env.PROPENSITY_CODE_VERSION ?? tag,
    history: JSON.parse(historyToJSON(history)),
  };
  writeFileSync(file, JSON.stringify(wrapped, null, 1) + '\n');
  console.log(`wrote ${file} (${history.events?.length} events, workflow ${id})`);
}
await client.connection.close();
await nativeConnection.close();
s3.destroy();
await db.close();

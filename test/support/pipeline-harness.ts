import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../../activities/index.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { trainQueueFor } from '../../workflows/constants.js';
import { connections, freshDatabase, testStore } from './services.js';

type Activities = ReturnType<typeof createActivities>;

/**
 * What a file of pipeline tests needs on the real dev stack: its own database with a seeded shop, the S3 store, the
 * workflow bundle, Temporal connections, a unique queue pair, and in-process workers on those queues (the activity
 * interceptors included, as production workers have them).
 */
export interface PipelineHarness {
  db: Db;
  dbUrl: string;
  store: ArtifactStore;
  bundle: WorkflowBundleWithSourceMap;
  client: Client;
  cutoff: string;
  queues: { cpu: string; train: string };
  /**
   * Runs `fn` with a cpu and a train worker; `pool`/`host` make the train worker one of that pool (its queue) and
   * host, `faulty` replaces activities on both (a broken worker image).
   */
  withWorkers<T>(fn: () => Promise<T>, opts?: { pool?: string; host?: string; faulty?: Partial<Activities> }): Promise<T>;
  close(): Promise<void>;
}

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

export async function pipelineHarness(
  name: string,
  shop: { users: number; days: number; seed: number; horizonDays: number },
  logLevel: 'WARN' | 'ERROR' = 'WARN',
): Promise<PipelineHarness> {
  Runtime.install({ logger: new DefaultLogger(logLevel) });
  const { db, url: dbUrl } = await freshDatabase(name);
  const { store, close: closeStore } = await testStore();
  const seeded = await seedShop(db.pool, shop);
  const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quiet });
  const { address, namespace } = connections().temporal;
  const nativeConnection = await NativeConnection.connect({ address });
  const client = new Client({ connection: await Connection.connect({ address }), namespace });
  const id = name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
  const queues = { cpu: `${id}-cpu-${randomUUID()}`, train: `${id}-train-${randomUUID()}` };
  return {
    db,
    dbUrl,
    store,
    bundle,
    client,
    cutoff: seeded.timeline.cutoff.toISOString(),
    queues,
    async withWorkers(fn, opts = {}) {
      const cpuActivities = { ...createActivities({ db, store, codeVersion: 'test' }), ...opts.faulty };
      const trainActivities = { ...createActivities({ db, store, codeVersion: 'test', pool: opts.pool, host: opts.host }), ...opts.faulty };
      const interceptors = activityInterceptors({ db });
      const cpu = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities: cpuActivities, interceptors });
      const train = await Worker.create({
        connection: nativeConnection,
        namespace,
        taskQueue: opts.pool ? trainQueueFor(opts.pool, queues.train) : queues.train,
        activities: trainActivities,
        interceptors,
      });
      return cpu.runUntil(train.runUntil(fn()));
    },
    async close() {
      await client.connection.close();
      await nativeConnection.close();
      closeStore();
      await db.close();
    },
  };
}

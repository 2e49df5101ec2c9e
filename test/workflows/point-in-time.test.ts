import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { trainPipeline, type TrainPipelineOutput } from '../../workflows/pipeline.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { connections, freshDatabase, testStore } from '../support/services.js';

// Point in time: a night backfilled after later nights must be judged with that night's data only — the same
// data-quality figures and the same drift baseline as when it ran in order, whatever arrived since.

const DAY = 86_400_000;
const HORIZON = 7;
const queues = { cpu: `pit-cpu-${randomUUID()}`, train: `pit-train-${randomUUID()}` };
const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

let db: Db;
let store: ArtifactStore;
let closeStore: () => void;
let bundle: WorkflowBundleWithSourceMap;
let nativeConnection: NativeConnection;
let client: Client;
let nightB: Date; // the later night's cutoff
let nightA: Date; // a week earlier

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  ({ db } = await freshDatabase('point_in_time'));
  ({ store, close: closeStore } = await testStore());
  const shop = await seedShop(db.pool, { users: 2000, days: 40, seed: 21, horizonDays: HORIZON });
  nightB = shop.timeline.cutoff;
  nightA = new Date(nightB.getTime() - 7 * DAY);
  bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  const { address, namespace } = connections().temporal;
  nativeConnection = await NativeConnection.connect({ address });
  client = new Client({ connection: await Connection.connect({ address }), namespace });
});

afterAll(async () => {
  await client?.connection.close();
  await nativeConnection?.close();
  closeStore?.();
  await db?.close();
});

async function night(cutoff: Date): Promise<TrainPipelineOutput> {
  const activities = createActivities({ db, store, codeVersion: 'test' });
  const { namespace } = connections().temporal;
  const cpu = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities, interceptors: activityInterceptors({ db }) });
  const train = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.train, activities, interceptors: activityInterceptors({ db }) });
  const config = {
    modelName: 'pit',
    source: { kind: 'events', cutoff: cutoff.toISOString(), horizonDays: HORIZON },
    search: { trials: 1, parallelism: 1, epochs: 2, halving: { eta: 1 } },
    training: { finalEpochs: 2, backend: 'wasm' },
    // a generous drift limit: this test reads the drift baseline, it does not want a failure from it
    quality: { maxPsi: 100 },
    gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false }, versusChampion: { enabled: false } },
    evaluation: { bootstrapSamples: 0, importanceRepeats: 0 },
  };
  return cpu.runUntil(
    train.runUntil(
      client.workflow.execute(trainPipeline, { taskQueue: queues.cpu, workflowId: `train-pit-${randomUUID()}`, args: [{ config, taskQueues: queues, trigger: 'test' }] }),
    ),
  );
}

/** What the night recorded: its events-stage ledger and its clean step's drift baseline and PSI values. */
async function record(runId: string) {
  const events = await db.db.selectFrom('ml.data_quality').select(['rows_in', 'rows_out', 'quarantined']).where('run_id', '=', runId).where('stage', '=', 'events').executeTakeFirstOrThrow();
  const clean = await db.db.selectFrom('ml.run_steps').select('detail').where('run_id', '=', runId).where('step', '=', 'clean').executeTakeFirstOrThrow();
  const detail = clean.detail as { driftBaselineRunId: string | null; drift: Record<string, number> };
  return { events: { rowsIn: Number(events.rows_in), rowsOut: Number(events.rows_out), quarantined: events.quarantined }, driftBaselineRunId: detail.driftBaselineRunId, drift: detail.drift };
}

describe('a night backfilled after a later one', () => {
  it('gets the same quality figures and drift baseline as when it ran in order', async () => {
    const a = await night(nightA);
    expect(a.status).toBe('registered');
    const inOrder = await record(a.runId);
    expect(inOrder.driftBaselineRunId).toBeNull(); // the model's first night

    // the week after night A's as-of time brings more data, some of it invalid (negative prices)
    const { rows } = await db.pool.query('select user_id, product_id from shop.events where user_id is not null and product_id is not null limit 40');
    const late = new Date(nightA.getTime() + HORIZON * DAY + 2 * DAY);
    await db.pool.query(
      `insert into shop.events (event_id, user_id, session_id, product_id, event_type, price, rating, occurred_at)
       select 900000000 + i, (r ->> 'user_id')::bigint, 'late', (r ->> 'product_id')::bigint, 'view',
              case when i % 2 = 0 then -5 else 5 end, null, $2::timestamptz
       from jsonb_array_elements($1::jsonb) with ordinality as t(r, i)`,
      [JSON.stringify(rows), late.toISOString()],
    );

    const b = await night(nightB);
    expect(b.status).toBe('registered');
    const later = await record(b.runId);
    expect(later.driftBaselineRunId).toBe(a.runId); // in order, night B is judged against night A

    // backfill night A again, now that night B (registered, started later) and the late rows exist
    const again = await night(nightA);
    expect(again.status).toBe('registered');
    const backfilled = await record(again.runId);
    expect(backfilled.events).toEqual(inOrder.events);
    expect(backfilled.driftBaselineRunId).toBeNull(); // never night B, which lies after it
    expect(backfilled.drift).toEqual(inOrder.drift);
    expect(again.metrics.testAuc).toBe(a.metrics.testAuc);
  });
});

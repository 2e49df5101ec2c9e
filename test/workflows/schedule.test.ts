import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Db } from '../../db/client.js';
import { DAY, utcMidnight } from '../../db/synthetic/generator.js';
import { seedShop, type SeedShopResult } from '../../db/synthetic/load.js';
import { describeSchedule, type ScheduleView } from '../../schedules/schedules.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import type { TrainPipelineOutput } from '../../workflows/pipeline.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { connections, freshDatabase, testStore } from '../support/services.js';
import { lastJson, runCli } from '../support/cli.js';

// Nightly retrains as Temporal Schedules, driven through the CLI (`node bin/propensity.mjs schedule …`) against
// the real dev server, with this file's own in-process workers on task queues of its own. Each scheduled run's
// as-of time is its scheduled time: cutoff = scheduled time − horizonDays.

const HORIZON = 14;
const queues = { cpu: `sched-cpu-${randomUUID()}`, train: `sched-train-${randomUUID()}` };
const scheduleId = `nightly-${randomUUID().slice(0, 8)}`;

let db: Db;
let dbUrl: string;
let store: ArtifactStore;
let closeStore: () => void;
let bundle: WorkflowBundleWithSourceMap;
let nativeConnection: NativeConnection;
let client: Client;
let shop: SeedShopResult;
let tmp: string;
let configFile: string;

const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

// No source.cutoff: a scheduled run takes it from its scheduled time.
const config = {
  modelName: 'sched',
  source: { kind: 'events', horizonDays: HORIZON },
  search: { trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 3 } },
  training: { finalEpochs: 4, backend: 'wasm' },
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.55 }], versusBaseline: { enabled: false }, versusChampion: { enabled: false } },
  // the runs stand at different nights: their feature profiles may drift apart more than a real night's would
  quality: { maxPsi: 100 },
  evaluation: { bootstrapSamples: 20, importanceRepeats: 0 },
};

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  ({ db, url: dbUrl } = await freshDatabase('schedule_e2e'));
  ({ store, close: closeStore } = await testStore());
  // ends today, unlike the other tests' shops (the generator's default end, anchorWeekday()): a scheduled run's cutoff
  // follows the wall clock
  shop = await seedShop(db.pool, { users: 2000, days: 40, seed: 21, horizonDays: HORIZON, end: utcMidnight() });
  bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  const { address, namespace } = connections().temporal;
  nativeConnection = await NativeConnection.connect({ address });
  client = new Client({ connection: await Connection.connect({ address }), namespace });
  tmp = mkdtempSync(path.join(os.tmpdir(), 'propensity-schedule-'));
  configFile = path.join(tmp, 'nightly.json');
  writeFileSync(configFile, JSON.stringify(config));
});

afterAll(async () => {
  await workers?.stop();
  for (const id of [scheduleId, `${scheduleId}-bad`]) await client?.schedule.getHandle(id).delete().catch(() => {});
  await client?.connection.close();
  await nativeConnection?.close();
  closeStore?.();
  await db?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Runs `propensity <args>` in a child process against this test's services. */
const cli = (args: string[]) => runCli(args, { databaseUrl: dbUrl, cwd: tmp });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: (v: ScheduleView) => boolean, timeoutMs = 60_000): Promise<ScheduleView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await describeSchedule(client, scheduleId, { db });
    if (check(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v.info)}`);
    await sleep(250);
  }
}

let workers: { stop(): Promise<void> } | undefined;

/** Starts this file's workers (cpu: workflows + data activities, train: trials) until stopWorkers. */
async function startWorkers(): Promise<void> {
  const activities = createActivities({ db, store, codeVersion: 'test' });
  const { namespace } = connections().temporal;
  const cpu = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities, interceptors: activityInterceptors({ db }) });
  const train = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.train, activities, interceptors: activityInterceptors({ db }), maxConcurrentActivityTaskExecutions: 2 });
  const running = Promise.all([cpu.run(), train.run()]);
  workers = {
    async stop() {
      cpu.shutdown();
      train.shutdown();
      await running;
    },
  };
}

describe('propensity schedule', () => {
  const scheduled: { triggered?: string; nights: string[] } = { nights: [] };

  it('creates a schedule from a config file: cron in a time zone, SKIP, catch-up window, pause on failure', async () => {
    const r = await cli([
      'schedule', 'create', scheduleId, '--config', configFile, '--cron', '0 2 * * *', '--timezone', 'UTC',
      '--catchup-window', '12h', '--note', 'nightly retrain', '--cpu-queue', queues.cpu, '--train-queue', queues.train, '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const v = lastJson<ScheduleView>(r.stdout);
    expect(v).toMatchObject({
      scheduleId,
      modelName: 'sched',
      workflowType: 'trainPipeline',
      taskQueue: queues.cpu,
      taskQueues: queues,
      spec: { cron: ['0 2 * * *'], timezone: 'UTC' },
      policies: { overlap: 'SKIP', catchupWindow: '12h', pauseOnFailure: true },
      state: { paused: false, note: 'nightly retrain' },
    });
    // the next nights, at 02:00 UTC
    expect(v.info.nextActionTimes[0]).toMatch(/T02:00:00\.000Z$/);
    expect(Date.parse(v.info.nextActionTimes[1]) - Date.parse(v.info.nextActionTimes[0])).toBe(DAY);
  });

  it('rejects a bad cron expression, a taken id and an unknown id: one message, non-zero exit, nothing changed', async () => {
    const bad = `${scheduleId}-bad`;
    const [cron, taken, unknown] = await Promise.all([
      cli(['schedule', 'create', bad, '--config', configFile, '--cron', '0 25 * * *']),
      cli(['schedule', 'create', scheduleId, '--config', configFile, '--cron', '30 3 * * *', '--note', 'replaced?']),
      cli(['schedule', 'describe', `${scheduleId}-nope`]),
    ]);
    expect(cron.code).toBe(2);
    expect(cron.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^propensity: InvalidSchedule: cron expression "0 25 \* \* \*": hour field "25" is invalid/),
    ]);
    expect(taken.code).toBe(5);
    expect(taken.stderr.trim()).toBe(`propensity: ScheduleExists: schedule "${scheduleId}" exists: delete it first or choose another id`);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr.trim()).toMatch(/^propensity: UnknownSchedule: no schedule/);
    for (const r of [cron, taken]) expect(r.stdout).toBe('');

    await expect(client.schedule.getHandle(bad).describe()).rejects.toThrow(/not found/i);
    const v = await describeSchedule(client, scheduleId);
    expect(v.spec.cron).toEqual(['0 2 * * *']);
    expect(v.state.note).toBe('nightly retrain');
  });

  it('pause and unpause with a note show in describe', async () => {
    const paused = await cli(['schedule', 'pause', scheduleId, '--note', 'holiday freeze']);
    expect(paused.code).toBe(0);
    expect(paused.stdout.trim()).toBe(`${scheduleId}: paused (note: holiday freeze)`);
    expect((await describeSchedule(client, scheduleId)).state).toMatchObject({ paused: true, note: 'holiday freeze' });
    const unpaused = await cli(['schedule', 'unpause', scheduleId, '--note', 'back on', '--json']);
    expect(unpaused.code).toBe(0);
    expect(lastJson(unpaused.stdout)).toMatchObject({ paused: false, note: 'back on' });
    expect((await describeSchedule(client, scheduleId)).state).toMatchObject({ paused: false, note: 'back on' });
  });

  it('trigger starts one trainPipeline run; a second trigger while it runs is skipped (SKIP)', async () => {
    // No worker polls yet, so the first run is certainly still running when the second trigger arrives; the CLI
    // refuses to start work no worker polls for (NoWorkers) unless told the pool scales up from zero, as here.
    const idle = (args: string[]) => runCli(args, { databaseUrl: dbUrl, cwd: tmp, env: { PROPENSITY_REQUIRE_WORKERS: 'false' } });
    const first = await idle(['schedule', 'trigger', scheduleId, '--json']);
    expect(first.code).toBe(0);
    expect(lastJson(first.stdout)).toMatchObject({ overlap: 'SKIP' });
    await until('the first run to start', (v) => v.info.numActionsTaken === 1);
    const second = await idle(['schedule', 'trigger', scheduleId]);
    expect(second.code).toBe(0);
    const v = await until('the second trigger to be skipped', (s) => s.info.numActionsSkippedOverlap === 1);
    expect(v.info.numActionsTaken).toBe(1);
    expect(v.info.recentActions).toHaveLength(1);
    expect(v.info.runningActions).toHaveLength(1);
    const action = v.info.recentActions[0];
    expect(action.workflowId.startsWith(`${scheduleId}-`)).toBe(true);
    expect(action.status).toBe('RUNNING');
    scheduled.triggered = action.scheduledAt;
    // From here on the runs execute; the backfill below queues behind this one.
    await startWorkers();
  });

  it('backfill of two past nights queues two runs (after the running one: buffer_all)', async () => {
    const end = shop.timeline.end.getTime();
    const from = new Date(end - 4 * DAY).toISOString();
    const to = new Date(end - 2 * DAY).toISOString();
    const r = await cli(['schedule', 'backfill', scheduleId, '--from', from, '--to', to, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    scheduled.nights = [new Date(end - 4 * DAY + 2 * 3_600_000).toISOString(), new Date(end - 3 * DAY + 2 * 3_600_000).toISOString()];
    expect(lastJson(r.stdout)).toMatchObject({ overlap: 'BUFFER_ALL', expected: scheduled.nights });
    const bad = await cli(['schedule', 'backfill', scheduleId, '--from', to, '--to', from]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/backfill start .* must be before its end/);
  });

  it(
    'runs the three: each cutoff is its scheduled time − horizon; describe --json shows them',
    async () => {
      const v3 = await until('three runs to finish', (s) => s.info.numActionsTaken === 3 && s.info.runningActions.length === 0, 150_000);
      const done = await Promise.all(
        v3.info.recentActions.map(async (a) => ({ a, out: (await client.workflow.getHandle(a.workflowId, a.runId).result()) as TrainPipelineOutput })),
      );
      await workers?.stop();
      workers = undefined;
      expect(done.map((d) => d.a.scheduledAt).sort()).toEqual([...scheduled.nights, scheduled.triggered].sort());
      // the triggered run (as-of now) registers v1
      const triggered = done.find((d) => d.a.scheduledAt === scheduled.triggered)!;
      expect(triggered.out.status).toBe('registered');
      expect(triggered.out.modelVersion).toBe(1);

      const rows = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('model_name', '=', 'sched').execute();
      expect(rows).toHaveLength(3);
      for (const { a, out } of done) {
        const row = rows.find((r) => r.run_id === a.runId)!;
        // Temporal gives the run its scheduled time to the second (as in the workflow id); describe has milliseconds
        const cutoff = new Date(Math.floor(Date.parse(a.scheduledAt) / 1000) * 1000 - HORIZON * DAY).toISOString();
        expect(row.cutoff?.toISOString()).toBe(cutoff);
        expect(out.cutoff).toBe(cutoff);
        expect(row.trigger).toBe(`schedule:${scheduleId}`);
        expect(row.workflow_id).toBe(a.workflowId);
        expect((row.config as { source: { cutoff: string } }).source.cutoff).toBe(cutoff);
      }
      // events after a night's as-of time are out of its range, not invalid (the generator's future rows too): each
      // night counts only the events before its as-of time
      const quality = await db.db.selectFrom('ml.data_quality').selectAll().where('stage', '=', 'events').execute();
      expect(quality).toHaveLength(3);
      for (const q of quality) expect((q.quarantined as Record<string, number>).future_timestamp).toBe(0);
      void shop;
      // the backfilled nights reproduce those nights' cutoffs
      expect(rows.filter((r) => r.run_id !== triggered.a.runId).map((r) => r.cutoff!.toISOString()).sort()).toEqual(
        scheduled.nights.map((n) => new Date(Date.parse(n) - HORIZON * DAY).toISOString()),
      );

      const [r, list] = await Promise.all([cli(['schedule', 'describe', scheduleId, '--json']), cli(['schedule', 'list', '--json'])]);
      expect(r.code).toBe(0);
      expect(list.code).toBe(0);
      expect(lastJson<unknown[]>(list.stdout)).toContainEqual(
        expect.objectContaining({ scheduleId, modelName: 'sched', cron: ['0 2 * * *'], paused: false, lastAction: expect.objectContaining({ workflowId: expect.stringContaining(scheduleId) }) }),
      );
      const v = lastJson<ScheduleView>(r.stdout);
      expect(v.info).toMatchObject({ numActionsTaken: 3, numActionsSkippedOverlap: 1, runningActions: [] });
      const shown = v.info.recentActions.find((x) => x.runId === triggered.a.runId)!;
      expect(shown).toMatchObject({
        workflowId: triggered.a.workflowId,
        status: 'COMPLETED',
        run: { status: 'registered', modelVersion: 1, trigger: `schedule:${scheduleId}`, cutoff: triggered.out.cutoff },
      });
      expect(v.state.paused).toBe(false);
    },
    200_000,
  );

  it('delete removes the schedule', async () => {
    const r = await cli(['schedule', 'delete', scheduleId]);
    expect(r.code).toBe(0);
    await expect(client.schedule.getHandle(scheduleId).describe()).rejects.toThrow(/not found/i);
  });
});

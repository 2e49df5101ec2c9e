import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beat } from '../../activities/heartbeat.js';
import type { Db } from '../../db/client.js';
import { findRepoRoot, loadEnv } from '../../infra/index.js';
import { heartbeatThrottle } from '../../workers/run-worker.js';
import { lastJson, runCli } from '../support/cli.js';
import { connections, freshDatabase } from '../support/services.js';

// `propensity cancel` against the real Temporal dev server and Postgres: the CLI runs as its own process, the
// workers (when there are any) in this one, each test on task queues of its own.
let db: Db;
let dbUrl: string;
let client: Client;
let nativeConnection: NativeConnection;
let bundle: WorkflowBundleWithSourceMap;
let emptyDataDir: string;
const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

beforeAll(async () => {
  // the broken workflow's task failures would fill the log otherwise
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
  ({ db, url: dbUrl } = await freshDatabase('cancel_cli'));
  const c = connections();
  client = new Client({ connection: await Connection.connect({ address: c.temporal.address }), namespace: c.temporal.namespace });
  nativeConnection = await NativeConnection.connect({ address: c.temporal.address });
  bundle = await bundleWorkflowCode({ workflowsPath: path.join(findRepoRoot(), 'test', 'support', 'cancel-workflows.ts'), logger: quietLogger });
  emptyDataDir = mkdtempSync(path.join(os.tmpdir(), 'cancel-cli-'));
});

afterAll(async () => {
  await client?.connection.close();
  await nativeConnection?.close();
  await db?.close();
  if (emptyDataDir) rmSync(emptyDataDir, { recursive: true, force: true });
});

const cli = (args: string[]) => runCli(args, { databaseUrl: dbUrl, env: { PROPENSITY_DATA_DIR: emptyDataDir } });

const config = (modelName: string) => ({ modelName, source: { kind: 'events', cutoff: '2026-01-01T00:00:00Z', horizonDays: 7 } });

const start = (taskQueue: string, workflowId: string, modelName: string, trigger: string) =>
  client.workflow.start('trainPipeline', { taskQueue, workflowId, args: [{ config: config(modelName), trigger }] });

const row = (runId: string) => db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', runId).executeTakeFirst();

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function withWorker<T>(taskQueue: string, fn: () => Promise<T>): Promise<T> {
  const worker = await Worker.create({ connection: nativeConnection, namespace: connections().temporal.namespace, taskQueue, workflowBundle: bundle });
  return worker.runUntil(fn());
}

/** A training-like activity: heartbeats every 200 ms until it hears of a cancellation or `budgetMs` runs out. */
function beatingActivity(seen: { beats: number; ended?: 'cancelled' | 'budget' }, budgetMs: number) {
  return {
    async beatUntilCancelled() {
      const ctx = Context.current();
      const t0 = Date.now();
      while (Date.now() - t0 < budgetMs) {
        beat({ n: ++seen.beats });
        if (ctx.cancellationSignal.aborted) {
          seen.ended = 'cancelled';
          throw ctx.cancellationSignal.reason;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      seen.ended = 'budget';
    },
  };
}

describe('propensity cancel', () => {
  it('terminates at once a run no worker ever picked up on a queue nobody polls, and adds a cancelled row for it', async () => {
    const workflowId = `train-cancel-idle-${randomUUID()}`;
    const handle = await start(`cancel-none-${randomUUID()}`, workflowId, 'idle', 'test');
    expect(await row(handle.firstExecutionRunId)).toBeUndefined();

    const r = await cli(['cancel', workflowId, '--grace', '60', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = lastJson(r.stdout);
    expect(out).toMatchObject({
      workflowId, runId: handle.firstExecutionRunId, workflowType: 'trainPipeline', outcome: 'terminated', temporalStatus: 'TERMINATED',
      graceSeconds: 60, immediate: true, recorded: 'inserted', reason: expect.stringMatching(/^no worker picked it up: nothing polls task queue cancel-none-/),
    });
    // the run can never see the request, so the 60 s grace period is not waited out
    expect(out.waitedSeconds).toBeLessThan(30);
    expect((await handle.describe()).status.name).toBe('TERMINATED');
    const rec = await row(handle.firstExecutionRunId);
    expect(rec).toMatchObject({ workflow_id: workflowId, model_name: 'idle', status: 'cancelled', trigger: 'test', error_type: 'Terminated', horizon_days: 7 });
    expect(rec!.finished_at).toBeInstanceOf(Date);
    expect(rec!.error_message).toMatch(/no worker picked it up: nothing polls task queue cancel-none-.*, so it could never see the cancellation request and was terminated at once/);
    expect(rec!.config).toEqual(config('idle'));

    // a second cancel changes nothing and says why
    const again = await cli(['cancel', workflowId]);
    expect(again.code).toBe(5);
    expect(again.stderr).toMatch(/^propensity: NotRunning: run .* is not running \(Temporal: TERMINATED, Postgres: cancelled\); nothing cancelled/);
  });

  it('terminates a run whose workflow task keeps failing, found by its run id, after the grace period', async () => {
    const taskQueue = `cancel-broken-${randomUUID()}`;
    const workflowId = `train-cancel-broken-${randomUUID()}`;
    await withWorker(taskQueue, async () => {
      const handle = await start(taskQueue, workflowId, 'broken', 'broken');
      // the worker fails its workflow task again and again; the run stays RUNNING and ignores cancellation
      await waitFor('a failing workflow task', async () => ((await handle.describe()).raw.pendingWorkflowTask?.attempt ?? 0) >= 2);

      const t0 = Date.now();
      const r = await cli(['cancel', handle.firstExecutionRunId, '--grace', '3']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(3000);
      expect(r.stdout).toMatch(new RegExp(`terminated ${workflowId} \\(run ${handle.firstExecutionRunId}\\) after the 3 s grace period: its workflow task failed \\d+ times? in a row`));
      expect(r.stdout).toMatch(/a row recording it as cancelled was added to ml\.pipeline_runs/);
      expect((await handle.describe()).status.name).toBe('TERMINATED');
      expect(await row(handle.firstExecutionRunId)).toMatchObject({ model_name: 'broken', status: 'cancelled', error_type: 'Terminated', finished_at: expect.any(Date) });
    });
  });

  it('cancels a healthy run cleanly within the grace period and marks its own row cancelled', async () => {
    const taskQueue = `cancel-ok-${randomUUID()}`;
    const workflowId = `train-cancel-ok-${randomUUID()}`;
    await withWorker(taskQueue, async () => {
      const handle = await start(taskQueue, workflowId, 'healthy', 'wait');
      const runId = handle.firstExecutionRunId;
      // the row startRun writes for a run that is going
      await db.db
        .insertInto('ml.pipeline_runs')
        .values({ run_id: runId, workflow_id: workflowId, model_name: 'healthy', status: 'running', trigger: 'wait', config: JSON.stringify(config('healthy')), config_hash: 'h', code_version: 'test' })
        .execute();
      await waitFor('the workflow to start', async () => (await handle.fetchHistory()).events?.some((e) => e.workflowTaskCompletedEventAttributes));

      const r = await cli(['cancel', workflowId, '--json']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = lastJson(r.stdout);
      expect(out).toMatchObject({ workflowId, runId, outcome: 'cancelled', temporalStatus: 'CANCELLED', graceSeconds: 30, recorded: 'updated', reason: null });
      expect(out.waitedSeconds).toBeLessThan(30);
      expect(await row(runId)).toMatchObject({ status: 'cancelled', error_type: 'Cancelled', finished_at: expect.any(Date), error_message: expect.stringMatching(/stopped cleanly/) });
    });
  });

  it("a cancelled run's training activity hears of it within the worker's heartbeat throttle, not the SDK's minute", async () => {
    // The workers' own throttle option (PROPENSITY_HEARTBEAT_THROTTLE_SECONDS, here 1 s) on a step with a training
    // step's 120 s heartbeat timeout. Without it the SDK sends the next heartbeat, whose reply carries the
    // cancellation, 60 s after the last one, and the 20 s budget runs out first.
    const taskQueue = `cancel-train-${randomUUID()}`;
    const seen: Parameters<typeof beatingActivity>[0] = { beats: 0 };
    const worker = await Worker.create({
      connection: nativeConnection,
      namespace: connections().temporal.namespace,
      taskQueue,
      workflowBundle: bundle,
      activities: beatingActivity(seen, 20_000),
      ...heartbeatThrottle(loadEnv({ PROPENSITY_HEARTBEAT_THROTTLE_SECONDS: '1' })),
    });
    await worker.runUntil(async () => {
      const handle = await start(taskQueue, `train-cancel-beating-${randomUUID()}`, 'beating', 'train');
      // the first heartbeat goes out at once; from then on the worker holds them back
      await waitFor('the activity to heartbeat', async () => seen.beats >= 3);
      await handle.cancel();
      await waitFor('the activity to end', async () => seen.ended, 40_000);
      expect(seen.ended).toBe('cancelled');
      expect((await handle.describe()).status.name).toBe('CANCELLED');
    });
  });

  it('names an id nobody knows with exit code 4, and refuses a malformed id or grace with exit code 2', async () => {
    const unknown = await cli(['cancel', `train-nobody-${randomUUID()}`]);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toMatch(/^propensity: UnknownRun: no run has run id or workflow id "train-nobody-/);
    const bad = await cli(['cancel', '../../etc']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^propensity: InvalidId: invalid run id or workflow id "..\/..\/etc": it contains "\.\."/);
    const grace = await cli(['cancel', 'train-x', '--grace', '-1']);
    expect(grace.code).toBe(2);
    expect(grace.stderr).toMatch(/--grace must be a number of seconds from 0 to 86400, got "-1"/);
  });
});

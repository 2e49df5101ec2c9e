import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../db/client.js';
import { lastJson, runCli } from '../support/cli.js';
import { connections, freshDatabase } from '../support/services.js';

// "No silent waits" against the real dev server: commands that start work refuse at once, naming the missing
// worker, when nobody polls the task queues they need (each test has a queue pair of its own that no worker polls),
// and `cancel` ends a run no worker ever picked up.
let db: Db;
let dbUrl: string;
let client: Client;
let dir: string;

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
  ({ db, url: dbUrl } = await freshDatabase('no_workers'));
  const c = connections();
  client = new Client({ connection: await Connection.connect({ address: c.temporal.address }), namespace: c.temporal.namespace });
  dir = mkdtempSync(path.join(os.tmpdir(), 'no-workers-'));
  writeFileSync(path.join(dir, 'small.yaml'), 'modelName: idle\nsource:\n  kind: events\n  cutoff: "2026-01-01T00:00:00Z"\n  horizonDays: 7\nsearch:\n  trials: 2\n');
  writeFileSync(path.join(dir, 'nightly.yaml'), 'modelName: idle\nsource:\n  kind: events\n  horizonDays: 7\n');
});

afterAll(async () => {
  await client?.connection.close();
  await db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const uniqueQueues = () => {
  const id = randomUUID().slice(0, 8);
  return { cpu: `nobody-cpu-${id}`, train: `nobody-train-${id}` };
};
const cli = async (args: string[], queues: { cpu: string; train: string }) => {
  const r = await runCli(args, { databaseUrl: dbUrl, env: { PROPENSITY_CPU_QUEUE: queues.cpu, PROPENSITY_TRAIN_QUEUE: queues.train } });
  // with a source edited since the last build the CLI says it runs the sources (bin/propensity.mjs): not an error
  return { ...r, stderr: r.stderr.replace(/^propensity: .* running the TypeScript sources through tsx meanwhile\n/, '') };
};

async function exists(workflowId: string): Promise<boolean> {
  try {
    await client.workflow.getHandle(workflowId).describe();
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

describe('no silent waits', () => {
  it('run fails within seconds naming every missing worker, with exit code 6, and starts nothing', async () => {
    const q = uniqueQueues();
    const workflowId = `train-idle-${randomUUID()}`;
    const t0 = Date.now();
    const r = await cli(['run', '--config', path.join(dir, 'small.yaml'), '--id', workflowId], q);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.code).toBe(6);
    expect(r.stdout).toBe('');
    const error = r.stderr.split('\n').find((l) => l.startsWith('propensity: '));
    expect(error).toBe(
      `propensity: NoWorkers: no cpu worker polls task queue ${q.cpu} for workflow tasks (the pipeline workflow); ` +
        `no cpu worker polls task queue ${q.cpu} for activity tasks (ingest, clean, split, evaluate, register); ` +
        `no train worker polls task queue ${q.train} for activity tasks (the trials and the final training): nothing was started. ` +
        `To fix it, run \`PROPENSITY_CPU_QUEUE=${q.cpu} npx propensity worker --kind cpu\` and \`PROPENSITY_TRAIN_QUEUE=${q.train} npx propensity worker --kind train\``,
    );
    expect(await exists(workflowId)).toBe(false);
    expect(await db.db.selectFrom('ml.pipeline_runs').select('run_id').where('workflow_id', '=', workflowId).execute()).toEqual([]);
  });

  it('names only the worker that is missing: with a train worker polling, the cpu worker', async () => {
    const q = uniqueQueues();
    const c = connections();
    const connection = await NativeConnection.connect({ address: c.temporal.address });
    const worker = await Worker.create({ connection, namespace: c.temporal.namespace, taskQueue: q.train, activities: { async noop() {} } });
    try {
      const workflowId = `train-idle-${randomUUID()}`;
      const r = await worker.runUntil(async () => {
        // the worker's first poll reaches the server a moment after it starts
        for (let i = 0; i < 40; i++) {
          const res = await client.workflowService.describeTaskQueue({ namespace: c.temporal.namespace, taskQueue: { name: q.train }, taskQueueType: 2 });
          if (res.pollers?.length) break;
          await new Promise((res) => setTimeout(res, 250));
        }
        return cli(['run', '--config', path.join(dir, 'small.yaml'), '--id', workflowId, '--detach'], q);
      });
      expect(r.code).toBe(6);
      expect(r.stderr).toContain(`no cpu worker polls task queue ${q.cpu} for workflow tasks`);
      expect(r.stderr).not.toContain(q.train);
      expect(r.stderr).toContain(`To fix it, run \`PROPENSITY_CPU_QUEUE=${q.cpu} npx propensity worker --kind cpu\`\n`);
      expect(await exists(workflowId)).toBe(false);
    } finally {
      await connection.close();
    }
  });

  it('a run whose training.pool is gpu fails at once naming the gpu pool when only cpu-pool train workers poll', async () => {
    const q = uniqueQueues();
    const c = connections();
    writeFileSync(path.join(dir, 'gpu.yaml'), 'modelName: idle\nsource:\n  kind: events\n  cutoff: "2026-01-01T00:00:00Z"\n  horizonDays: 7\ntraining:\n  pool: gpu\n');
    const connection = await NativeConnection.connect({ address: c.temporal.address });
    // a train worker of the default pool polls; the gpu pool's queue has nobody
    const worker = await Worker.create({ connection, namespace: c.temporal.namespace, taskQueue: q.train, activities: { async noop() {} } });
    try {
      const workflowId = `train-idle-${randomUUID()}`;
      const run = async () => {
        for (let i = 0; i < 40; i++) {
          const res = await client.workflowService.describeTaskQueue({ namespace: c.temporal.namespace, taskQueue: { name: q.train }, taskQueueType: 2 });
          if (res.pollers?.length) break;
          await new Promise((res) => setTimeout(res, 250));
        }
        return cli(['run', '--config', path.join(dir, 'gpu.yaml'), '--id', workflowId, '--detach'], q);
      };
      const r = await worker.runUntil(run());
      expect(r.code).toBe(6);
      expect(r.stderr).toContain(`no train worker polls task queue ${q.train}-gpu for activity tasks (the trials and the final training of pool gpu)`);
      expect(r.stderr).toContain(`PROPENSITY_TRAIN_POOL=gpu`);
      // the default pool's queue has its worker, so it is not named
      expect(r.stderr).not.toContain(`queue ${q.train} for`);
      expect(await exists(workflowId)).toBe(false);
    } finally {
      await connection.close();
    }
  });

  it('schedule trigger and backfill refuse on the schedule\'s own queues, and the schedule takes no action', async () => {
    const q = uniqueQueues();
    const id = `nightly-idle-${randomUUID().slice(0, 8)}`;
    const other = uniqueQueues(); // the command's environment names other queues: the schedule's count
    const created = await cli(['schedule', 'create', id, '--config', path.join(dir, 'nightly.yaml'), '--cron', '0 2 * * *', '--cpu-queue', q.cpu, '--train-queue', q.train, '--paused'], other);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    try {
      const trigger = await cli(['schedule', 'trigger', id], other);
      expect(trigger.code).toBe(6);
      expect(trigger.stderr).toMatch(new RegExp(`^propensity: NoWorkers: no cpu worker polls task queue ${q.cpu} for workflow tasks.*no train worker polls task queue ${q.train}`, 'm'));
      const backfill = await cli(['schedule', 'backfill', id, '--from', '2026-01-01T00:00:00Z', '--to', '2026-01-03T00:00:00Z'], other);
      expect(backfill.code).toBe(6);
      expect(backfill.stderr).toMatch(/NoWorkers: no cpu worker polls/);
      const d = await client.schedule.getHandle(id).describe();
      expect(d.info.numActionsTaken).toBe(0);
      expect(d.info.recentActions).toEqual([]);
      // an unknown schedule is still reported as such, before any worker is asked about
      const unknown = await cli(['schedule', 'trigger', `${id}-nope`], other);
      expect(unknown.code).toBe(4);
      expect(unknown.stderr).toMatch(/UnknownSchedule/);
    } finally {
      await client.schedule.getHandle(id).delete();
    }
  });

  it('cancel ends a run no worker ever picked up, found by its run id, and records it as cancelled', async () => {
    const q = uniqueQueues();
    const workflowId = `train-idle-${randomUUID()}`;
    // the CLI refuses to start such a run now; a run started while workers were up, which then went away, is one
    const handle = await client.workflow.start('trainPipeline', {
      taskQueue: q.cpu,
      workflowId,
      args: [{ config: { modelName: 'idle', source: { kind: 'events', cutoff: '2026-01-01T00:00:00Z', horizonDays: 7 } }, trigger: 'cli' }],
    });
    const r = await cli(['cancel', handle.firstExecutionRunId, '--grace', '1', '--json'], q);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(lastJson(r.stdout)).toMatchObject({
      workflowId, runId: handle.firstExecutionRunId, outcome: 'terminated', recorded: 'inserted',
      reason: `no worker picked it up: nothing polls task queue ${q.cpu}`,
    });
    expect((await handle.describe()).status.name).toBe('TERMINATED');
    const row = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', handle.firstExecutionRunId).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ workflow_id: workflowId, model_name: 'idle', status: 'cancelled', error_type: 'Terminated', code_version: 'none' });
    // and `runs` lists it
    const runs = await cli(['runs', '--json'], q);
    expect(lastJson(runs.stdout).map((x: { run_id: string; status: string }) => [x.run_id, x.status])).toContainEqual([handle.firstExecutionRunId, 'cancelled']);
  });
});

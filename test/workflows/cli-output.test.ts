import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { trainPipeline, type TrainPipelineOutput } from '../../workflows/pipeline.js';
import { runCli } from '../support/cli.js';
import { connections, freshDatabase, testStore } from '../support/services.js';

// What the CLI prints for a finished, rejected run, run as a user would (its own process) against the real dev
// stack: JSON that parses in subcommands too, tables that stay aligned, `run watch` of a finished run with its exit
// code, and the model card of a rejected run.
let db: Db;
let dbUrl: string;
let store: ArtifactStore;
let closeStore: () => void;
let bundle: WorkflowBundleWithSourceMap;
let nativeConnection: NativeConnection;
let client: Client;
let tmp: string;
let rejected: TrainPipelineOutput & { workflowId: string };

const MODEL = 'cliout';
const queues = { cpu: `cliout-cpu-${randomUUID()}`, train: `cliout-train-${randomUUID()}` };
const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

async function withWorkers<T>(fn: () => Promise<T>): Promise<T> {
  const activities = createActivities({ db, store, codeVersion: 'test' });
  const { namespace } = connections().temporal;
  const cpu = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities, interceptors: activityInterceptors({ db }) });
  const train = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.train, activities, interceptors: activityInterceptors({ db }), maxConcurrentActivityTaskExecutions: 1 });
  return cpu.runUntil(train.runUntil(fn()));
}

/** The CLI in its own process, on this file's database and queues; an empty data dir, so it finds everything through the variables. */
const cli = (args: string[]) => runCli(args, { databaseUrl: dbUrl, env: { PROPENSITY_DATA_DIR: tmp, PROPENSITY_CPU_QUEUE: queues.cpu, PROPENSITY_TRAIN_QUEUE: queues.train } });

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  ({ db, url: dbUrl } = await freshDatabase('cli_output'));
  ({ store, close: closeStore } = await testStore());
  const shop = await seedShop(db.pool, { users: 2000, days: 40, seed: 17, horizonDays: 14 });
  bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  const { address, namespace } = connections().temporal;
  nativeConnection = await NativeConnection.connect({ address });
  client = new Client({ connection: await Connection.connect({ address }), namespace });
  tmp = mkdtempSync(path.join(os.tmpdir(), 'cli-output-'));
  const workflowId = `train-cliout-${randomUUID()}`;
  // a gate no model passes (test ROC-AUC ≥ 0.999) beside one every model passes: a rejected run with both kinds of check
  const out = await withWorkers(() =>
    client.workflow.execute(trainPipeline, {
      taskQueue: queues.cpu,
      workflowId,
      args: [
        {
          config: {
            modelName: MODEL,
            source: { kind: 'events', cutoff: shop.timeline.cutoff.toISOString(), horizonDays: 14 },
            search: { trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 1, minEpochs: 3 } },
            training: { finalEpochs: 4, backend: 'wasm' },
            gate: {
              thresholds: [
                { metric: 'rocAuc', op: '>=', value: 0.999 },
                { metric: 'rocAuc', op: '>=', value: 0.01 },
              ],
              versusBaseline: { enabled: false },
            },
            evaluation: { bootstrapSamples: 0, importanceRepeats: 0 },
          },
          taskQueues: queues,
          trigger: 'test',
        },
      ],
    }),
  );
  expect(out.status).toBe('rejected');
  rejected = { ...out, workflowId };
});

afterAll(async () => {
  await client?.connection.close();
  await nativeConnection?.close();
  closeStore?.();
  await db?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The whole of stdout as one JSON value: nothing human mixed in. */
const json = (stdout: string) => JSON.parse(stdout) as unknown;

describe('--json, honoured in subcommands', () => {
  it('run show <id> --json prints one JSON object although `run` has a --json of its own', async () => {
    const r = await cli(['run', 'show', rejected.runId, '--json']);
    expect(r.code).toBe(0);
    expect(json(r.stdout)).toMatchObject({ run: { run_id: rejected.runId, status: 'rejected' }, evaluation: { blessed: false } });
  });

  it('runs --json, models list --json and schedule list --json print parseable JSON', async () => {
    const runs = await cli(['runs', '--json']);
    expect(runs.code).toBe(0);
    expect(json(runs.stdout)).toEqual([expect.objectContaining({ run_id: rejected.runId, status: 'rejected' })]);
    const models = await cli(['models', 'list', '--json']);
    expect(models.code).toBe(0);
    expect(json(models.stdout)).toEqual([]); // a rejected run registers nothing
    const schedules = await cli(['schedule', 'list', '--json']);
    expect(schedules.code).toBe(0);
    expect(Array.isArray(json(schedules.stdout))).toBe(true);
  });
});

describe('tables and messages', () => {
  it('runs prints an aligned table, and says which runs there are none of', async () => {
    const r = await cli(['runs']);
    expect(r.code).toBe(0);
    const [header, row] = r.stdout.trimEnd().split('\n');
    const { started_at } = await db.db.selectFrom('ml.pipeline_runs').select('started_at').where('run_id', '=', rejected.runId).executeTakeFirstOrThrow();
    const rejectedStartedAt = started_at.toISOString();
    expect(row).toContain(rejected.workflowId);
    // every column starts where its header does, whatever the widths of the cells before it
    for (const [column, cell] of [['model', MODEL], ['status', 'rejected'], ['started', rejectedStartedAt]] as const) {
      expect(row.slice(header.indexOf(column)).startsWith(cell), `${column}: ${row}`).toBe(true);
    }
    expect((await cli(['runs', '--status', 'running'])).stdout.trim()).toBe('no running runs (`propensity runs` lists every run)');
    expect((await cli(['runs', '--model', 'nosuch'])).stdout.trim()).toBe('no runs of model nosuch (`propensity runs` lists every run)');
    expect((await cli(['runs', '--model', MODEL, '--status', 'awaiting_approval'])).stdout.trim()).toBe(
      `no runs of model ${MODEL} awaiting approval (\`propensity runs\` lists every run)`,
    );
  });

  it('run show lists every gate check, the passed one too', async () => {
    const r = await cli(['run', 'show', rejected.workflowId]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/✗\s+threshold rocAuc >= 0\.999\s+0\.\d{4}/);
    expect(r.stdout).toMatch(/✓\s+threshold rocAuc >= 0\.01\s+0\.\d{4}/);
  });
});

describe('run show --card', () => {
  it("saves a rejected run's model card, from the run's own prefix", async () => {
    const file = path.join(tmp, 'card.html');
    const r = await cli(['run', 'show', rejected.runId, '--card', file, '--json']);
    expect(r.code).toBe(0);
    expect(json(r.stdout)).toMatchObject({ cardFile: file });
    expect(existsSync(file)).toBe(true);
    const html = readFileSync(file, 'utf8');
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).toContain(MODEL);
  });
});

describe('run watch', () => {
  it("follows a finished run: its completed stages, then its result, with `run`'s exit code (3: not registered)", async () => {
    const r = await withWorkers(() => cli(['run', 'watch', rejected.workflowId]));
    expect(r.code).toBe(3);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`following ${rejected.workflowId} (run ${rejected.runId}); Ctrl-C stops following, not the run`);
    for (const stage of ['ingest', 'clean', 'split', 'search', 'final', 'evaluate']) expect(r.stdout).toMatch(new RegExp(`✓ ${stage}\\s`));
    expect(lines.at(-1)).toMatch(new RegExp(`^rejected: ${MODEL} test ROC-AUC 0\\.\\d{4}: `));
  });

  it('by run id, with --json: the result alone', async () => {
    const r = await withWorkers(() => cli(['run', 'watch', rejected.runId, '--json']));
    expect(r.code).toBe(3);
    expect(json(r.stdout)).toMatchObject({ status: 'rejected', runId: rejected.runId });
  });

  it('an unknown run: UnknownRun, exit 4', async () => {
    const r = await cli(['run', 'watch', `train-nosuch-${randomUUID()}`]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/propensity: UnknownRun: no pipeline run has run id or workflow id "train-nosuch-/);
  });
});

describe('schedule trigger', () => {
  it('prints the workflow id of the run it started', async () => {
    const scheduleId = `cliout-${randomUUID().slice(0, 8)}`;
    const config = path.join(tmp, 'scheduled.json');
    writeFileSync(config, JSON.stringify({ modelName: MODEL, source: { kind: 'events', horizonDays: 14 } }));
    const created = await cli(['schedule', 'create', scheduleId, '--config', config, '--cron', '0 3 1 1 *', '--cpu-queue', queues.cpu, '--train-queue', queues.train]);
    expect(created.code).toBe(0);
    try {
      const r = await withWorkers(async () => {
        const r = await cli(['schedule', 'trigger', scheduleId, '--json']);
        // the run itself is not what this test is about
        const id = (json(r.stdout) as { workflowId?: string }).workflowId;
        if (id) await client.workflow.getHandle(id).terminate('test: only its id mattered').catch(() => undefined);
        return r;
      });
      expect(r.code).toBe(0);
      const out = json(r.stdout) as { workflowId: string; runId: string };
      expect(out).toMatchObject({ scheduleId, overlap: 'SKIP', skipped: false });
      expect(out.workflowId.startsWith(`${scheduleId}-`)).toBe(true);
      const described = await client.workflow.getHandle(out.workflowId).describe();
      expect(described.runId).toBe(out.runId);
      expect(described.type).toBe('trainPipeline');
    } finally {
      await client.schedule.getHandle(scheduleId).delete().catch(() => undefined);
    }
  });
});

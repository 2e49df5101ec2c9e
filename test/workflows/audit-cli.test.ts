import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { HistoryFile } from '../../audit/history.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { trainPipeline, type TrainPipelineOutput } from '../../workflows/pipeline.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { connections, freshDatabase, testStore } from '../support/services.js';
import { lastJson, runCli } from '../support/cli.js';

// `propensity history export` and `propensity replay`, spawned as a user runs them, against a real pipeline run
// on the dev stack (Temporal dev server, Postgres, s3rver).
let db: Db;
let dbUrl: string;
let store: ArtifactStore;
let closeStore: () => void;
let client: Client;
let tmp: string;
let startedAt: Date;
let out: TrainPipelineOutput;
let workflowId: string;

const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  ({ db, url: dbUrl } = await freshDatabase('audit_cli'));
  ({ store, close: closeStore } = await testStore());
  tmp = mkdtempSync(path.join(tmpdir(), 'audit-cli-'));
  const shop = await seedShop(db.pool, { users: 2000, days: 40, seed: 13, horizonDays: 14 });
  const { address, namespace } = connections().temporal;
  client = new Client({ connection: await Connection.connect({ address }), namespace });
  const nativeConnection = await NativeConnection.connect({ address });
  const queues = { cpu: `audit-cpu-${randomUUID()}`, train: `audit-train-${randomUUID()}` };
  const activities = createActivities({ db, store, codeVersion: 'test' });
  const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  const cpu = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities, interceptors: activityInterceptors({ db }) });
  const train = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.train, activities, interceptors: activityInterceptors({ db }), maxConcurrentActivityTaskExecutions: 1 });
  startedAt = new Date(Date.now() - 1000);
  workflowId = `train-audit-${randomUUID()}`;
  const config = {
    modelName: 'audit',
    source: { kind: 'events', cutoff: shop.timeline.cutoff.toISOString(), horizonDays: 14 },
    search: { trials: 3, parallelism: 2, epochs: 2, patience: 2, halving: { eta: 3, minEpochs: 1 } },
    training: { finalEpochs: 3, backend: 'wasm' },
    gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false } },
    evaluation: { bootstrapSamples: 20, importanceRepeats: 1 },
  };
  try {
    out = await cpu.runUntil(
      train.runUntil(client.workflow.execute(trainPipeline, { taskQueue: queues.cpu, workflowId, args: [{ config, taskQueues: queues, trigger: 'test' }] })),
    );
  } finally {
    await nativeConnection.close();
  }
});

afterAll(async () => {
  await client?.connection.close();
  closeStore?.();
  await db?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Runs `propensity <args>` in a child process against this test's services. */
const cli = (args: string[], cwd = tmp) => runCli(args, { databaseUrl: dbUrl, cwd });
const pipelineFile = () => path.join(tmp, 'pipeline.json');

describe('propensity history export / replay', () => {
  it('exports a finished pipeline run to a file and to S3 (histories/<workflowId>/<runId>.json)', async () => {
    expect(out.status).toBe('registered');
    const r = await cli(['history', 'export', workflowId, '--out', pipelineFile(), '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const printed = lastJson(r.stdout);
    const key = `histories/${workflowId}/${out.runId}.json`;
    expect(printed).toMatchObject({ workflowId, runId: out.runId, workflowType: 'trainPipeline', status: 'COMPLETED', uri: `s3://${store.bucket}/${key}`, file: pipelineFile() });
    const file = JSON.parse(readFileSync(pipelineFile(), 'utf8')) as HistoryFile;
    expect(file).toMatchObject({ workflowId, runId: out.runId, workflowType: 'trainPipeline' });
    expect(file.codeVersion).toMatch(/\S/);
    expect(file.history.events).toHaveLength(printed.events);
    expect(file.history.events[0].eventType).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_STARTED');
    expect(file.history.events.at(-1)!.eventType).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED');
    // the S3 copy holds the same bytes as the file
    expect(new TextDecoder().decode(await store.getKey(key))).toBe(readFileSync(pipelineFile(), 'utf8'));
  });

  it('exports the child search by default to ./histories/<id with / replaced>-<runId>.json and prints the URI and path', async () => {
    const r = await cli(['history', 'export', `${workflowId}/search`]);
    expect(r.code).toBe(0);
    const handle = await client.workflow.getHandle(`${workflowId}/search`).describe();
    const file = path.join(tmp, 'histories', `${workflowId}_search-${handle.runId}.json`);
    expect(existsSync(file)).toBe(true);
    expect(r.stdout).toContain(`s3://${store.bucket}/histories/${workflowId}/search/${handle.runId}.json`);
    expect(r.stdout).toContain(file);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ workflowId: `${workflowId}/search`, workflowType: 'hyperparameterSearch' });
  });

  it('replays a workflow id from the server, an exported file and a directory of them: all PASS, exit 0', async () => {
    const r = await cli(['replay', workflowId, pipelineFile(), path.join(tmp, 'histories')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toEqual([
      `PASS trainPipeline ${workflowId} (run ${out.runId}, server)`,
      `PASS trainPipeline ${workflowId} (run ${out.runId}, ${pipelineFile()})`,
      expect.stringMatching(new RegExp(`^PASS hyperparameterSearch ${workflowId}/search \\(run [0-9a-f-]+, .*histories/${workflowId}_search-`)),
      expect.stringMatching(/^3 passed, 0 failed \(workflow code .+\)$/),
    ]);
  });

  it('replays every run started since a date (--all-since), with --json', async () => {
    // visibility is eventually consistent: wait until both runs are listed
    const query = `WorkflowId STARTS_WITH '${workflowId}'`;
    for (let i = 0; i < 50; i++) {
      let n = 0;
      for await (const _ of client.workflow.list({ query })) n++;
      if (n >= 2) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    const r = await cli(['replay', '--all-since', startedAt.toISOString(), '--json']);
    expect(r.code).toBe(0);
    const result = lastJson(r.stdout);
    expect(result.failed).toBe(0);
    const ours = (result.results as { workflowId: string; workflowType: string; source: string; ok: boolean }[]).filter((x) => x.workflowId.startsWith(workflowId));
    expect(ours).toEqual([
      { workflowId, runId: out.runId, workflowType: 'trainPipeline', source: 'server', ok: true },
      expect.objectContaining({ workflowId: `${workflowId}/search`, workflowType: 'hyperparameterSearch', source: 'server', ok: true }),
    ]);
  });

  it('reports a history the code does not reproduce as FAIL with the determinism error, exit 1', async () => {
    // the same run, but its history says the first activity was a different one: the code cannot have produced it
    const file = JSON.parse(readFileSync(pipelineFile(), 'utf8')) as HistoryFile;
    const scheduled = file.history.events.find((e) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED')!;
    (scheduled.activityTaskScheduledEventAttributes as { activityType: { name: string } }).activityType.name = 'somethingElse';
    const tampered = path.join(tmp, 'tampered.json');
    writeFileSync(tampered, JSON.stringify(file));
    const r = await cli(['replay', tampered, pipelineFile()]);
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^FAIL trainPipeline ${workflowId} \\(run ${out.runId}, ${tampered}\\): DeterminismViolation: .*somethingElse`));
    expect(lines[1]).toMatch(/^PASS trainPipeline/);
    expect(lines[2]).toMatch(/^1 passed, 1 failed/);
  });

  it('a bare Temporal history needs --workflow-id, and replays with it', async () => {
    const bare = path.join(tmp, 'bare.json');
    writeFileSync(bare, JSON.stringify((JSON.parse(readFileSync(pipelineFile(), 'utf8')) as HistoryFile).history));
    const without = await cli(['replay', bare]);
    expect(without.code).toBe(2);
    expect(without.stderr.trim()).toBe(
      `propensity: MissingWorkflowId: ${bare} is a bare Temporal history, which does not record its workflow id: pass --workflow-id <id> (replay needs it, child workflow ids derive from it)`,
    );
    const withId = await cli(['replay', bare, '--workflow-id', workflowId]);
    expect(withId.code).toBe(0);
    expect(withId.stdout).toMatch(new RegExp(`^PASS trainPipeline ${workflowId} `));
  });

  it('a JSON file that is not a history gets one clear message and exit 2, and nothing is replayed', async () => {
    const notHistory = path.join(tmp, 'config.json');
    writeFileSync(notHistory, JSON.stringify({ modelName: 'audit', search: { trials: 3 } }));
    const r = await cli(['replay', pipelineFile(), notHistory]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toEqual([
      `propensity: NotAHistory: ${notHistory} is not a Temporal history: expected {"events": [...]} as \`temporal workflow show --output json\` writes, or {workflowId, history} as \`propensity history export\` writes; found an object with keys modelName, search`,
    ]);
  });

  it('an unknown workflow id exits 4, for replay and for export', async () => {
    const missing = `train-audit-missing-${randomUUID()}`;
    const replay = await cli(['replay', missing]);
    expect(replay.code).toBe(4);
    expect(replay.stderr.trim()).toBe(`propensity: UnknownWorkflow: workflow ${missing} not found on the Temporal server in namespace default`);
    const exported = await cli(['history', 'export', missing, '--out', path.join(tmp, 'missing.json')]);
    expect(exported.code).toBe(4);
    expect(existsSync(path.join(tmp, 'missing.json'))).toBe(false);
  });
});

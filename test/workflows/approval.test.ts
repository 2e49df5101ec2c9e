import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, WorkflowUpdateFailedError, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import type { ModelSummary, ModelDetails } from '../../registry/registry.js';
import { keys, type ArtifactStore } from '../../store/artifacts.js';
import { approvalQuery, approveUpdate, trainPipeline } from '../../workflows/pipeline.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { connections, freshDatabase, testStore } from '../support/services.js';
import { lastJson, runCli } from '../support/cli.js';

// Human approval end to end: real Temporal dev server, Postgres and s3rver, in-process workers on this file's own
// task queues, and the real CLI (`node bin/propensity.mjs …`) as a separate process sending the decisions.
let db: Db;
let dbUrl: string;
let store: ArtifactStore;
let closeStore: () => void;
let bundle: WorkflowBundleWithSourceMap;
let nativeConnection: NativeConnection;
let client: Client;
let cutoff: string;
let emptyDataDir: string;

const MODEL = 'appr';
const queues = { cpu: `appr-cpu-${randomUUID()}`, train: `appr-train-${randomUUID()}` };
const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  ({ db, url: dbUrl } = await freshDatabase('approval_e2e'));
  ({ store, close: closeStore } = await testStore());
  const shop = await seedShop(db.pool, { users: 2000, days: 40, seed: 11, horizonDays: 14 });
  cutoff = shop.timeline.cutoff.toISOString();
  bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  const c = connections();
  nativeConnection = await NativeConnection.connect({ address: c.temporal.address });
  client = new Client({ connection: await Connection.connect({ address: c.temporal.address }), namespace: c.temporal.namespace });
  // an empty data dir: the CLI must find everything through these variables, not a stack.json
  emptyDataDir = mkdtempSync(path.join(os.tmpdir(), 'appr-cli-'));

});

afterAll(async () => {
  await client?.connection.close();
  await nativeConnection?.close();
  closeStore?.();
  await db?.close();
  if (emptyDataDir) rmSync(emptyDataDir, { recursive: true, force: true });
});

async function withWorkers<T>(fn: () => Promise<T>): Promise<T> {
  const activities = createActivities({ db, store, codeVersion: 'test' });
  const { namespace } = connections().temporal;
  const cpu = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities, interceptors: activityInterceptors({ db }) });
  const train = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.train, activities, interceptors: activityInterceptors({ db }), maxConcurrentActivityTaskExecutions: 1 });
  return cpu.runUntil(train.runUntil(fn()));
}

const config = (approval?: Record<string, unknown>) => ({
  modelName: MODEL,
  source: { kind: 'events', cutoff, horizonDays: 14 },
  search: { trials: 3, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 2 } },
  training: { finalEpochs: 5, backend: 'wasm' },
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.6 }], versusBaseline: { enabled: false } },
  evaluation: { bootstrapSamples: 0, importanceRepeats: 0 },
  ...(approval && { approval }),
});

const start = (cfg: unknown) =>
  client.workflow.start(trainPipeline, { taskQueue: queues.cpu, workflowId: `train-appr-${randomUUID()}`, args: [{ config: cfg, taskQueues: queues, trigger: 'test' }] });

/** Runs the real CLI in its own process; an empty data dir: it must find everything through the variables. */
const cli = (args: string[]) =>
  runCli(args, { databaseUrl: dbUrl, env: { PROPENSITY_DATA_DIR: emptyDataDir, PROPENSITY_CODE_VERSION: 'test' } });

const runRow = (runId: string) => db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', runId).executeTakeFirst();
const versionRow = (version: number) =>
  db.db.selectFrom('ml.model_versions').selectAll().where('model_name', '=', MODEL).where('version', '=', version).executeTakeFirstOrThrow();
const champion = async () =>
  (await db.db.selectFrom('ml.model_aliases').select('version').where('model_name', '=', MODEL).where('alias', '=', 'champion').executeTakeFirst())?.version ?? null;
const historyCount = async () => Number((await db.db.selectFrom('ml.model_alias_history').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n);

async function untilAwaiting(handle: WorkflowHandleWithFirstExecutionRunId): Promise<void> {
  const deadline = Date.now() + 240_000;
  while (Date.now() < deadline) {
    if ((await runRow(handle.firstExecutionRunId))?.status === 'awaiting_approval') return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`run ${handle.workflowId} never reached awaiting_approval`);
}

describe('human approval and registry commands end to end', () => {
  let rejectedWorkflowId: string;

  it('waits for approval without moving champion; `propensity approve` promotes it and records who decided', async () => {
    await withWorkers(async () => {
      const handle = await start(config({ required: true }));
      await untilAwaiting(handle);
      const pending = await versionRow(1);
      expect(pending.status).toBe('pending_approval');
      expect(await champion()).toBeNull(); // registered, but not champion until someone approves
      const state = await handle.query(approvalQuery);
      expect(state).toMatchObject({ status: 'awaiting', modelName: MODEL, version: 1 });
      expect(new Date(state.deadline!).getTime() - new Date(state.requestedAt!).getTime()).toBe(72 * 3_600_000);

      const r = await cli(['approve', handle.workflowId, '--by', 'alice', '--reason', 'checked the card', '--json']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(lastJson(r.stdout)).toMatchObject({ status: 'approved', by: 'alice', version: 1, champion: { fromVersion: null, toVersion: 1 } });

      const out = await handle.result();
      expect(out.status).toBe('registered');
      expect(out.modelVersion).toBe(1);
      expect(out.rejection).toBeNull();
      expect(out.approval).toMatchObject({ status: 'approved', by: 'alice', reason: 'checked the card' });
      const run = await runRow(out.runId);
      expect(run).toMatchObject({ status: 'registered', model_version: 1, error_type: null });
    });
    expect(await champion()).toBe(1);
    expect(await versionRow(1)).toMatchObject({ status: 'approved', decided_by: 'alice', decision_reason: 'checked the card' });
    const approval = await db.db.selectFrom('ml.approvals').selectAll().where('model_name', '=', MODEL).execute();
    expect(approval).toEqual([expect.objectContaining({ version: 1, decision: 'approved', decided_by: 'alice', reason: 'checked the card' })]);
    const moves = await db.db.selectFrom('ml.model_alias_history').selectAll().where('model_name', '=', MODEL).execute();
    expect(moves).toEqual([expect.objectContaining({ alias: 'champion', from_version: null, to_version: 1, changed_by: 'alice' })]);
    const step = await db.db.selectFrom('ml.run_steps').selectAll().where('step', '=', 'approval').executeTakeFirstOrThrow();
    expect(step.status).toBe('succeeded');
  }, 300_000);

  it('`propensity reject` rejects the version for good: the run ends ApprovalRejected and promoting it exits 5', async () => {
    await withWorkers(async () => {
      const handle = await start(config({ required: true }));
      rejectedWorkflowId = handle.workflowId;
      // the workflow's validator refuses a decision before the run waits for one, and nothing is recorded
      const early = await handle.executeUpdate(approveUpdate, { args: [{ by: 'eve' }] }).catch((e) => e);
      expect(early).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((early as WorkflowUpdateFailedError).cause?.message).toMatch(/is not awaiting approval: it has not reached the approval step yet \(stage \w+\)/);
      await untilAwaiting(handle);
      const r = await cli(['reject', handle.firstExecutionRunId, '--by', 'bob', '--reason', 'segment AUC dropped']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^rejected ${MODEL} v2 \\(run \\S+\\) by bob: segment AUC dropped`));
      const out = await handle.result();
      expect(out.status).toBe('rejected');
      expect(out.rejection).toEqual({ type: 'ApprovalRejected', message: `${MODEL} v2 rejected by bob: segment AUC dropped` });
      expect(await runRow(out.runId)).toMatchObject({ status: 'rejected', error_type: 'ApprovalRejected', model_version: 2 });
    });
    expect(await versionRow(2)).toMatchObject({ status: 'rejected', decided_by: 'bob' });
    expect(await champion()).toBe(1);

    const before = await historyCount();
    const p = await cli(['promote', MODEL, '2', '--by', 'mallory']);
    expect(p.code).toBe(5);
    expect(p.stderr.trim()).toBe(`propensity: VersionNotPromotable: model "${MODEL}" v2 cannot be promoted: it was rejected by bob at ${(await versionRow(2)).decided_at!.toISOString()} (segment AUC dropped)`);
    expect(await champion()).toBe(1);
    expect(await historyCount()).toBe(before);
  }, 300_000);

  it('approve or reject of a run that is not waiting exits 5 naming its status; an unknown run exits 4', async () => {
    const before = await historyCount();
    const a = await cli(['approve', rejectedWorkflowId, '--by', 'alice']);
    expect(a.code).toBe(5);
    expect(a.stderr).toMatch(new RegExp(`^propensity: NotAwaitingApproval: run \\S+ \\(workflow ${rejectedWorkflowId}\\) is not awaiting approval: its status is rejected\\n$`));
    const unknown = await cli(['reject', 'no-such-run']);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toMatch(/UnknownRun: no pipeline run has run id or workflow id "no-such-run"/);
    expect(await historyCount()).toBe(before);
    expect((await versionRow(2)).status).toBe('rejected');
  }, 120_000);

  it('rejects the version when nobody decides before approval.timeoutHours (ApprovalTimeout)', async () => {
    const out = await withWorkers(async () => (await start(config({ required: true, timeoutHours: 0.0005 }))).result());
    expect(out.status).toBe('rejected');
    expect(out.rejection?.type).toBe('ApprovalTimeout');
    expect(out.approval).toMatchObject({ status: 'timeout', version: 3 });
    expect(await versionRow(3)).toMatchObject({ status: 'rejected', decided_by: `pipeline:${out.workflowId}`, decision_reason: 'no decision within 0.0005 h' });
    expect(await runRow(out.runId)).toMatchObject({ status: 'rejected', error_type: 'ApprovalTimeout' });
    const approval = await db.db.selectFrom('ml.approvals').selectAll().where('run_id', '=', out.runId).executeTakeFirstOrThrow();
    expect(approval.decision).toBe('timeout');
    expect(await champion()).toBe(1);
  }, 300_000);

  it('promote and rollback through the CLI; the alias history shows each move; models list/show print the registry', async () => {
    // without approval.required the run registers and moves champion itself, as before
    const out = await withWorkers(async () => (await start(config())).result());
    expect(out).toMatchObject({ status: 'registered', modelVersion: 4, approval: null, rejection: null });
    expect(await champion()).toBe(4);

    const p = await cli(['promote', MODEL, 'v1', '--by', 'carol', '--reason', 'v4 regressed in the shop']);
    expect(p).toMatchObject({ code: 0, stderr: '' });
    const [moved, scores] = p.stdout.trim().split('\n');
    expect(moved).toBe(`${MODEL}@champion: v4 → v1`);
    // it says whether the version now served has scores (this test scores none)
    expect(scores).toBe(`v1 has no scores yet, so ml.latest_scores is empty for ${MODEL}: run \`propensity score --model ${MODEL}@champion\` (or pass --score)`);
    const c = await cli(['promote', MODEL, '4', '--alias', 'challenger', '--by', 'carol', '--json']);
    expect(lastJson(c.stdout)).toEqual({ modelName: MODEL, alias: 'challenger', fromVersion: null, toVersion: 4, changed: true, action: 'move', scores: null, scoring: null });
    const rb = await cli(['rollback', MODEL, '--by', 'dave', '--reason', 'false alarm']);
    expect(rb.code).toBe(0);
    expect(rb.stdout.trim().split("\n")[0]).toBe(`${MODEL}@champion: v1 → v4 (rollback)`);
    expect(rb.stdout).toMatch(/v4 has no scores yet/);
    expect(await champion()).toBe(4);

    const show = await cli(['models', 'show', MODEL, '--json']);
    expect(show.code).toBe(0);
    const d = lastJson<ModelDetails>(show.stdout);
    expect(d).toMatchObject({ modelName: MODEL, version: 4, resolvedVia: 'champion', status: 'approved', aliases: ['challenger', 'champion'] });
    expect(d.lineage).toMatchObject({ workflowId: out.workflowId, runId: out.runId, configHash: out.configHash, dataSha256: out.dataSha256, codeVersion: 'test', backend: 'wasm', seed: 1234 });
    const moves = [...d.aliasHistory].reverse().map((h) => `${h.alias} ${h.fromVersion ?? '-'}→${h.toVersion} ${h.action} ${h.changedBy}${h.reason ? ` (${h.reason})` : ''}`);
    expect(moves).toEqual([
      `champion -→1 move alice (approved run ${(await versionRow(1)).run_id}: checked the card)`,
      `champion 1→4 move pipeline:${out.workflowId} (blessed by run ${out.runId})`,
      'champion 4→1 move carol (v4 regressed in the shop)',
      'challenger -→4 move carol (promoted by hand)',
      'champion 1→4 rollback dave (false alarm)',
    ]);

    const human = await cli(['models', 'show', `${MODEL}:1`]);
    expect(human.stdout).toContain(`${MODEL} v1 — approved`);
    expect(human.stdout).toMatch(/decision {5}approved by alice at \S+: checked the card/);
    expect(human.stdout).toContain(`data sha256  ${(await versionRow(1)).data_sha256}`);
    expect(human.stdout).toContain(`model card   s3://${store.bucket}/models/${MODEL}/v1/model-card.html`);

    const list = await cli(['models', 'list', '--json']);
    expect(lastJson<ModelSummary[]>(list.stdout)).toEqual([
      expect.objectContaining({ modelName: MODEL, versions: 4, latestVersion: 4, pendingApproval: 0, rejected: 2, aliases: { challenger: 4, champion: 4 } }),
    ]);

    // --card downloads the HTML model card when registration wrote one, and says so when it did not
    const file = path.join(emptyDataDir, 'card.html');
    const card = await cli(['models', 'show', `${MODEL}:4`, '--card', file]);
    if (await store.exists(keys.modelFile(MODEL, 4, 'model-card.html'))) {
      expect(card.code).toBe(0);
      expect(card.stdout).toContain(`model card written to ${file}`);
      expect(readFileSync(file, 'utf8')).toMatch(/<html/i);
    } else {
      expect(card.code).toBe(4);
      expect(card.stdout).toContain(`no model card exists for ${MODEL} v4`);
    }

    // an unknown version is refused, and nothing moves
    const before = await historyCount();
    const missing = await cli(['promote', MODEL, '9']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/UnknownVersion: model "appr" has no version 9 \(versions: 1, 2, 3, 4\)/);
    expect(await historyCount()).toBe(before);
    expect(await champion()).toBe(4);
  }, 400_000);
});

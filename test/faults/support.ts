import { createHash, randomUUID } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { Client, Connection, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { spawnWorkers, waitForPollers, type WorkerProcess } from '../../cli/workers.js';
import type { Db } from '../../db/client.js';
import { createS3Client, type ServiceName } from '../../infra/index.js';
import { startStackService, stopStackService } from '../../infra/stack.js';
import { progressQuery, trainPipeline, type PipelineProgress, type TrainPipelineOutput } from '../../workflows/pipeline.js';
import { connections } from '../support/services.js';
import { workerServiceEnv } from '../support/worker-env.js';
import { faultEnv } from './env.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const since = (t0: number) => (Date.now() - t0) / 1000;

/** The slack every faulted run gets on top of the undisturbed time and the outage (issue 11). */
export const SLACK_SECONDS = 120;

let client: Client | undefined;
export async function temporalClient(): Promise<Client> {
  if (client) return client;
  const { address, namespace } = connections().temporal;
  client = new Client({ connection: await Connection.connect({ address }), namespace });
  return client;
}
export async function closeTemporalClient() {
  await client?.connection.close();
  client = undefined;
}

/** Stops one service of the fault stack, keeps it down `seconds` (from the moment it is gone), starts it again. */
export async function outage(service: Exclude<ServiceName, 'temporal'>, seconds: number, log: (l: string) => void): Promise<{ downAt: number; upAt: number }> {
  const env = faultEnv();
  await stopStackService(service, { env, log: (l) => log(`[stack] ${l}`) });
  const downAt = Date.now();
  try {
    await sleep(seconds * 1000);
  } finally {
    await startStackService(service, { env, log: (l) => log(`[stack] ${l}`) });
  }
  return { downAt, upAt: Date.now() };
}

/** Brings every fault-stack service up again (a no-op for those running): a failed case never leaves one down. */
export async function ensureStackUp(log: (l: string) => void = () => {}) {
  for (const s of ['postgres', 's3'] as const) await startStackService(s, { env: faultEnv(), log });
}

export interface PendingActivity {
  type: string;
  state: 'scheduled' | 'started' | 'cancel_requested' | 'unknown';
  attempt: number;
  /** `<pid>@<host>` of the worker that last took it (the SDK's default identity) */
  worker: string | null;
  heartbeatEpoch: number | null;
  lastFailure: string | null;
}

/** A workflow's pending activities as the server sees them: no worker needed to answer. */
export async function pendingActivities(workflowId: string): Promise<PendingActivity[] | null> {
  const c = await temporalClient();
  const res = await c.workflowService
    .describeWorkflowExecution({ namespace: c.options.namespace, execution: { workflowId } })
    .catch(() => null);
  if (!res) return null;
  return (res.pendingActivities ?? []).map((a) => {
    const payload = a.heartbeatDetails?.payloads?.[0];
    let epoch: number | null = null;
    if (payload) {
      try {
        const d = defaultPayloadConverter.fromPayload<{ epoch?: number }>(payload as Payload);
        if (typeof d?.epoch === 'number') epoch = d.epoch;
      } catch {
        // not a training heartbeat
      }
    }
    const state = a.state === 1 ? 'scheduled' : a.state === 2 ? 'started' : a.state === 3 ? 'cancel_requested' : 'unknown';
    return {
      type: a.activityType?.name ?? '?',
      state,
      attempt: a.attempt ?? 1,
      worker: a.lastWorkerIdentity || null,
      heartbeatEpoch: epoch,
      lastFailure: a.lastFailure?.message ?? null,
    };
  });
}

/** The workflow's status name (RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED, …), or null when unknown. */
export async function workflowStatus(workflowId: string): Promise<string | null> {
  const c = await temporalClient();
  return c.workflow
    .getHandle(workflowId)
    .describe()
    .then((d) => d.status.name)
    .catch(() => null);
}

export interface Worker {
  label: string;
  proc: WorkerProcess;
  /** killed or stopped on purpose: its exit is no failure */
  expected: boolean;
  exit: { code: number | null; signal: string | null; atSecond: number } | null;
}

/**
 * One fault case: its own task queues, its worker processes, its workflow, and the bookkeeping to tell a worker
 * that died on its own from one killed on purpose. Every wait fails fast when a worker dies unexpectedly.
 */
export class FaultCase {
  readonly queues: { cpu: string; train: string };
  readonly workers: Worker[] = [];
  readonly workflowId: string;
  readonly dir: string;
  readonly t0 = Date.now();
  readonly notes: string[] = [];
  private spawns = 0;

  constructor(
    readonly name: string,
    readonly databaseUrl: string,
  ) {
    const id = randomUUID().slice(0, 8);
    this.queues = { cpu: `faults-${name}-cpu-${id}`, train: `faults-${name}-train-${id}` };
    this.workflowId = `faults-${name}-${id}`;
    this.dir = path.join(faultEnv().PROPENSITY_DATA_DIR, 'cases', `${name}-${id}`);
    mkdirSync(this.dir, { recursive: true });
  }

  log(line: string) {
    const text = `[${this.name} +${since(this.t0).toFixed(1)}s] ${line}`;
    this.notes.push(text);
    console.log(text);
    appendFileSync(path.join(this.dir, 'case.log'), `${text}\n`);
  }

  /** Worker processes (node + tsx, as `propensity workers` runs them) pointed at the fault stack and this case's queues. */
  spawn(counts: { cpu: number; train: number }): Worker[] {
    const env = faultEnv();
    const label = `spawn${++this.spawns}`;
    const extraEnv: Record<string, string> = {
      PROPENSITY_DATA_DIR: env.PROPENSITY_DATA_DIR,
      PROPENSITY_TEMPORAL_PORT: String(env.PROPENSITY_TEMPORAL_PORT),
      PROPENSITY_TEMPORAL_UI_PORT: String(env.PROPENSITY_TEMPORAL_UI_PORT),
      PROPENSITY_PG_PORT: String(env.PROPENSITY_PG_PORT),
      PROPENSITY_S3_PORT: String(env.PROPENSITY_S3_PORT),
      // this suite's database (source queries as the stack's least-privilege role on it), Temporal and S3
      ...workerServiceEnv(this.databaseUrl),
      PROPENSITY_TRAIN_QUEUE: this.queues.train,
      PROPENSITY_CPU_QUEUE: this.queues.cpu,
      PROPENSITY_BACKEND: 'wasm',
      PROPENSITY_TRAIN_SLOTS: '1',
      PROPENSITY_CODE_VERSION: 'faults',
    };
    // logs: <case dir>/spawnN/logs/worker-<kind>-<i>.log
    const procs = spawnWorkers({ ...env, PROPENSITY_DATA_DIR: path.join(this.dir, label) }, counts, extraEnv);
    const out = procs.map((proc, i) => {
      const w: Worker = { label: `${proc.kind}-${label}-${i + 1} (pid ${proc.child.pid})`, proc, expected: false, exit: null };
      proc.child.once('exit', (code, signal) => {
        w.exit = { code, signal, atSecond: since(this.t0) };
        this.log(`worker ${w.label} exited (code ${code}, signal ${signal})${w.expected ? '' : ' UNEXPECTEDLY'}`);
      });
      return w;
    });
    this.workers.push(...out);
    return out;
  }

  /** Waits until the given workers poll their queues. */
  async ready(workers: Worker[] = this.workers) {
    const c = await temporalClient();
    const cpu = workers.filter((w) => w.proc.kind === 'cpu').length;
    const train = workers.filter((w) => w.proc.kind === 'train').length;
    const queues = [
      ...(cpu ? [{ name: this.queues.cpu, min: cpu, kind: 'workflow' as const }, { name: this.queues.cpu, min: cpu, kind: 'activity' as const }] : []),
      ...(train ? [{ name: this.queues.train, min: train, kind: 'activity' as const }] : []),
    ];
    await waitForPollers(c, queues, workers.map((w) => w.proc), 180_000);
  }

  unexpectedDeaths(): Worker[] {
    return this.workers.filter((w) => w.exit && !w.expected);
  }

  alive(kind?: 'cpu' | 'train'): Worker[] {
    return this.workers.filter((w) => !w.exit && (!kind || w.proc.kind === kind));
  }

  private checkDeaths() {
    const dead = this.unexpectedDeaths();
    if (dead.length) throw new Error(`worker(s) died unexpectedly: ${dead.map((w) => `${w.label} (code ${w.exit!.code}, signal ${w.exit!.signal})\n${tail(w.proc.logFile)}`).join('\n')}`);
  }

  /** Kills a worker on purpose (SIGKILL or SIGTERM) and waits for it to exit (SIGKILL after `graceMs`). */
  async kill(w: Worker, signal: 'SIGKILL' | 'SIGTERM', graceMs = 60_000): Promise<number> {
    w.expected = true;
    const t = Date.now();
    if (w.exit) return 0;
    const exited = new Promise<void>((r) => w.proc.child.once('exit', () => r()));
    w.proc.child.kill(signal);
    const timer = setTimeout(() => {
      this.log(`worker ${w.label} still running ${graceMs / 1000}s after ${signal}: SIGKILL`);
      w.proc.child.kill('SIGKILL');
    }, graceMs);
    await exited;
    clearTimeout(timer);
    return (Date.now() - t) / 1000;
  }

  start(config: unknown): Promise<WorkflowHandle<typeof trainPipeline>> {
    return temporalClient().then((c) =>
      c.workflow.start(trainPipeline, { taskQueue: this.queues.cpu, workflowId: this.workflowId, args: [{ config, taskQueues: this.queues, trigger: 'faults' }] }),
    );
  }

  async progress(): Promise<PipelineProgress | null> {
    const c = await temporalClient();
    return c.workflow
      .getHandle(this.workflowId)
      .query(progressQuery)
      .catch(() => null);
  }

  /** Polls `probe` until it returns a value; fails on timeout, an unexpected worker death, or the run closing first. */
  async waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 180_000, everyMs = 150): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.checkDeaths();
      const value = await probe();
      if (value) return value;
      const status = await workflowStatus(this.workflowId);
      if (status && status !== 'RUNNING') throw new Error(`the run closed (${status}) before ${what}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
      await sleep(everyMs);
    }
  }

  /**
   * The run's outcome by `deadlineSeconds` after its start: its result, its failure, or a timeout, whichever comes
   * first; an unexpected worker death ends the wait at once (that alone fails the case).
   */
  async outcome(handle: WorkflowHandle<typeof trainPipeline>, startedAt: number, deadlineSeconds: number): Promise<Outcome> {
    let settled: Outcome | null = null;
    handle.result().then(
      (out) => (settled = { kind: 'completed', out, seconds: since(startedAt) }),
      (err) => (settled = { kind: 'failed', error: describeError(err), seconds: since(startedAt) }),
    );
    const deadline = startedAt + deadlineSeconds * 1000;
    while (!settled) {
      if (this.unexpectedDeaths().length) {
        await sleep(500); // a worker's last log lines
        return { kind: 'worker-died', error: this.unexpectedDeaths().map((w) => w.label).join(', '), seconds: since(startedAt) };
      }
      if (Date.now() > deadline) {
        const stage = (await this.progress())?.stage ?? 'unknown (no worker answers the progress query)';
        const pending = await pendingActivities(this.workflowId);
        const child = await pendingActivities(`${this.workflowId}/search`);
        const fmt = (p: PendingActivity[] | null) => (p ?? []).map((a) => `${a.type} ${a.state} attempt ${a.attempt}${a.lastFailure ? ` (last failure: ${a.lastFailure})` : ''}`).join('; ') || 'none';
        return { kind: 'timeout', error: `still running after ${deadlineSeconds.toFixed(0)} s at stage ${stage}; pending: ${fmt(pending)}; search child pending: ${fmt(child)}`, seconds: since(startedAt) };
      }
      await sleep(250);
    }
    return settled;
  }

  /** Terminates the run if it still runs, stops every worker, and brings Postgres and S3 back if a failure left them down. */
  async cleanup() {
    const c = await temporalClient();
    for (const id of [this.workflowId, `${this.workflowId}/search`]) {
      if ((await workflowStatus(id)) === 'RUNNING') await c.workflow.getHandle(id).terminate('fault case over').catch(() => undefined);
    }
    await ensureStackUp();
    for (const w of this.workers) w.expected = true;
    await Promise.all(this.alive().map((w) => this.kill(w, 'SIGTERM', 10_000)));
  }
}

export type Outcome =
  | { kind: 'completed'; out: TrainPipelineOutput; seconds: number }
  | { kind: 'failed' | 'timeout' | 'worker-died'; error: string; seconds: number };

function describeError(err: unknown): string {
  if (err instanceof WorkflowFailedError) {
    const cause = err.cause as { type?: string; message?: string; cause?: { type?: string; message?: string } } | undefined;
    const inner = cause?.cause ?? cause;
    return `${err.cause?.name ?? 'failure'}${inner?.type ? ` ${inner.type}` : ''}: ${inner?.message ?? err.message}`;
  }
  return (err as Error)?.message ?? String(err);
}

export function tail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return `(no log at ${file})`;
  }
}

/** sha256 of the registered model's weights (models/<name>/v<N>/weights.bin beside the model.json the uri names). */
export async function modelSha256(uri: string | null): Promise<string | null> {
  if (!uri) return null;
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!m) return null;
  const key = m[2].replace(/[^/]+$/, 'weights.bin');
  const s3 = createS3Client(connections().s3);
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: m[1], Key: key }));
    return createHash('sha256').update(await res.Body!.transformToByteArray()).digest('hex');
  } catch {
    return null;
  } finally {
    s3.destroy();
  }
}

/** The run's row in ml.pipeline_runs. */
export async function runRow(db: Db, workflowId: string) {
  return db.db.selectFrom('ml.pipeline_runs').selectAll().where('workflow_id', '=', workflowId).orderBy('started_at', 'desc').executeTakeFirst();
}

/** Cases that printed their line (a case that fails before its outcome prints one from runCase instead). */
export const reported = new Set<string>();

/** One line per case, quotable: `fault <name>: <status> testAuc <x> in <s> s (undisturbed <s> s)`. */
export function reportLine(name: string, status: string, testAuc: number | null | undefined, seconds: number, undisturbed: number | null, extra = ''): string {
  const line =
    `fault ${name}: ${status} testAuc ${typeof testAuc === 'number' ? testAuc.toFixed(12) : '-'} in ${seconds.toFixed(1)} s` +
    ` (undisturbed ${undisturbed === null ? '-' : undisturbed.toFixed(1)} s)${extra ? ` ${extra}` : ''}`;
  reported.add(name);
  console.log(line);
  appendFileSync(path.join(faultEnv().PROPENSITY_DATA_DIR, 'summary.txt'), `${new Date().toISOString()} ${line}\n`);
  return line;
}

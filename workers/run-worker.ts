import { execFileSync } from 'node:child_process';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { loadEnv, type Env } from '../infra/env.js';
import { initBackend } from '../ml/backend.js';
import { DEFAULT_POOL, TASK_QUEUES, trainQueueFor } from '../workflows/constants.js';
import { openServices, WORKFLOWS_PATH } from './deps.js';
import { activityInterceptors } from './interceptors.js';

export type WorkerKind = 'cpu' | 'train';

export interface RunWorkerOptions {
  kind: WorkerKind;
  /** Overrides for tests: a unique task queue per test, a pre-built workflow bundle. */
  taskQueues?: { cpu: string; train: string };
  workflowBundle?: WorkerOptions['workflowBundle'];
  slots?: number;
  /** the training pool a train worker serves (default PROPENSITY_TRAIN_POOL, else cpu) */
  pool?: string;
  /** recorded with each trial as the host that trained it (default PROPENSITY_WORKER_HOST, else the hostname) */
  host?: string;
  log?: (line: string) => void;
}

/**
 * Runs one worker until SIGINT/SIGTERM (Temporal's runtime handles the signals and drains in-flight tasks).
 * The cpu worker hosts the workflows and the data activities; the train worker hosts the training activities.
 */
export async function runWorker(opts: RunWorkerOptions): Promise<void> {
  const log = opts.log ?? ((line) => console.log(line));
  guardProcess(log);
  const env = loadEnv();
  const services = await openServices(env);
  // A train worker declares its pool (PROPENSITY_TRAIN_POOL, default cpu) and polls that pool's queue:
  // propensity-train for cpu, propensity-train-<pool> otherwise (workflows/constants.ts trainQueueFor).
  const pool = opts.pool ?? (process.env.PROPENSITY_TRAIN_POOL || DEFAULT_POOL);
  // PROPENSITY_CPU_QUEUE / PROPENSITY_TRAIN_QUEUE let a deployment (or a test) run an isolated pair of queues.
  const queues = opts.taskQueues ?? {
    cpu: process.env.PROPENSITY_CPU_QUEUE || TASK_QUEUES.cpu,
    train: trainQueueFor(pool, process.env.PROPENSITY_TRAIN_QUEUE || TASK_QUEUES.train),
  };
  // auto: the native TensorFlow backend when `propensity setup tensorflow` (or npm) installed it, else wasm
  const backendPref = (process.env.PROPENSITY_BACKEND ?? 'auto') as 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  const backend = opts.kind === 'train' ? await initBackend(backendPref) : undefined;
  const host = opts.host ?? (process.env.PROPENSITY_WORKER_HOST || undefined);
  const activities = createActivities({ db: services.db, store: services.store, codeVersion: services.codeVersion, backend: backend?.name, pool, host });
  const { address, tls, apiKey, namespace } = services.connections.temporal;
  // the cpu worker runs the workflows, which set the pipeline's search attributes: refuse to poll a namespace that
  // lacks them (every run's workflow tasks would fail), naming the commands that create them
  if (opts.kind === 'cpu') {
    const { Connection } = await import('@temporalio/client');
    const check = await Connection.connect({ address, tls, apiKey });
    try {
      const { requireSearchAttributes } = await import('../infra/search-attributes.js');
      if ((await requireSearchAttributes(check, namespace)) === 'unchecked') {
        log(`worker cpu: could not list the search attributes of namespace ${namespace} (no permission?); runs fail their workflow tasks if PropensityModel, PropensityOutcome, PropensityTestAuc or PropensityTrigger are missing`);
      }
    } finally {
      await check.close();
    }
  }
  const connection = await NativeConnection.connect({ address, tls, apiKey });
  const taskQueue = opts.kind === 'cpu' ? queues.cpu : queues.train;
  // tfjs on wasm is single-threaded per process: parallel trials come from more train processes, not more slots;
  // a GPU worker runs one trial per device it has (PROPENSITY_TRAIN_SLOTS overrides both).
  const slots = opts.slots ?? (opts.kind === 'train' ? (env.PROPENSITY_TRAIN_SLOTS ?? (backend?.device === 'gpu' ? gpuCount() : 1)) : 8);
  const worker = await Worker.create({
    connection,
    namespace,
    taskQueue,
    activities,
    maxConcurrentActivityTaskExecutions: slots,
    interceptors: activityInterceptors({ db: services.db }),
    // On SIGTERM in-flight activities get this long to finish before they are cancelled; training then stops at
    // its next batch and fails retryably (its last epoch checkpoint is in S3), never reporting itself finished.
    shutdownGraceTime: `${env.PROPENSITY_SHUTDOWN_GRACE_SECONDS} seconds`,
    ...heartbeatThrottle(env),
    ...(opts.kind === 'cpu'
      ? opts.workflowBundle
        ? { workflowBundle: opts.workflowBundle }
        : { workflowsPath: WORKFLOWS_PATH }
      : {}),
  });
  log(`worker ${opts.kind}${opts.kind === 'train' ? ` (pool ${pool}, ${slots} slot${slots === 1 ? '' : 's'}${host ? `, host ${host}` : ''})` : ''} polling ${taskQueue}${backend ? ` (backend ${backend.name} on ${backend.device}: ${backend.detail})` : ''}, pid ${process.pid}`);
  try {
    await worker.run();
  } finally {
    await connection.close();
    await services.close();
    log(`worker ${opts.kind} stopped`);
  }
}

/**
 * How long the worker may hold back an activity's heartbeats (pipeline/retry.ts, `HEARTBEAT.throttleSeconds`): a
 * cancelled activity hears of it at its next heartbeat sent, so this bounds how long a cancelled trial trains on.
 */
export function heartbeatThrottle(env: Pick<Env, 'PROPENSITY_HEARTBEAT_THROTTLE_SECONDS'>): Pick<WorkerOptions, 'maxHeartbeatThrottleInterval' | 'defaultHeartbeatThrottleInterval'> {
  const ms = Math.round(env.PROPENSITY_HEARTBEAT_THROTTLE_SECONDS * 1000);
  return { maxHeartbeatThrottleInterval: ms, defaultHeartbeatThrottleInterval: ms };
}

/** GPUs this machine has (nvidia-smi -L), at least 1. */
function gpuCount(): number {
  try {
    return Math.max(1, execFileSync('nvidia-smi', ['-L'], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).toString().split('\n').filter((l) => l.startsWith('GPU ')).length);
  } catch {
    return 1;
  }
}

/**
 * A worker must outlive its dependencies: a stray error event or rejection (a socket closed under a stream, a
 * late callback) is logged, never allowed to kill the process and strand its tasks. Errors that matter reach
 * the activity that owns the resource and are retried or typed there.
 */
function guardProcess(log: (line: string) => void) {
  if ((process as { __propensityGuard?: boolean }).__propensityGuard) return;
  (process as { __propensityGuard?: boolean }).__propensityGuard = true;
  process.on('unhandledRejection', (reason) => log(`worker: unhandled rejection (kept running): ${String((reason as Error)?.stack ?? reason)}`));
  process.on('uncaughtException', (err) => log(`worker: uncaught exception (kept running): ${err.stack ?? err}`));
}

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { DEFAULT_POOL, TASK_QUEUES, trainQueueFor } from '../workflows/constants.js';
import { buildState, nodeArgsFor } from './build.js';
import type { Connections } from './connections.js';
import { type Env, findRepoRoot } from './env.js';
import { ConfigError } from './errors.js';
import { isLive, queuePollers, type TaskQueueKind } from './pollers.js';
import { isAlive, isOurProcess, readPidFile, seconds, sleep, spawnDetached, statusLine as line, stopProcess, tail } from './processes.js';
import { DEFAULT_POLICY, type ProcessState, type RestartPolicy, type SupervisedProcess, type SupervisorSpec, type SupervisorState } from './supervisor.js';

// The dev stack's workers: one cpu worker (workflows and data activities) and N train workers, kept running by a
// supervisor process (infra/supervisor.ts) that `dev up` starts detached, like the services, with pid files and logs
// under the data dir. With an external Temporal (TEMPORAL_ADDRESS) the workers are the operator's and none start.
//
// No worker binds a port (they only connect out to Temporal, Postgres and S3), so two stacks' workers never clash;
// what tells them apart is the data dir on their command line.

export interface StackWorkersOptions {
  /** train worker processes; default PROPENSITY_DEV_TRAIN_WORKERS (2) */
  train?: number;
  /** cpu worker processes (default 1) */
  cpu?: number;
  /** the task queues they poll; default PROPENSITY_CPU_QUEUE / PROPENSITY_TRAIN_QUEUE, else the standard pair */
  queues?: { cpu: string; train: string };
  /** the training pool the train workers serve (PROPENSITY_TRAIN_POOL, else the default pool): its queue is trainQueueFor(pool) */
  pool?: string;
  /** more environment for the workers (e.g. a test's database) */
  extraEnv?: Record<string, string>;
  policy?: Partial<RestartPolicy>;
  /** how long to wait for every worker to poll its queue (default 180 s: the cpu worker bundles the workflows) */
  readyTimeoutMs?: number;
}

export interface WorkerStatus {
  name: string;
  kind: string;
  queue: string;
  /** the supervisor's view: running, backoff (restarting after an exit), failed (given up), stopped */
  state: ProcessState;
  /** the process is there */
  alive: boolean;
  pid: number | null;
  restarts: number;
  /** when its current process started */
  startedAt: string | null;
  /** polls its task queue now (Temporal's DescribeTaskQueue); null when Temporal could not be asked */
  polling: boolean | null;
  logFile: string;
  message: string | null;
}

export interface WorkersStatus {
  /** running: supervisor and every worker up; degraded: some worker restarting or given up on; stale: supervisor gone */
  state: 'running' | 'degraded' | 'stopped' | 'external' | 'stale';
  supervisorPid: number | null;
  /** what the workers run: compiled dist/ or the TypeScript sources (with why) */
  build: SupervisorState['build'];
  workers: WorkerStatus[];
  message: string | null;
}

type Log = (line: string) => void;

const files = (env: Env) => {
  const dir = env.PROPENSITY_DATA_DIR;
  return {
    spec: path.join(dir, 'workers.spec.json'),
    state: path.join(dir, 'workers.json'),
    supervisorPid: path.join(dir, 'pids', 'workers.pid'),
    supervisorLog: path.join(dir, 'logs', 'workers.log'),
    pids: path.join(dir, 'pids'),
    logs: path.join(dir, 'logs'),
  };
};
/** On each worker's command line (ignored by it), so a recycled pid is never taken for one of this stack's workers. */
const workerMarker = (env: Env) => `--propensity-data-dir=${env.PROPENSITY_DATA_DIR}\0`;
const supervisorMarker = (env: Env) => `${files(env).spec}\0`;
const rel = (file: string) => {
  const r = path.relative(process.cwd(), file);
  return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : file;
};

/** The task queues the stack's workers poll (as `propensity worker` reads them). */
export function workerQueues(): { cpu: string; train: string } {
  return { cpu: process.env.PROPENSITY_CPU_QUEUE || TASK_QUEUES.cpu, train: process.env.PROPENSITY_TRAIN_QUEUE || TASK_QUEUES.train };
}

function readState(env: Env): SupervisorState | null {
  try {
    return JSON.parse(readFileSync(files(env).state, 'utf8')) as SupervisorState;
  } catch {
    return null;
  }
}

/**
 * Starts (or reuses) the supervised workers and waits until each polls its task queue. A supervisor already running
 * with the same workers is reused; one with other workers, or with a worker it gave up on, is replaced. Stale pid
 * files (the process gone, or the pid now another program's) are removed and reported; orphaned workers (their
 * supervisor gone) are stopped first.
 */
export async function upWorkers(env: Env, connections: Connections, opts: StackWorkersOptions, log: Log): Promise<WorkersStatus> {
  if (env.TEMPORAL_ADDRESS) {
    log(line('workers', 'external', `TEMPORAL_ADDRESS is set, so the workers are yours to run: \`npx propensity worker --kind cpu\` and \`--kind train\``));
    return { state: 'external', supervisorPid: null, build: null, workers: [], message: 'TEMPORAL_ADDRESS is set: workers are the operator\'s' };
  }
  const f = files(env);
  await fs.mkdir(f.pids, { recursive: true });
  await fs.mkdir(f.logs, { recursive: true });
  const counts = { cpu: opts.cpu ?? 1, train: opts.train ?? env.PROPENSITY_DEV_TRAIN_WORKERS };
  const base = opts.queues ?? workerQueues();
  const pool = opts.pool ?? (process.env.PROPENSITY_TRAIN_POOL || DEFAULT_POOL);
  // what each kind polls: a train worker serves its pool's queue (workers/run-worker.ts derives it the same way)
  const queues = { cpu: base.cpu, train: trainQueueFor(pool, base.train) };
  const root = findRepoRoot();
  const build = buildState();

  const running = readPidFile(f.supervisorPid);
  if (running !== undefined && isOurProcess(running, supervisorMarker(env))) {
    const current = readState(env);
    const why = reuseRefusal(current, counts, queues, build.entry);
    if (!why) {
      const status = await waitPolling(env, connections, running, opts.readyTimeoutMs ?? 180_000);
      log(line('workers', 'running', `${describeSet(counts, queues)} (supervisor pid ${running}, reused)`));
      for (const w of status.workers) log(line(w.name, 'polling', `${w.queue} (pid ${w.pid}${w.restarts ? `, ${w.restarts} restarts` : ''})`));
      return status;
    }
    log(line('workers', 'restart', `${why}: stopping supervisor pid ${running}`));
    await stopSupervisor(env, running, current?.policy.stopGraceMs ?? DEFAULT_POLICY.stopGraceMs);
  } else if (running !== undefined) {
    await fs.rm(f.supervisorPid, { force: true });
    log(line('workers', 'stale', `pid file ${rel(f.supervisorPid)} removed (pid ${running} ${isAlive(running) ? 'now runs another program' : 'is not running'})`));
  }
  await clearWorkerPids(env, log);

  const policy = { ...DEFAULT_POLICY, ...opts.policy };
  const processes: SupervisedProcess[] = (['cpu', 'train'] as const).flatMap((kind) =>
    Array.from({ length: counts[kind] }, (_, i) => {
      const name = `${kind}-${i + 1}`;
      return {
        name,
        kind,
        queue: queues[kind],
        command: process.execPath,
        args: [...nodeArgsFor(`workers/${kind}.ts`, build), workerMarker(env).slice(0, -1)],
        logFile: path.join(f.logs, `worker-${name}.log`),
        pidFile: path.join(f.pids, `worker-${name}.pid`),
      };
    }),
  );
  const spec: SupervisorSpec = { stateFile: f.state, cwd: root, processes, policy, build: { entry: build.entry, reason: build.reason } };
  await fs.rm(f.state, { force: true });
  await fs.writeFile(f.spec, `${JSON.stringify(spec, null, 2)}\n`);
  const started = Date.now();
  const pid = await spawnDetached(process.execPath, [...nodeArgsFor('infra/supervisor-main.ts', build), f.spec], f.supervisorLog, {
    cwd: root,
    env: {
      ...process.env,
      PROPENSITY_DATA_DIR: env.PROPENSITY_DATA_DIR,
      PROPENSITY_CPU_QUEUE: base.cpu,
      PROPENSITY_TRAIN_QUEUE: base.train,
      PROPENSITY_TRAIN_POOL: pool,
      ...opts.extraEnv,
    },
  });
  await fs.writeFile(f.supervisorPid, `${pid}\n`);
  const how = build.entry === 'dist' ? 'compiled dist/' : `TypeScript sources through tsx: ${build.reason}`;
  log(line('workers', 'starting', `${describeSet(counts, queues)} (supervisor pid ${pid}, ${how}); logs ${rel(path.join(f.logs, 'worker-*.log'))}`));
  try {
    const status = await waitPolling(env, connections, pid, opts.readyTimeoutMs ?? 180_000);
    log(line('workers', 'running', `all ${status.workers.length} polling after ${seconds(started)}`));
    for (const w of status.workers) log(line(w.name, 'polling', `${w.queue} (pid ${w.pid})`));
    return status;
  } catch (err) {
    // a failed `up` leaves nothing behind that it started itself
    await stopSupervisor(env, pid, policy.stopGraceMs);
    throw err;
  }
}

function describeSet(counts: { cpu: number; train: number }, queues: { cpu: string; train: string }): string {
  return `${counts.cpu} cpu on ${queues.cpu} + ${counts.train} train on ${queues.train}`;
}

/** Why a running supervisor cannot be kept as it is, or null when it can. */
function reuseRefusal(state: SupervisorState | null, counts: { cpu: number; train: number }, queues: { cpu: string; train: string }, entry: string): string | null {
  if (!state) return 'its state file is missing';
  const of = (kind: string) => state.processes.filter((p) => p.kind === kind);
  const have = { cpu: of('cpu').length, train: of('train').length };
  if (have.cpu !== counts.cpu || have.train !== counts.train) return `${have.cpu} cpu + ${have.train} train run, ${counts.cpu} cpu + ${counts.train} train asked for`;
  const other = state.processes.find((p) => p.queue !== queues[p.kind as 'cpu' | 'train']);
  if (other) return `${other.name} polls ${other.queue}, not ${queues[other.kind as 'cpu' | 'train']}`;
  const failed = state.processes.find((p) => p.state === 'failed');
  if (failed) return `${failed.name} was given up on (${failed.message})`;
  if (state.build && state.build.entry !== entry) return `they run ${state.build.entry === 'dist' ? 'dist/' : 'the sources'}, now ${entry === 'dist' ? 'dist/ is fresh' : 'the sources changed'}`;
  return null;
}

/**
 * Waits until every supervised worker polls its task queue (its pid among the queue's pollers). Fails early, with
 * the end of its log, when the supervisor gives a worker up or dies.
 */
async function waitPolling(env: Env, connections: Connections, supervisorPid: number, timeoutMs: number): Promise<WorkersStatus> {
  const deadline = Date.now() + timeoutMs;
  const connection = await Connection.connect({ address: connections.temporal.address, tls: connections.temporal.tls, apiKey: connections.temporal.apiKey });
  try {
    for (;;) {
      if (!isOurProcess(supervisorPid, supervisorMarker(env))) {
        throw new ConfigError('WORKERS_FAILED', `the worker supervisor (pid ${supervisorPid}) exited; see ${files(env).supervisorLog}:\n${await tail(files(env).supervisorLog)}`);
      }
      const status = await collect(env, connection, connections.temporal.namespace, supervisorPid);
      const failed = status.workers.find((w) => w.state === 'failed');
      if (failed) {
        throw new ConfigError('WORKERS_FAILED', `worker ${failed.name} does not start: ${failed.message}\n--- last lines of ${failed.logFile} ---\n${await tail(failed.logFile)}`);
      }
      if (status.workers.length && status.workers.every((w) => w.polling)) return status;
      if (Date.now() > deadline) {
        const late = status.workers.filter((w) => !w.polling);
        throw new ConfigError(
          'WORKERS_NOT_READY',
          `${late.map((w) => w.name).join(', ')} did not poll ${late[0]?.queue ?? 'their task queues'} within ${timeoutMs / 1000}s; see ${late.map((w) => w.logFile).join(', ')}`,
        );
      }
      await sleep(500);
    }
  } finally {
    await connection.close();
  }
}

/** The supervisor's state joined with what runs and what polls. */
async function collect(env: Env, connection: Connection | null, namespace: string, supervisorPid: number | null): Promise<WorkersStatus> {
  const state = readState(env);
  const processes = state?.processes ?? [];
  const pollers = new Map<string, Set<number> | null>();
  if (connection) {
    for (const p of processes) {
      const kind: TaskQueueKind = p.kind === 'cpu' ? 'workflow' : 'activity';
      const key = `${p.queue}\0${kind}`;
      if (pollers.has(key)) continue;
      const found = await queuePollers(connection, namespace, p.queue, kind).catch(() => null);
      pollers.set(key, found && new Set(found.filter((x) => isLive(x)).map((x) => Number(x.identity.split('@')[0]))));
    }
  }
  const workers = processes.map((p): WorkerStatus => {
    const alive = p.pid !== null && isOurProcess(p.pid, workerMarker(env));
    const seen = pollers.get(`${p.queue}\0${p.kind === 'cpu' ? 'workflow' : 'activity'}`);
    return {
      name: p.name, kind: p.kind, queue: p.queue, state: p.state, alive, pid: p.pid, restarts: p.restarts, startedAt: p.startedAt,
      polling: seen === undefined || seen === null ? null : alive && seen.has(p.pid!),
      logFile: p.logFile, message: p.message,
    };
  });
  const supervisorAlive = supervisorPid !== null && isOurProcess(supervisorPid, supervisorMarker(env));
  const healthy = workers.every((w) => w.alive && w.state === 'running' && w.polling !== false);
  return {
    state: !supervisorAlive ? 'stale' : healthy ? 'running' : 'degraded',
    supervisorPid,
    build: state?.build ?? null,
    workers,
    message: null,
  };
}

/** What the stack's workers do now, without starting or stopping anything. */
export async function workersStatus(env: Env, connections: Connections | null, log: Log): Promise<WorkersStatus> {
  const f = files(env);
  const pid = readPidFile(f.supervisorPid) ?? null;
  if (pid === null) {
    if (env.TEMPORAL_ADDRESS) {
      log(line('workers', 'external', 'TEMPORAL_ADDRESS is set: workers are the operator\'s'));
      return { state: 'external', supervisorPid: null, build: null, workers: [], message: 'TEMPORAL_ADDRESS is set: workers are the operator\'s' };
    }
    log(line('workers', 'stopped', '`npx propensity dev up` starts them'));
    return { state: 'stopped', supervisorPid: null, build: null, workers: [], message: null };
  }
  let connection: Connection | null = null;
  if (connections) connection = await Connection.connect({ address: connections.temporal.address, tls: connections.temporal.tls, apiKey: connections.temporal.apiKey, connectTimeout: 2_000 }).catch(() => null);
  try {
    const status = await collect(env, connection, connections?.temporal.namespace ?? 'default', pid);
    if (status.state === 'stale') {
      status.message = `the supervisor (pid ${pid}) is not running${status.workers.some((w) => w.alive) ? '; some workers still run without it' : ''}: \`npx propensity dev up\` starts it again`;
      log(line('workers', 'stale', status.message));
    } else {
      const how = status.build?.entry === 'source' ? 'TypeScript sources through tsx' : 'compiled dist/';
      log(line('workers', status.state, `supervisor pid ${pid}, ${how}${connection ? '' : '; Temporal unreachable, polling unknown'}`));
    }
    for (const w of status.workers) {
      const age = w.startedAt ? Date.now() - Date.parse(w.startedAt) : Infinity;
      // a worker connects and (cpu) bundles the workflows before its first poll
      const polling = w.polling === null ? 'polling unknown' : w.polling ? 'polling' : w.alive && age < 180_000 ? `not polling yet (started ${Math.round(age / 1000)}s ago)` : 'NOT polling';
      const state = w.state === 'running' ? (w.alive ? 'running' : 'gone') : w.state;
      const detail = `${w.kind} worker on ${w.queue}, ${w.pid ? `pid ${w.pid}, ` : ''}${polling}, ${w.restarts} restart${w.restarts === 1 ? '' : 's'}`;
      log(line(w.name, state, `${detail}${w.message ? `: ${w.message}` : ''}`));
    }
    return status;
  } finally {
    await connection?.close();
  }
}

/** Stops the supervisor (it stops its workers: SIGTERM, then SIGKILL after its grace) and any worker left behind. */
export async function downWorkers(env: Env, log: Log): Promise<void> {
  const f = files(env);
  const pid = readPidFile(f.supervisorPid);
  if (pid === undefined) {
    if (!existsSync(f.pids) || !readdirSync(f.pids).some((n) => /^worker-.*\.pid$/.test(n))) {
      log(line('workers', env.TEMPORAL_ADDRESS ? 'external' : 'stopped', env.TEMPORAL_ADDRESS ? 'TEMPORAL_ADDRESS set, left alone' : 'not started by propensity'));
      return;
    }
  } else if (isOurProcess(pid, supervisorMarker(env))) {
    const started = Date.now();
    const grace = readState(env)?.policy.stopGraceMs ?? DEFAULT_POLICY.stopGraceMs;
    const how = await stopSupervisor(env, pid, grace);
    log(line('workers', 'stopped', `supervisor pid ${pid} and its workers, ${how} in ${seconds(started)}`));
  } else {
    await fs.rm(f.supervisorPid, { force: true });
    log(line('workers', 'stopped', `stale pid file ${rel(f.supervisorPid)} removed (pid ${pid} ${isAlive(pid) ? 'now runs another program' : 'is not running'})`));
  }
  await clearWorkerPids(env, log);
  await fs.rm(f.state, { force: true });
  await fs.rm(f.spec, { force: true });
}

async function stopSupervisor(env: Env, pid: number, graceMs: number): Promise<string> {
  // the supervisor's own grace for its workers, plus time to write its state and exit
  const how = await stopProcess(pid, 'SIGTERM', supervisorMarker(env), graceMs + 5_000);
  await fs.rm(files(env).supervisorPid, { force: true });
  return how;
}

/**
 * Worker pid files with no supervisor behind them: a live worker of this stack (orphaned when its supervisor was
 * killed) is stopped, a pid file whose process is gone or is now another program is removed; both are reported.
 */
async function clearWorkerPids(env: Env, log: Log): Promise<void> {
  const dir = files(env).pids;
  const names = existsSync(dir) ? readdirSync(dir).filter((n) => /^worker-.*\.pid$/.test(n)) : [];
  for (const name of names) {
    const file = path.join(dir, name);
    const pid = readPidFile(file);
    const worker = name.replace(/^worker-|\.pid$/g, '');
    if (pid !== undefined && isOurProcess(pid, workerMarker(env))) {
      const how = await stopProcess(pid, 'SIGTERM', workerMarker(env), DEFAULT_POLICY.stopGraceMs);
      log(line(worker, 'stopped', `pid ${pid} had no supervisor (orphaned), ${how}`));
    } else {
      log(line(worker, 'stale', `pid file ${rel(file)} removed (${pid === undefined ? 'no pid in it' : `pid ${pid} ${isAlive(pid) ? 'now runs another program' : 'is not running'}`})`));
    }
    await fs.rm(file, { force: true });
  }
}

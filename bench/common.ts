/** Shared pieces of the benchmark suites: services on a database of their own, the synthetic shop, timing, output. */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeleteObjectsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { Kysely } from 'kysely';
import pg from 'pg';
import type { Db } from '../db/client.js';
import { migrateToLatest } from '../db/migrate.js';
import { SHOP_ANCHOR } from '../db/synthetic/generator.js';
import {
  findRepoRoot,
  loadEnv,
  resolveConnections,
  stackUp,
  type Connections,
  type Env,
} from '../infra/index.js';
import type { ArtifactStore } from '../store/artifacts.js';
import { typedCause } from '../cli/failure.js';
import { openServices } from '../workers/deps.js';

/** The benchmarks never touch the demo's shop: they seed and read this database on the same server. */
export const BENCH_DATABASE = 'propensity_bench';
export const PSQL = '/usr/bin/psql';
export const ROOT = findRepoRoot();

export type Log = (line: string) => void;

/**
 * What a failed suite prints: a failed run's typed cause (type and message, as `propensity run` prints it) instead
 * of "Workflow execution failed", and for a source table that does not exist, where the suites look for it.
 */
export function failureLines(err: unknown): string[] {
  const cause = typedCause(err);
  const lines = [`bench: ${cause ? `${cause.type}: ${cause.message}` : err instanceof Error ? err.message : String(err)}`];
  if (cause?.type === 'SourceSchema') {
    lines.push(
      `bench: the suites read database ${BENCH_DATABASE}, not the main one: a --config table must be there ` +
        '(README, "Benchmarks", shows how to copy one over)',
    );
  }
  return lines;
}

export interface BenchServices {
  env: Env;
  connections: Connections;
  /** the bench database's name, and its URL (holds the password: never print it unredacted) */
  database: string;
  databaseUrl: string;
  db: Db;
  s3: S3Client;
  store: ArtifactStore;
  codeVersion: string;
  close(): Promise<void>;
}

/**
 * Starts (or reuses) the dev stack unless the environment names external Postgres and S3, then opens the
 * bench database (created through the configured database if missing, then migrated) and the S3 store.
 */
export async function openBench({
  log,
  startStack = true,
  database = BENCH_DATABASE,
}: {
  log: Log;
  startStack?: boolean;
  database?: string;
}): Promise<BenchServices> {
  const env = loadEnv();
  const external = !!env.DATABASE_URL && (!!env.S3_ENDPOINT || (!!env.AWS_ACCESS_KEY_ID && !!env.AWS_SECRET_ACCESS_KEY));
  if (startStack && !external) await stackUp({ env, log: (l) => log(`  ${l}`) });
  const databaseUrl = await ensureDatabase(resolveConnections(env).databaseUrl, database);
  const services = await openServices(env, { databaseUrl });
  try {
    const applied = await migrateToLatest(services.db.db as unknown as Kysely<any>);
    if (applied.length) log(`  migrated ${database}: ${applied.map((m) => m.migrationName).join(', ')}`);
  } catch (err) {
    await services.close();
    throw err;
  }
  return { ...services, database, databaseUrl };
}

/**
 * The database variables of a worker the bench spawns: the bench database, and the source role on that same
 * database (a worker given DATABASE_URL alone refuses source queries: README, "Source-query security").
 */
export function benchWorkerDatabaseEnv(bench: Pick<BenchServices, 'connections' | 'databaseUrl'>): Record<string, string> {
  const env: Record<string, string> = { DATABASE_URL: bench.databaseUrl };
  if (bench.connections.sourceDatabaseUrl) {
    const url = new URL(bench.connections.sourceDatabaseUrl);
    url.pathname = new URL(bench.databaseUrl).pathname;
    env.DATABASE_URL_SOURCE = url.toString();
  }
  return env;
}

/** Creates `name` on the server of `adminUrl` when missing; returns its URL. */
async function ensureDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl, application_name: 'propensity-bench' });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('select 1 from pg_database where datname = $1', [name]);
    // 42P04: a concurrent bench created it in the meantime.
    if (!rowCount) await admin.query(`create database ${name}`).catch((e) => { if (e.code !== '42P04') throw e; });
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface ShopShape {
  users: number;
  days: number;
  seed: number;
  horizonDays: number;
  /** the day the shop ends (default SHOP_ANCHOR, the CLI's --end) */
  end?: Date;
}
export interface BenchShop extends ShopShape {
  events: number;
  cutoff: Date;
  seededNow: boolean;
}

/**
 * Reuses the bench database's shop when it has this shape and seed, else seeds it in a child process, so that
 * the generator's memory never counts towards the peak RSS a suite reports.
 */
export async function ensureShop(bench: BenchServices, shape: ShopShape, { reseed = false, log }: { reseed?: boolean; log: Log }): Promise<BenchShop> {
  const endDay = shape.end ? shape.end.toISOString().slice(0, 10) : SHOP_ANCHOR;
  const read = () => bench.db.db.selectFrom('bench.shops').selectAll().executeTakeFirst();
  const existing = await read();
  const matches = (s: typeof existing) =>
    !!s && s.seed === shape.seed && s.users === shape.users && s.days === shape.days && s.horizon_days === shape.horizonDays &&
    new Date(s.end_at).toISOString().slice(0, 10) === endDay;
  if (!reseed && matches(existing)) {
    log(`  reusing the shop seeded at ${new Date(existing!.created_at).toISOString()} (${Number(existing!.events).toLocaleString('en')} events)`);
    return { ...shape, events: Number(existing!.events), cutoff: new Date(existing!.cutoff_at), seededNow: false };
  }
  const t0 = performance.now();
  const args = ['seed-shop', '--database', bench.database, '--users', shape.users, '--days', shape.days, '--seed', shape.seed, '--horizon-days', shape.horizonDays, '--end', endDay].map(String);
  await runChild(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'main.ts'), ...args], log);
  const seeded = await read();
  if (!matches(seeded)) throw new Error(`seeding ${bench.database} did not leave a shop of ${JSON.stringify(shape)} in bench.shops`);
  log(`  seeded in ${seconds(t0).toFixed(1)} s`);
  return { ...shape, events: Number(seeded!.events), cutoff: new Date(seeded!.cutoff_at), seededNow: true };
}

/** Runs a child to completion, passing its output lines to `log`; resolves to its stdout, throws with its stderr tail. */
export function runChild(cmd: string, args: string[], log?: Log, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const forward = (chunk: Buffer) => {
      for (const l of chunk.toString().split('\n')) if (l.trim()) log?.(`  ${l}`);
    };
    child.stdout.on('data', (chunk: Buffer) => {
      stdout = (stdout + chunk.toString()).slice(-4000);
      forward(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
      forward(chunk);
    });
    child.once('error', reject);
    child.once('close', (code, signal) =>
      code === 0 ? resolve(stdout) : reject(new Error(`${path.basename(cmd)} exited with ${signal ?? code}: ${stderr.trim().split('\n').slice(-5).join('\n')}`)),
    );
  });
}

/** Deletes every object under `prefix` (a benchmark run's own artifacts), so repeated benches do not fill the bucket. */
export async function deletePrefix(s3: S3Client, bucket: string, prefix: string): Promise<number> {
  let deleted = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    const objects = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
    if (objects.length) await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects, Quiet: true } }));
    deleted += objects.length;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return deleted;
}

/** Seconds since a `performance.now()` mark. */
export const seconds = (since: number) => (performance.now() - since) / 1000;

export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, seconds: seconds(t0) };
}

/** Peak resident set size of this process so far, in MB (maxRSS is in KiB). */
export const peakRssMb = () => round(process.resourceUsage().maxRSS / 1024, 1);

export const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

export function machine() {
  return { cpus: os.cpus().length, memGb: round(os.totalmem() / 2 ** 30, 1), node: process.version };
}

/** What every result line ends with: the code measured (commit, "-dirty" when uncommitted), when, and where. */
export function provenance(codeVersion: string) {
  return { gitCommit: codeVersion, date: new Date().toISOString(), machine: machine() };
}

/**
 * Makes a parameterised query runnable by psql on one line: $n become quoted literals (the query's own casts,
 * e.g. `$1::timestamptz`, still apply) and comments go, since `--` would swallow the rest of a one-line command.
 */
export function inlineSql(text: string, params: unknown[] = []): string {
  const literal = (v: unknown) => {
    if (v === null || v === undefined) return 'NULL';
    if (typeof v === 'number' || typeof v === 'bigint') return String(v);
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    const s = v instanceof Date ? v.toISOString() : String(v);
    return `'${s.replaceAll("'", "''")}'`;
  };
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) throw new Error('inlineSql: unterminated quote');
      out += text.slice(i, end + 1); // '' escapes read as two adjacent literals, which copy through unchanged
      i = end;
    } else if (c === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? text.length : end - 1;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw new Error('inlineSql: unterminated comment');
      out += ' ';
      i = end + 1;
    } else if (c === '$' && /\d/.test(text[i + 1] ?? '') && !/[\w$]/.test(text[i - 1] ?? '')) {
      const m = /^\$(\d+)/.exec(text.slice(i))!;
      const n = Number(m[1]);
      if (n < 1 || n > params.length) throw new Error(`inlineSql: $${n} has no parameter (${params.length} given)`);
      out += literal(params[n - 1]);
      i += m[0].length - 1;
    } else {
      out += c === '\n' || c === '\r' || c === '\t' ? ' ' : c;
    }
  }
  return out.replace(/ {2,}/g, ' ').trim();
}

/**
 * Times psql itself streaming the query's result to /dev/null with `\copy`: the floor for getting those rows out of
 * Postgres (wall time of the whole psql process, connection included). `rows` is what psql reports copying.
 */
export async function psqlCopy(databaseUrl: string, query: string): Promise<{ seconds: number; rows?: number }> {
  const command = `\\copy (${query}) to '/dev/null'`;
  if (/[\n\r]/.test(command)) throw new Error('psql \\copy needs the whole command on one line');
  // The password travels in the environment, not on a command line that `ps` shows.
  const url = new URL(databaseUrl);
  const password = decodeURIComponent(url.password);
  url.password = '';
  const env = { ...process.env, PGAPPNAME: 'propensity-bench-psql', ...(password && { PGPASSWORD: password }) };
  const t0 = performance.now();
  const out = await runChild(PSQL, ['-X', '-v', 'ON_ERROR_STOP=1', '-d', url.toString(), '-c', command], undefined, env);
  const secs = seconds(t0);
  const m = /COPY (\d+)/.exec(out);
  return { seconds: secs, rows: m ? Number(m[1]) : undefined };
}

/** Appends one result line to bench/results/<suite>.jsonl (one JSON object a line: easy to diff and commit). */
export function appendResult(suite: string, result: object): string {
  const dir = path.join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${suite}.jsonl`);
  appendFileSync(file, `${JSON.stringify(result)}\n`);
  return file;
}

/** Two-column table with a title row. */
export function table(title: string, rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  const v = Math.max(...rows.map(([, val]) => val.length));
  const rule = `${'─'.repeat(w + 2)}┼${'─'.repeat(v + 2)}`;
  return [title, rule, ...rows.map(([k, val]) => ` ${k.padEnd(w)} │ ${val.padStart(v)}`), rule].join('\n');
}

export const fmt = (x: number, digits = 2) => x.toFixed(digits);

/** 1-minute load average, rounded (recorded beside every measurement). */
export const load1 = () => round(os.loadavg()[0], 2);

/** Polls the 1-minute load average until it is below `max` or `minutes` have passed (other work shares the cores). */
export async function waitForQuiet(max: number, minutes: number, log: Log): Promise<{ load: number; quiet: boolean; waitedSeconds: number }> {
  const t0 = performance.now();
  const deadline = Date.now() + minutes * 60_000;
  let announced = false;
  for (;;) {
    const load = os.loadavg()[0];
    if (load < max) {
      if (announced) log(`  load ${fmt(load)} after ${fmt(seconds(t0), 0)} s`);
      return { load: round(load, 2), quiet: true, waitedSeconds: round(seconds(t0), 0) };
    }
    if (Date.now() >= deadline) {
      if (minutes > 0) log(`  load still ${fmt(load)} after ${minutes} min: running anyway (the result records it)`);
      return { load: round(load, 2), quiet: false, waitedSeconds: round(seconds(t0), 0) };
    }
    if (!announced) log(`▸ waiting up to ${minutes} min for the 1-minute load (${fmt(load)}) to fall below ${max}`);
    announced = true;
    await new Promise((r) => setTimeout(r, 15_000));
  }
}


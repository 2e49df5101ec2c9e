import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Client } from '@temporalio/client';
import { bindSource, createSourceDb, missingSource, type SourceDb } from '../db/source.js';
import { createDb, type Db } from '../db/client.js';
// the infra modules one by one, not infra/index.js: that would load the dev stack's code (and its SDKs) too
import { findRepoRoot, loadEnv, type Env } from '../infra/env.js';
import { resolveConnections, type Connections } from '../infra/connections.js';
import { createS3Client, ensureBucket } from '../infra/s3-client.js';
import { createArtifactStore, type ArtifactStore } from '../store/artifacts.js';

export interface Services {
  env: Env;
  connections: Connections;
  db: Db;
  /** source queries' pool: the least-privilege role (DATABASE_URL_SOURCE or the dev stack's), bound to `db` */
  source?: SourceDb;
  s3: S3Client;
  store: ArtifactStore;
  codeVersion: string;
  close(): Promise<void>;
}

/**
 * Opens Postgres and S3 from the environment (or the dev stack's stack.json), once per process; `databaseUrl`
 * points at another database on the same server (the benchmarks use their own).
 */
export async function openServices(env: Env = loadEnv(), opts: { databaseUrl?: string } = {}): Promise<Services> {
  const connections = resolveConnections(env);
  const db = createDb(opts.databaseUrl ?? connections.databaseUrl);
  const source = openSource(env, connections, opts.databaseUrl);
  bindSource(db, source);
  const s3 = createS3Client(connections.s3);
  await ensureBucket(s3, connections.s3.bucket);
  const store = createArtifactStore({ client: s3, bucket: connections.s3.bucket });
  return {
    env,
    connections,
    db,
    source,
    s3,
    store,
    codeVersion: codeVersion(),
    async close() {
      s3.destroy();
      await Promise.all([db.close(), source.close()]);
    },
  };
}

/**
 * The source pool (lazy: no connection until a source query runs). With `databaseUrl` (another database on the
 * same server) the source role reads that database instead.
 */
function openSource(env: Env, connections: Connections, databaseUrl?: string): SourceDb {
  if (!connections.sourceDatabaseUrl) {
    return missingSource(
      'DATABASE_URL is set but DATABASE_URL_SOURCE is not: source queries run only as a least-privilege read-only role ' +
        '(README, "Source-query security"); set DATABASE_URL_SOURCE to its connection URL',
    );
  }
  const url = new URL(connections.sourceDatabaseUrl);
  if (databaseUrl) url.pathname = new URL(databaseUrl).pathname;
  return createSourceDb(url.toString(), { statementTimeoutMs: env.PROPENSITY_SOURCE_STATEMENT_TIMEOUT_S * 1000 });
}

export async function connectTemporal(connections: Connections): Promise<Client> {
  // loaded here, not at the top: commands that only read Postgres do not pay for the Temporal SDK
  const { Client, Connection } = await import('@temporalio/client');
  const { address, tls, apiKey, namespace } = connections.temporal;
  const connection = await Connection.connect({ address, tls, apiKey });
  return new Client({ connection, namespace });
}

let cachedVersion: string | undefined;
/** Lineage: the git commit the code runs from (with "-dirty" for local edits to tracked code), else the package version. */
export function codeVersion(): string {
  if (cachedVersion) return cachedVersion;
  if (process.env.PROPENSITY_CODE_VERSION) return (cachedVersion = process.env.PROPENSITY_CODE_VERSION);
  const root = findRepoRoot();
  try {
    const sha = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    // bench/results/*.jsonl are measurements the benchmarks append, not code: they do not make the code dirty
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ':(exclude)bench/results'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    cachedVersion = dirty ? `${sha}-dirty` : sha;
  } catch {
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
    cachedVersion = `v${pkg.version}`;
  }
  return cachedVersion;
}

export const WORKFLOWS_PATH = path.join(findRepoRoot(), 'workflows', 'index.ts');

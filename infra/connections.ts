import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { TLSConfig } from '@temporalio/client';
import { z } from 'zod';
import type { Env } from './env.js';
import { ConfigError } from './errors.js';

export { ConfigError } from './errors.js';

export interface S3Connection {
  /** Undefined means AWS's own endpoint for the region. */
  endpoint?: string;
  bucket: string;
  region: string;
  forcePathStyle: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export interface Connections {
  /** `tls` and `apiKey` pass straight into `Connection.connect`. */
  temporal: { address: string; namespace: string; tls?: TLSConfig; apiKey?: string; uiUrl?: string };
  databaseUrl: string;
  /**
   * Where source queries (shop.*, table-mode SQL) connect: a least-privilege, read-only role, never a superuser.
   * DATABASE_URL_SOURCE, else the dev stack's; undefined when DATABASE_URL is set without DATABASE_URL_SOURCE.
   */
  sourceDatabaseUrl?: string;
  s3: S3Connection;
}

import { SOURCE_ROLE } from './roles.js';

export { SOURCE_ROLE };
/** The embedded dev stack's password for SOURCE_ROLE (a fixed one: that Postgres listens on 127.0.0.1 only). */
export const DEV_SOURCE_PASSWORD = 'propensity_source_dev';

/** The same database as `databaseUrl`, as the dev stack's source role: user and password swapped. */
export function devSourceUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  url.username = SOURCE_ROLE;
  url.password = DEV_SOURCE_PASSWORD;
  return url.toString();
}

const credentials = z.object({ accessKeyId: z.string(), secretAccessKey: z.string() });
/** What `stackUp` writes to `<dataDir>/stack.json`: only the services it runs itself. */
export const stackFileSchema = z.object({
  temporal: z.object({ address: z.string(), uiUrl: z.string() }).optional(),
  databaseUrl: z.string().optional(),
  sourceDatabaseUrl: z.string().optional(),
  s3: z.object({ endpoint: z.string(), region: z.string(), forcePathStyle: z.boolean(), credentials }).optional(),
});
export type StackFile = z.infer<typeof stackFileSchema>;

export const stackFilePath = (env: Env) => path.join(env.PROPENSITY_DATA_DIR, 'stack.json');

export function readStackFile(env: Env): StackFile {
  const file = stackFilePath(env);
  if (!existsSync(file)) return {};
  const parsed = stackFileSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) {
    throw new ConfigError('STACK_FILE_INVALID', `${file} is not a valid stack file (${parsed.error.issues[0]?.message}): run \`npx propensity dev up\` to rewrite it`);
  }
  return parsed.data;
}

const unknown = (what: string, variable: string) =>
  new ConfigError(`${variable}_UNKNOWN`, `${what} unknown: set ${variable} or run \`npx propensity dev up\``);

/** Where Temporal, Postgres and S3 are: each environment variable wins, then `<dataDir>/stack.json`, else a ConfigError. */
export function resolveConnections(env: Env): Connections {
  const stack = readStackFile(env);
  const sourceDatabaseUrl = resolveSourceDatabase(env, stack);
  return {
    temporal: resolveTemporal(env, stack),
    databaseUrl: resolveDatabase(env, stack),
    ...(sourceDatabaseUrl && { sourceDatabaseUrl }),
    s3: resolveS3(env, stack),
  };
}

function resolveTemporal(env: Env, stack: StackFile): Connections['temporal'] {
  const address = env.TEMPORAL_ADDRESS ?? stack.temporal?.address;
  if (!address) throw unknown('Temporal address', 'TEMPORAL_ADDRESS');
  const { TEMPORAL_TLS_CERT_PATH: certPath, TEMPORAL_TLS_KEY_PATH: keyPath } = env;
  if (!certPath !== !keyPath) {
    throw new ConfigError('TEMPORAL_TLS_INCOMPLETE', 'Set both TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH for mTLS, or neither');
  }
  const tls = certPath && keyPath ? { clientCertPair: { crt: readPem('TEMPORAL_TLS_CERT_PATH', certPath), key: readPem('TEMPORAL_TLS_KEY_PATH', keyPath) } } : undefined;
  return {
    address,
    namespace: env.TEMPORAL_NAMESPACE,
    ...(tls && { tls }),
    ...(env.TEMPORAL_API_KEY && { apiKey: env.TEMPORAL_API_KEY }),
    ...(!env.TEMPORAL_ADDRESS && stack.temporal && { uiUrl: stack.temporal.uiUrl }),
  };
}

function readPem(variable: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError('TEMPORAL_TLS_UNREADABLE', `${variable}=${file} cannot be read: ${(err as Error).message}`);
  }
}

function resolveDatabase(env: Env, stack: StackFile): string {
  const url = env.DATABASE_URL ?? stack.databaseUrl;
  if (!url) throw unknown('Postgres URL', 'DATABASE_URL');
  return url;
}

/**
 * DATABASE_URL_SOURCE wins; with DATABASE_URL set and no DATABASE_URL_SOURCE there is none (we never guess a
 * production role's password); otherwise the dev stack's source role on the dev stack's database.
 */
function resolveSourceDatabase(env: Env, stack: StackFile): string | undefined {
  if (env.DATABASE_URL_SOURCE) return env.DATABASE_URL_SOURCE;
  if (env.DATABASE_URL) return undefined;
  return stack.sourceDatabaseUrl;
}

function resolveS3(env: Env, stack: StackFile): S3Connection {
  const fromEnv =
    env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY }
      : undefined;
  const base = { bucket: env.S3_BUCKET, region: env.S3_REGION };
  if (env.S3_ENDPOINT) {
    return { ...base, endpoint: env.S3_ENDPOINT, forcePathStyle: env.S3_FORCE_PATH_STYLE ?? true, ...(fromEnv && { credentials: fromEnv }) };
  }
  if (stack.s3) {
    // The embedded s3rver's credentials only make sense for its endpoint, so they travel together.
    return { ...base, endpoint: stack.s3.endpoint, forcePathStyle: env.S3_FORCE_PATH_STYLE ?? stack.s3.forcePathStyle, credentials: fromEnv ?? stack.s3.credentials };
  }
  // Explicit AWS keys without an endpoint mean AWS S3 itself; otherwise we refuse to guess.
  if (fromEnv) return { ...base, forcePathStyle: env.S3_FORCE_PATH_STYLE ?? false, credentials: fromEnv };
  throw new ConfigError('S3_ENDPOINT_UNKNOWN', 'S3 endpoint unknown: set S3_ENDPOINT (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for AWS S3) or run `npx propensity dev up`');
}

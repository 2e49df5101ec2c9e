import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { HEARTBEAT } from '../pipeline/retry.js';
import { ConfigError } from './errors.js';

/** The folder holding package.json, found by walking up from this file. */
export function findRepoRoot(from = path.dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new ConfigError('REPO_ROOT_NOT_FOUND', `No package.json above ${from}`);
  }
}

const port = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);
const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => ['true', '1', 'yes'].includes(v));

const schema = z.object({
  TEMPORAL_ADDRESS: z.string().optional(),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_TLS_CERT_PATH: z.string().optional(),
  TEMPORAL_TLS_KEY_PATH: z.string().optional(),
  TEMPORAL_API_KEY: z.string().optional(),
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: 'expected a postgres:// URL' }).optional(),
  /** the least-privilege role source queries run as (README: Source-query security); the dev stack makes its own */
  DATABASE_URL_SOURCE: z.url({ protocol: /^postgres(ql)?$/, error: 'expected a postgres:// URL' }).optional(),
  /** source queries (shop.* and table-mode SQL) are cancelled after this many seconds */
  PROPENSITY_SOURCE_STATEMENT_TIMEOUT_S: z.coerce.number().int().min(1).max(7 * 86_400).default(600),
  S3_ENDPOINT: z.url().optional(),
  S3_BUCKET: z.string().default('propensity'),
  S3_REGION: z.string().default('us-east-1'),
  S3_FORCE_PATH_STYLE: bool.optional(),
  AWS_ACCESS_KEY_ID: z.string().optional(),
  AWS_SECRET_ACCESS_KEY: z.string().optional(),
  PROPENSITY_DATA_DIR: z.string().optional(),
  TEMPORAL_CLI_PATH: z.string().optional(),
  PROPENSITY_TEMPORAL_PORT: port(7233),
  PROPENSITY_TEMPORAL_UI_PORT: port(8233),
  PROPENSITY_PG_PORT: port(54329),
  PROPENSITY_S3_PORT: port(4569),
  /** train worker processes `dev up` (and the demo) supervise; `dev up --train-workers` wins */
  PROPENSITY_DEV_TRAIN_WORKERS: z.coerce.number().int().min(0).max(64).default(2),
  /** workers: the longest they hold back a heartbeat, so the longest a running activity can miss a cancellation */
  PROPENSITY_HEARTBEAT_THROTTLE_SECONDS: z.coerce.number().min(0.1).max(60).default(HEARTBEAT.throttleSeconds),
  /** train workers: trials at once (default 1, or one per GPU on a GPU backend) */
  PROPENSITY_TRAIN_SLOTS: z.coerce.number().int().min(1).max(64).optional(),
  /** workers: on SIGTERM, how long in-flight activities may run on before they are cancelled */
  PROPENSITY_SHUTDOWN_GRACE_SECONDS: z.coerce.number().min(0).max(86_400).default(0),
});

const SECRET = new Set(['DATABASE_URL', 'DATABASE_URL_SOURCE', 'TEMPORAL_API_KEY', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']);

export type Env = Readonly<
  Omit<z.infer<typeof schema>, 'PROPENSITY_DATA_DIR'> & {
    PROPENSITY_DATA_DIR: string;
    /** Undefined when neither S3_FORCE_PATH_STYLE nor S3_ENDPOINT is set, so stack.json may decide. */
    S3_FORCE_PATH_STYLE: boolean | undefined;
  }
>;

/** Parses the environment once at a process boundary; throws a ConfigError naming every bad variable. */
export function loadEnv(source: Record<string, string | undefined> = process.env): Env {
  // An exported-but-empty variable (`FOO=`) means unset, as in most shells' intent.
  const present = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v.trim() !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const name = String(i.path[0]);
      const shown = SECRET.has(name) ? '' : `=${JSON.stringify(present[name])}`;
      return `${name}${shown}: ${i.message}`;
    });
    throw new ConfigError('ENV_INVALID', `Invalid environment: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  return Object.freeze({
    ...e,
    PROPENSITY_DATA_DIR: path.resolve(e.PROPENSITY_DATA_DIR ?? path.join(findRepoRoot(), '.data')),
    S3_FORCE_PATH_STYLE: e.S3_FORCE_PATH_STYLE ?? (e.S3_ENDPOINT ? true : undefined),
  });
}

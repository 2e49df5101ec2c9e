import path from 'node:path';
import { findRepoRoot, loadEnv, type Env } from '../../infra/index.js';

/**
 * The fault suite's own dev stack: its own data dir and ports, because it stops Postgres and S3, which would break
 * any other suite sharing them. Variables that point at external services are dropped, so every service is one
 * this suite starts and may stop. PROPENSITY_FAULTS_PORT_BASE moves all four ports at once (default 30000 + the
 * default ports: Temporal 37233, UI 38233, S3 34569; Postgres 54359).
 */
export function faultEnv(): Env {
  const base = Number(process.env.PROPENSITY_FAULTS_PORT_BASE ?? 30_000);
  const external = new Set(['TEMPORAL_ADDRESS', 'DATABASE_URL', 'DATABASE_URL_SOURCE', 'S3_ENDPOINT', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'S3_FORCE_PATH_STYLE']);
  const source = Object.fromEntries(Object.entries(process.env).filter(([k]) => !external.has(k)));
  return loadEnv({
    ...source,
    PROPENSITY_DATA_DIR: path.join(findRepoRoot(), '.data', 'faults'),
    PROPENSITY_TEMPORAL_PORT: String(base + 7233),
    PROPENSITY_TEMPORAL_UI_PORT: String(base + 8233),
    PROPENSITY_PG_PORT: String(base + 24_359),
    PROPENSITY_S3_PORT: String(base + 4569),
  });
}

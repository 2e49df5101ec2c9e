import { spawn } from 'node:child_process';
import path from 'node:path';
import { findRepoRoot } from '../../infra/index.js';
import { connections } from './services.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const BIN = path.join(findRepoRoot(), 'bin', 'propensity.mjs');

/** The environment that points a spawned `propensity` at this test's database and the dev stack's Temporal and S3. */
export function cliEnv(databaseUrl: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const c = connections();
  return {
    ...process.env,
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: c.temporal.address,
    TEMPORAL_NAMESPACE: c.temporal.namespace,
    S3_ENDPOINT: c.s3.endpoint,
    S3_BUCKET: c.s3.bucket,
    AWS_ACCESS_KEY_ID: c.s3.credentials?.accessKeyId,
    AWS_SECRET_ACCESS_KEY: c.s3.credentials?.secretAccessKey,
    ...extra,
  };
}

/**
 * Runs `propensity <args>` in a child process, as a user would, and resolves with its exit code and output.
 * Asynchronous on purpose: in-process workers of the calling test must keep polling meanwhile.
 */
export function runCli(args: string[], opts: { databaseUrl: string; cwd?: string; env?: Record<string, string> }): Promise<CliResult> {
  return spawnCli(args, opts.cwd ?? findRepoRoot(), cliEnv(opts.databaseUrl, opts.env));
}

/** Spawns the CLI and collects its exit code and output. */
function spawnCli(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** The last line of a command's stdout, parsed: what `--json` prints. */
export const lastJson = <T = any>(stdout: string): T => JSON.parse(stdout.trim().split('\n').at(-1)!) as T;

/**
 * Runs `propensity <args>` with no dev stack to find: an empty data dir and services that refuse connections, so
 * any command that gets as far as opening a service fails with exit code 1. What a command refuses before that
 * (usage, invalid ids) shows as its own exit code.
 */
export function runCliOffline(args: string[], opts: { cwd: string }): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PROPENSITY_DATA_DIR: path.join(opts.cwd, '.data'),
    DATABASE_URL: 'postgres://propensity@127.0.0.1:1/none',
    TEMPORAL_ADDRESS: '127.0.0.1:1',
    S3_ENDPOINT: 'http://127.0.0.1:1',
    S3_BUCKET: 'none',
    AWS_ACCESS_KEY_ID: 'none',
    AWS_SECRET_ACCESS_KEY: 'none',
  };
  return spawnCli(args, opts.cwd, env);
}

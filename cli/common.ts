import type { Client } from '@temporalio/client';
import { InvalidArgumentError } from 'commander';
import { checkId, type IdKind } from '../pipeline/ids.js';
import type { Db } from '../db/client.js';
import type { Services } from '../workers/deps.js';

// Light on purpose: every command imports this module before it knows what it needs, so the services (pg, the S3
// and Temporal SDKs) load inside the functions below, only for commands that open them (README, "A fast CLI").

/** Exit codes scripts can rely on (README, "CLI"). */
export const ExitCode = {
  ok: 0,
  /** an error: bad input named in the message, a service down, a failed run */
  error: 1,
  /** usage: unknown command or option, a missing argument */
  usage: 2,
  /** the run finished but its model was not registered (gate failed, approval rejected) */
  notRegistered: 3,
  /** the thing named does not exist (run, model, version, alias, schedule) */
  notFound: 4,
  /** the request conflicts with the current state (schedule id taken, run not awaiting approval, …) */
  conflict: 5,
  /** no worker polls a task queue the command needs (NoWorkers): nothing was started */
  noWorkers: 6,
} as const;

/** An error the CLI prints as one line (`propensity: <type>: <message>`) and exits with its code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.error,
    readonly type: string = 'Error',
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * Commander parser for an id argument or option: a value outside its pattern (pipeline/ids.ts) is an InvalidIdError,
 * which the CLI prints as `propensity: InvalidId: …` and exits with ExitCode.usage, before any service is opened.
 */
export const idParser = (kind: IdKind) => (value: string) => checkId(kind, value);

/** Opens Postgres + S3 for one command and closes them whatever happens. */
export async function withServices<T>(fn: (s: Services) => Promise<T>): Promise<T> {
  const { openServices } = await import('../workers/deps.js');
  const s = await openServices();
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** Postgres only, for commands that read or write nothing else (`models list`, `runs`): no S3, no Temporal. */
export async function withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
  // not workers/deps.js: that loads the S3 SDK, Arrow and the source-query parser too
  const [{ createDb }, { loadEnv }, { resolveConnections }] = await Promise.all([
    import('../db/client.js'),
    import('../infra/env.js'),
    import('../infra/connections.js'),
  ]);
  const db = createDb(resolveConnections(loadEnv()).databaseUrl);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** Services plus a Temporal client, for commands that talk to workflows or schedules. */
export async function withTemporal<T>(fn: (s: Services, client: Client) => Promise<T>): Promise<T> {
  return withServices(async (s) => {
    const { connectTemporal } = await import('../workers/deps.js');
    const client = await connectTemporal(s.connections);
    try {
      return await fn(s, client);
    } finally {
      await client.connection.close();
    }
  });
}

/** Commander parser for an integer option of at least `min`. */
export const intOption = (name: string, min = 1) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got "${v}"`);
  return n;
};

/** Commander parser for a day (YYYY-MM-DD, UTC): midnight at its start. */
export const dayOption = (name: string) => (v: string) => {
  const d = new Date(`${v}T00:00:00Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(v) || Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== v) {
    throw new InvalidArgumentError(`${name} must be a day as YYYY-MM-DD (UTC), got "${v}"`);
  }
  return d;
};

/** Prints `value` as one JSON line with --json, else the human lines. */
export function output(json: boolean | undefined, value: unknown, human: () => string | string[]): void {
  if (json) {
    console.log(JSON.stringify(value));
    return;
  }
  const lines = human();
  console.log(Array.isArray(lines) ? lines.join('\n') : lines);
}

/**
 * The task queues this process's commands start work on: PROPENSITY_CPU_QUEUE / PROPENSITY_TRAIN_QUEUE, as the
 * workers read them (an isolated pair for a test or a second environment), else the defaults.
 */
export function taskQueuesFromEnv(): { cpu: string; train: string } {
  return {
    cpu: process.env.PROPENSITY_CPU_QUEUE || 'propensity-cpu',
    train: process.env.PROPENSITY_TRAIN_QUEUE || 'propensity-train',
  };
}

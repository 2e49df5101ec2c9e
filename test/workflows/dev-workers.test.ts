import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnv, type Env } from '../../infra/env.js';
import { downWorkers, upWorkers, type WorkersStatus } from '../../infra/workers.js';
import { lastJson, runCli } from '../support/cli.js';
import { connections, freshDatabase } from '../support/services.js';

// The dev stack's supervised workers, for real: a cpu and a train worker process on a data dir and a queue pair of
// their own, against the test stack's Temporal, Postgres and S3. `dev up` and `dev down` run the same upWorkers and
// downWorkers; `dev status --json` is the CLI itself.
let env: Env;
let dir: string;
let dbUrl: string;
const logged: string[] = [];
const queues = { cpu: `sup-cpu-${randomUUID().slice(0, 8)}`, train: `sup-train-${randomUUID().slice(0, 8)}` };

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'dev-workers-'));
  // only the data dir: no TEMPORAL_ADDRESS here, so the workers are the stack's to start
  env = loadEnv({ PROPENSITY_DATA_DIR: dir });
  ({ url: dbUrl } = await freshDatabase('dev_workers'));
});

afterAll(async () => {
  if (env) await downWorkers(env, () => {});
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** `propensity dev status --json` on this data dir (services external: the test stack's, by environment). */
async function status(): Promise<{ services: { name: string; state: string }[]; workers: WorkersStatus }> {
  const r = await runCli(['dev', 'status', '--json'], { databaseUrl: dbUrl, env: { PROPENSITY_DATA_DIR: dir } });
  expect(r.code, r.stderr).toBe(0);
  return lastJson(r.stdout);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('supervised dev-stack workers', () => {
  it('start, clearing stale pid files and naming them, and poll their queues; dev status --json reports them', async () => {
    const c = connections();
    mkdirSync(path.join(dir, 'pids'), { recursive: true });
    writeFileSync(path.join(dir, 'pids', 'workers.pid'), '999999\n'); // a supervisor long gone
    writeFileSync(path.join(dir, 'pids', 'worker-train-1.pid'), `${process.pid}\n`); // a pid another program has now
    const workerEnv = {
      DATABASE_URL: dbUrl,
      TEMPORAL_ADDRESS: c.temporal.address,
      TEMPORAL_NAMESPACE: c.temporal.namespace,
      S3_ENDPOINT: c.s3.endpoint!,
      S3_BUCKET: c.s3.bucket,
      AWS_ACCESS_KEY_ID: c.s3.credentials!.accessKeyId,
      AWS_SECRET_ACCESS_KEY: c.s3.credentials!.secretAccessKey,
    };
    const up = await upWorkers(env, c, { cpu: 1, train: 1, queues, extraEnv: workerEnv, policy: { backoffMs: 200 } }, (l) => logged.push(l));
    expect(logged).toContainEqual(expect.stringMatching(new RegExp(`^workers +stale +pid file ${dir}/pids/workers.pid removed \\(pid 999999 is not running\\)$`)));
    expect(logged).toContainEqual(expect.stringMatching(new RegExp(`^train-1 +stale +pid file ${dir}/pids/worker-train-1.pid removed \\(pid ${process.pid} now runs another program\\)$`)));
    expect(up.state).toBe('running');
    expect(up.workers.map((w) => [w.name, w.queue, w.polling])).toEqual([
      ['cpu-1', queues.cpu, true],
      ['train-1', queues.train, true],
    ]);

    const s = await status();
    expect(s.services.map((x) => x.state)).toEqual(['external', 'external', 'external']);
    expect(s.workers).toMatchObject({ state: 'running', supervisorPid: up.supervisorPid });
    expect(s.workers.workers).toEqual([
      expect.objectContaining({ name: 'cpu-1', kind: 'cpu', queue: queues.cpu, state: 'running', alive: true, polling: true, restarts: 0, pid: up.workers[0].pid }),
      expect.objectContaining({ name: 'train-1', kind: 'train', queue: queues.train, state: 'running', alive: true, polling: true, restarts: 0, pid: up.workers[1].pid }),
    ]);
    expect(readdirSync(path.join(dir, 'logs')).sort()).toEqual(['worker-cpu-1.log', 'worker-train-1.log', 'workers.log']);
  });

  it('starts a killed worker again, which polls its queue under a new pid', async () => {
    const before = (await status()).workers.workers.find((w) => w.name === 'train-1')!;
    process.kill(before.pid!, 'SIGKILL');
    let after: WorkersStatus['workers'][number] | undefined;
    for (const deadline = Date.now() + 90_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 1000))) {
      after = (await status()).workers.workers.find((w) => w.name === 'train-1');
      if (after?.polling && after.pid !== before.pid) break;
    }
    expect(after).toMatchObject({ state: 'running', alive: true, polling: true, restarts: 1 });
    expect(after!.pid).not.toBe(before.pid);
    expect(alive(before.pid!)).toBe(false);
  });

  it('stop (SIGTERM) with dev down\'s downWorkers, leaving no process or pid file; status then says stopped', async () => {
    const pids = (await status()).workers.workers.map((w) => w.pid!);
    const supervisor = (await status()).workers.supervisorPid!;
    const lines: string[] = [];
    await downWorkers(env, (l) => lines.push(l));
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^workers +stopped +supervisor pid ${supervisor} and its workers, SIGTERM in [\\d.]+s$`))]);
    expect([supervisor, ...pids].some(alive)).toBe(false);
    expect(readdirSync(path.join(dir, 'pids'))).toEqual([]);
    expect(existsSync(path.join(dir, 'workers.json'))).toBe(false);
    const s = await status();
    expect(s.workers).toMatchObject({ state: 'external', workers: [] }); // TEMPORAL_ADDRESS is set for the CLI here
  });
});

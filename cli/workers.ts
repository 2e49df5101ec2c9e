import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { buildState, nodeArgsFor } from '../infra/build.js';
import { findRepoRoot, type Env } from '../infra/env.js';
import { queuePollers } from '../infra/pollers.js';

export interface WorkerProcess {
  kind: 'cpu' | 'train';
  child: ChildProcess;
  logFile: string;
}

/**
 * Starts worker processes, unsupervised, each logging to <dataDir>/logs/worker-<kind>-<n>.log: compiled from dist/
 * when the build is fresh, else the sources through tsx (bin/build-state.mjs). For tests and benchmarks that own
 * their workers; the dev stack's supervised workers are infra/workers.ts.
 */
export function spawnWorkers(env: Env, counts: { cpu: number; train: number }, extraEnv: Record<string, string> = {}): WorkerProcess[] {
  const root = findRepoRoot();
  const build = buildState();
  const logs = path.join(env.PROPENSITY_DATA_DIR, 'logs');
  mkdirSync(logs, { recursive: true });
  const out: WorkerProcess[] = [];
  for (const kind of ['cpu', 'train'] as const) {
    for (let i = 1; i <= counts[kind]; i++) {
      const logFile = path.join(logs, `worker-${kind}-${i}.log`);
      const fd = openSync(logFile, 'a');
      const child = spawn(process.execPath, nodeArgsFor(`workers/${kind}.ts`, build), {
        cwd: root,
        stdio: ['ignore', fd, fd],
        env: { ...process.env, ...extraEnv },
      });
      closeSync(fd); // the child has its own copy
      out.push({ kind, child, logFile });
    }
  }
  return out;
}

/** Waits until each task queue has at least `n` pollers (workers connected and ready). */
export async function waitForPollers(
  client: Client,
  queues: { name: string; min: number; kind: 'workflow' | 'activity' }[],
  workers: WorkerProcess[],
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = workers.find((w) => w.child.exitCode !== null);
    if (dead) throw new Error(`worker ${dead.kind} exited with code ${dead.child.exitCode}; see ${dead.logFile}`);
    let ready = true;
    for (const q of queues) {
      if ((await queuePollers(client.connection, client.options.namespace, q.name, q.kind)).length < q.min) ready = false;
    }
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`workers did not start polling within ${timeoutMs / 1000}s; see ${workers.map((w) => w.logFile).join(', ')}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** SIGTERM lets each worker finish or hand back its tasks (graceful shutdown), SIGKILL after the grace period. */
export async function stopWorkers(workers: WorkerProcess[], graceMs = 30_000): Promise<void> {
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
          const timer = setTimeout(() => w.child.kill('SIGKILL'), graceMs);
          w.child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          w.child.kill('SIGTERM');
        }),
    ),
  );
}

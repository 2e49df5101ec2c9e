import os from 'node:os';
import type { Connection } from '@temporalio/client';
import { isAlive } from './processes.js';

// Who polls a task queue, from Temporal's DescribeTaskQueue: the dev stack's status and the CLI's check that a
// command's work will be picked up (cli/preflight.ts) read the same answer.

export type TaskQueueKind = 'workflow' | 'activity';

export interface Poller {
  /** the worker's identity: `<pid>@<host>` unless the worker sets its own */
  identity: string;
  lastAccessTime: Date | null;
}

/**
 * The server keeps a poller in its answer for minutes after the worker went away; a live worker polls again at
 * least once a minute (a long poll lasts up to ~70 s), so one not seen for longer is gone.
 */
const POLLER_SILENT_MS = 2.5 * 60_000;

/** The pollers of one task queue and kind (workflow or activity tasks). */
export async function queuePollers(connection: Pick<Connection, 'workflowService'>, namespace: string, queue: string, kind: TaskQueueKind): Promise<Poller[]> {
  const res = await connection.workflowService.describeTaskQueue({
    namespace,
    taskQueue: { name: queue },
    taskQueueType: kind === 'workflow' ? 1 : 2,
  });
  return (res.pollers ?? []).map((p) => ({
    identity: p.identity ?? '',
    lastAccessTime: p.lastAccessTime?.seconds != null ? new Date(Number(p.lastAccessTime.seconds) * 1000 + Math.floor((p.lastAccessTime.nanos ?? 0) / 1e6)) : null,
  }));
}

/** The pid of a poller of this machine (default identity `<pid>@<hostname>`), else null. */
export function localPid(p: Poller): number | null {
  const m = /^(\d+)@(.+)$/.exec(p.identity);
  return m && m[2] === os.hostname() ? Number(m[1]) : null;
}

/**
 * A poller still there: seen in the last few minutes and, when it runs on this machine, its process alive (so a
 * worker stopped a moment ago does not count).
 */
export function isLive(p: Poller, now = Date.now()): boolean {
  if (p.lastAccessTime && now - p.lastAccessTime.getTime() > POLLER_SILENT_MS) return false;
  const pid = localPid(p);
  return pid === null || isAlive(pid);
}

import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import { spawn } from 'node:child_process';

// Process bookkeeping shared by the dev stack's services (infra/stack.ts) and its workers (infra/workers.ts).

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Spawns a process in its own session, writing to `logPath`, that outlives this one. */
export function spawnDetached(
  command: string,
  args: string[],
  logPath: string,
  options: { uid?: number; gid?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<number> {
  const fd = openSync(logPath, 'a');
  return new Promise<number>((resolve, reject) => {
    const child = spawn(command, args, { ...options, detached: true, stdio: ['ignore', fd, fd] });
    child.once('error', reject);
    child.once('spawn', () => {
      child.unref();
      resolve(child.pid!);
    });
  }).finally(() => closeSync(fd));
}

/** Signals the process, waits up to `graceMs`, then kills its whole process group. Returns how it ended. */
export async function stopProcess(pid: number, signal: NodeJS.Signals, marker: string, graceMs = 15_000): Promise<string> {
  const gone = async (ms: number) => {
    for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(100)) if (!isOurProcess(pid, marker)) return true;
    return !isOurProcess(pid, marker);
  };
  tryKill(pid, signal);
  if (signal !== 'SIGKILL' && (await gone(graceMs))) return `${signal}`;
  tryKill(-pid, 'SIGKILL');
  tryKill(pid, 'SIGKILL');
  await gone(5_000);
  return 'SIGKILL';
}

export function tryKill(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Alive, not a zombie, and (where /proc exists) really the process we started: `marker` is on its command line. */
export function isOurProcess(pid: number, marker: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!existsSync('/proc/self')) return true;
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    return state !== 'Z' && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

/** Alive at all (whatever it runs): tells a dead pid from one the system gave to another program. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function portAnswers(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The pid in a pid file, or undefined when there is none (or it holds no pid). */
export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export async function tail(file: string, lines = 20): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** One aligned status line: `name state detail`. */
export const statusLine = (name: string, state: string, detail: string) => `${name.padEnd(9)} ${state.padEnd(8)} ${detail}`;
export const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)}s`;

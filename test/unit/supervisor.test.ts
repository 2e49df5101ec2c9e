import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type RestartPolicy, Supervisor, type SupervisedProcess, type SupervisorState } from '../../infra/supervisor.js';

// The dev stack's worker supervisor on tiny child scripts: restarts with backoff, gives up on a crash loop with the
// reason, and stops its processes with SIGTERM, then SIGKILL after the grace.
let dir: string;
const supervisors: Supervisor[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'supervisor-'));
});

afterEach(async () => {
  await Promise.all(supervisors.splice(0).map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
});

function child(name: string, script: string): SupervisedProcess {
  const file = path.join(dir, `${name}.mjs`);
  writeFileSync(file, script);
  return { name, kind: 'test', queue: `q-${name}`, command: process.execPath, args: [file], logFile: path.join(dir, `${name}.log`), pidFile: path.join(dir, `${name}.pid`) };
}

function supervise(processes: SupervisedProcess[], policy: Partial<RestartPolicy> = {}) {
  const s = new Supervisor(
    { stateFile: path.join(dir, 'state.json'), cwd: dir, processes, policy: { backoffMs: 100, maxBackoffMs: 1_000, maxCrashes: 3, stableMs: 5_000, stopGraceMs: 1_000, ...policy } },
    () => {},
  );
  supervisors.push(s);
  s.start();
  return s;
}

const stateFile = () => JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as SupervisorState;

async function until<T>(what: string, probe: () => T | null | undefined | false, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(stateFile().processes)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('worker supervisor', () => {
  it('starts a killed process again after a backoff, with a new pid, and counts the restart', async () => {
    const sleeper = child('sleeper', 'setInterval(() => {}, 1000);');
    supervise([sleeper]);
    const first = await until('the first start', () => stateFile().processes[0].pid);
    expect(Number(readFileSync(sleeper.pidFile, 'utf8'))).toBe(first);
    process.kill(first, 'SIGKILL');
    const backoff = await until('the backoff', () => (stateFile().processes[0].state === 'backoff' ? stateFile().processes[0] : null));
    expect(backoff.lastExit).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(backoff.message).toMatch(/^signal SIGKILL after [\d.]+s; starting again in 0\.1s \(crash 1 of 3 before giving up\)$/);
    const again = await until('the restart', () => (stateFile().processes[0].state === 'running' ? stateFile().processes[0] : null));
    expect(again.restarts).toBe(1);
    expect(again.pid).not.toBe(first);
    expect(alive(again.pid!)).toBe(true);
    expect(Number(readFileSync(sleeper.pidFile, 'utf8'))).toBe(again.pid);
    expect(readFileSync(sleeper.logFile, 'utf8')).toMatch(/\[supervisor .*\] signal SIGKILL after/);
  });

  it('gives up on a process that keeps crashing soon after it starts, saying why, and keeps the others running', async () => {
    const crasher = child('crasher', 'console.error("boom"); process.exit(3);');
    const steady = child('steady', 'setInterval(() => {}, 1000);');
    supervise([crasher, steady]);
    const failed = await until('giving up', () => (stateFile().processes[0].state === 'failed' ? stateFile().processes[0] : null));
    expect(failed).toMatchObject({ restarts: 2, crashes: 3, pid: null, lastExit: { code: 3, signal: null } });
    expect(failed.message).toBe(
      `exited 3 times in a row, each within 5s of starting (last: exit code 3 after ${(failed.lastExit!.ranMs / 1000).toFixed(1)}s); ` +
        `not started again: see ${crasher.logFile}, fix the cause, then \`npx propensity dev up\``,
    );
    expect(readFileSync(crasher.logFile, 'utf8').match(/boom/g)).toHaveLength(3);
    await new Promise((r) => setTimeout(r, 600)); // longer than any backoff: nothing starts it again
    expect(stateFile().processes[0]).toMatchObject({ state: 'failed', restarts: 2 });
    expect(stateFile().processes[1]).toMatchObject({ state: 'running', restarts: 0 });
  });

  it('stops with SIGTERM, and SIGKILLs a process that ignores it after the grace; pid files are removed', async () => {
    const polite = child('polite', 'process.on("SIGTERM", () => process.exit(0)); console.log("ready"); setInterval(() => {}, 1000);');
    const stubborn = child('stubborn', 'process.on("SIGTERM", () => {}); console.log("ready"); setInterval(() => {}, 1000);');
    const s = supervise([polite, stubborn], { stopGraceMs: 500 });
    // each listens for SIGTERM before it says ready
    const ready = (p: SupervisedProcess) => existsSync(p.logFile) && readFileSync(p.logFile, 'utf8').includes('ready');
    await until('both listening for SIGTERM', () => ready(polite) && ready(stubborn));
    const pids = stateFile().processes.map((p) => p.pid!);
    const t0 = Date.now();
    await s.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    const final = stateFile();
    expect(final.stopping).toBe(true);
    expect(final.processes.map((p) => [p.name, p.state, p.lastExit?.code, p.lastExit?.signal])).toEqual([
      ['polite', 'stopped', 0, null],
      ['stubborn', 'stopped', null, 'SIGKILL'],
    ]);
    expect(pids.some(alive)).toBe(false);
    expect(existsSync(polite.pidFile) || existsSync(stubborn.pidFile)).toBe(false);
  });
});

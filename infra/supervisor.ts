import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import path from 'node:path';

// The dev stack's worker supervisor: one detached process (infra/supervisor-main.ts) that keeps the stack's worker
// processes running. A worker that exits is started again after a backoff that doubles with each quick crash; one
// that keeps crashing soon after it starts is given up on, with the reason in the state file that `dev status`
// reads. No Temporal, no services: it only starts, watches and stops processes (infra/workers.ts knows what they are).

/** One process to keep running. */
export interface SupervisedProcess {
  /** unique in the set, e.g. cpu-1, train-2 */
  name: string;
  kind: string;
  /** the task queue it polls (reported, not used) */
  queue: string;
  command: string;
  args: string[];
  logFile: string;
  pidFile: string;
}

export interface RestartPolicy {
  /** delay before the first restart; doubles with each further crash in a row */
  backoffMs: number;
  maxBackoffMs: number;
  /** this many crashes in a row (each within `stableMs` of its start) and the process is not started again */
  maxCrashes: number;
  /** a process that ran this long before it exited starts a fresh count */
  stableMs: number;
  /** on stop: SIGTERM, then SIGKILL after this long */
  stopGraceMs: number;
}

export const DEFAULT_POLICY: RestartPolicy = { backoffMs: 1_000, maxBackoffMs: 30_000, maxCrashes: 5, stableMs: 60_000, stopGraceMs: 30_000 };

export interface SupervisorSpec {
  stateFile: string;
  cwd: string;
  processes: SupervisedProcess[];
  policy: RestartPolicy;
  /** recorded in the state file for `dev status`: what the workers run (dist/ or the sources) and why */
  build?: { entry: 'dist' | 'source'; reason: string | null };
}

export type ProcessState = 'starting' | 'running' | 'backoff' | 'failed' | 'stopped';

export interface ProcessStatus {
  name: string;
  kind: string;
  queue: string;
  logFile: string;
  state: ProcessState;
  pid: number | null;
  /** how many times it was started again after an exit */
  restarts: number;
  /** exits in a row that came within `stableMs` of the start */
  crashes: number;
  startedAt: string | null;
  lastExit: { code: number | null; signal: string | null; at: string; ranMs: number } | null;
  nextStartAt: string | null;
  /** why it is in backoff or failed, for people */
  message: string | null;
}

export interface SupervisorState {
  supervisorPid: number;
  startedAt: string;
  updatedAt: string;
  stopping: boolean;
  build: SupervisorSpec['build'] | null;
  policy: RestartPolicy;
  processes: ProcessStatus[];
}

interface Slot {
  spec: SupervisedProcess;
  status: ProcessStatus;
  child: ChildProcess | null;
  timer: NodeJS.Timeout | null;
  started: number;
}

const describeExit = (code: number | null, signal: string | null) => (signal ? `signal ${signal}` : `exit code ${code}`);

/** Starts, restarts and stops a set of processes, writing their state to `spec.stateFile` on every change. */
export class Supervisor {
  private readonly slots: Slot[];
  private stopping = false;
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly spec: SupervisorSpec,
    private readonly log: (line: string) => void = (l) => console.log(`${new Date().toISOString()} ${l}`),
  ) {
    this.slots = spec.processes.map((p) => ({
      spec: p,
      child: null,
      timer: null,
      started: 0,
      status: {
        name: p.name, kind: p.kind, queue: p.queue, logFile: p.logFile, state: 'starting', pid: null, restarts: 0, crashes: 0,
        startedAt: null, lastExit: null, nextStartAt: null, message: null,
      },
    }));
  }

  start(): void {
    mkdirSync(path.dirname(this.spec.stateFile), { recursive: true });
    for (const slot of this.slots) this.launch(slot);
    this.write();
  }

  state(): SupervisorState {
    return {
      supervisorPid: process.pid,
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
      stopping: this.stopping,
      build: this.spec.build ?? null,
      policy: this.spec.policy,
      processes: this.slots.map((s) => ({ ...s.status })),
    };
  }

  /** SIGTERM to every process (a worker drains or hands back its tasks), SIGKILL to those left after the grace. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) {
      if (slot.timer) clearTimeout(slot.timer);
      slot.timer = null;
      if (!slot.child) this.setStopped(slot);
    }
    this.write();
    const live = this.slots.filter((s) => s.child);
    await Promise.all(
      live.map(
        (slot) =>
          new Promise<void>((resolve) => {
            const child = slot.child!;
            child.once('exit', () => resolve());
            const kill = setTimeout(() => {
              this.log(`${slot.spec.name}: still running ${this.spec.policy.stopGraceMs / 1000}s after SIGTERM, SIGKILL`);
              child.kill('SIGKILL');
            }, this.spec.policy.stopGraceMs);
            child.once('exit', () => clearTimeout(kill));
            child.kill('SIGTERM');
          }),
      ),
    );
    this.write();
  }

  private launch(slot: Slot): void {
    const { spec } = slot;
    slot.timer = null;
    const fd = openSync(spec.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(spec.command, spec.args, { cwd: this.spec.cwd, env: process.env, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    slot.child = child;
    slot.started = Date.now();
    Object.assign(slot.status, { state: 'running', pid: child.pid ?? null, startedAt: new Date(slot.started).toISOString(), nextStartAt: null });
    if (child.pid) writeFileSync(spec.pidFile, `${child.pid}\n`);
    this.log(`${spec.name}: started pid ${child.pid} (${spec.kind} worker on ${spec.queue})`);
    // a spawn failure (command missing) is an exit like any other: counted, backed off, given up on
    child.once('error', (err) => {
      this.note(slot, `could not start: ${err.message}`);
      if (child.exitCode === null && child.signalCode === null && !child.pid) this.exited(slot, child, 127, null);
    });
    child.once('exit', (code, signal) => this.exited(slot, child, code, signal));
  }

  private exited(slot: Slot, child: ChildProcess, code: number | null, signal: string | null): void {
    if (slot.child !== child) return; // already handled (error, then exit)
    slot.child = null;
    rmSync(slot.spec.pidFile, { force: true });
    const ranMs = Date.now() - slot.started;
    slot.status.lastExit = { code, signal, at: new Date().toISOString(), ranMs };
    if (this.stopping) {
      this.setStopped(slot);
      this.log(`${slot.spec.name}: stopped (${describeExit(code, signal)})`);
      this.write();
      return;
    }
    const { policy } = this.spec;
    slot.status.crashes = ranMs >= policy.stableMs ? 1 : slot.status.crashes + 1;
    const what = `${describeExit(code, signal)} after ${(ranMs / 1000).toFixed(1)}s`;
    if (slot.status.crashes >= policy.maxCrashes) {
      const message =
        `exited ${slot.status.crashes} times in a row, each within ${policy.stableMs / 1000}s of starting (last: ${what}); ` +
        `not started again: see ${slot.spec.logFile}, fix the cause, then \`npx propensity dev up\``;
      Object.assign(slot.status, { state: 'failed', pid: null, nextStartAt: null, message });
      this.note(slot, message);
    } else {
      const delay = Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** (slot.status.crashes - 1));
      const message = `${what}; starting again in ${(delay / 1000).toFixed(1)}s (crash ${slot.status.crashes} of ${policy.maxCrashes} before giving up)`;
      Object.assign(slot.status, { state: 'backoff', pid: null, nextStartAt: new Date(Date.now() + delay).toISOString(), message });
      this.note(slot, message);
      slot.timer = setTimeout(() => {
        slot.status.restarts++;
        slot.status.message = null;
        this.launch(slot);
        this.write();
      }, delay);
    }
    this.write();
  }

  private setStopped(slot: Slot): void {
    Object.assign(slot.status, { state: 'stopped', pid: null, nextStartAt: null, message: null });
  }

  /** To the supervisor's log and the worker's own, where someone reading about the crash will look. */
  private note(slot: Slot, message: string): void {
    this.log(`${slot.spec.name}: ${message}`);
    try {
      appendFileSync(slot.spec.logFile, `[supervisor ${new Date().toISOString()}] ${message}\n`);
    } catch {
      // the log is a convenience
    }
  }

  private write(): void {
    const file = this.spec.stateFile;
    writeFileSync(`${file}.tmp`, `${JSON.stringify(this.state(), null, 2)}\n`);
    renameSync(`${file}.tmp`, file); // readers never see half a file
  }
}

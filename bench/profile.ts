/**
 * V8 CPU profiles (`.cpuprofile`, from `node --cpu-prof` or bench/cpu-profile.mjs) summarised as self time: per
 * function, per category (wasm kernels, JavaScript, garbage collection, V8 "program" time, idle) and per package or
 * repository directory. The benchmarks use it to say where a gap comes from, from a profile rather than a guess.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, round } from './common.js';

export interface ProfileSummary {
  role: string;
  file: string;
  sampledSeconds: number;
  /** self time by function (top entries), and by category: wasm, gc, idle, program, js */
  top: { fn: string; url: string; seconds: number; pct: number }[];
  categories: Record<string, number>;
  /** self seconds by package (node_modules/<pkg>) or repository directory; wasm code counts as "wasm" */
  modules: Record<string, number>;
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const rootUrl = `file://${ROOT}/`;

/** Self time per function of one profile. `role` names the process in the summary. */
export function summariseProfile(file: string, role: string, topN = 12): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { fn: string; url: string; us: number }>();
  const categories: Record<string, number> = {};
  const modules: Record<string, number> = {};
  profile.samples.forEach((id, i) => {
    const n = byId.get(id)!;
    const dt = profile.timeDeltas[i] ?? 0;
    const { functionName, url, lineNumber } = n.callFrame;
    const name = functionName || '(anonymous)';
    const local = url.startsWith(rootUrl) ? url.slice(rootUrl.length) : url;
    const short = local.replace(/^.*node_modules\//, '');
    const key = `${name}@${short}:${lineNumber}`;
    const e = self.get(key) ?? { fn: name, url: `${short}:${lineNumber + 1}`, us: 0 };
    e.us += dt;
    self.set(key, e);
    const cat =
      name === '(idle)' ? 'idle'
      : name === '(garbage collector)' ? 'gc'
      : name === '(program)' ? 'program'
      : url.startsWith('wasm') || /^\$?wasm-function/.test(name) || (url === '' && /^\d+$/.test(name)) ? 'wasm'
      : 'js';
    categories[cat] = (categories[cat] ?? 0) + dt;
    const mod =
      cat !== 'js'
        ? cat
        : /node_modules\/(@[^/]+\/[^/]+|[^/]+)/.exec(url)?.[1] ??
          (url.startsWith('node:') ? 'node internals' : local !== url ? local.split('/')[0] : url || '(native)');
    modules[mod] = (modules[mod] ?? 0) + dt;
  });
  const total = profile.endTime - profile.startTime;
  const busy = total - (categories.idle ?? 0);
  const top = [...self.values()]
    .filter((e) => e.fn !== '(idle)')
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((e) => ({ fn: e.fn, url: e.url, seconds: round(e.us / 1e6, 2), pct: round((100 * e.us) / Math.max(1, busy), 1) }));
  return {
    role,
    file,
    sampledSeconds: round(total / 1e6, 1),
    top,
    categories: Object.fromEntries(Object.entries(categories).map(([k, v]) => [k, round(v / 1e6, 1)])),
    modules: Object.fromEntries(
      Object.entries(modules)
        .sort((a, b) => b[1] - a[1])
        .filter(([k, v]) => k !== 'idle' && v >= 0.005 * busy)
        .map(([k, v]) => [k, round(v / 1e6, 1)]),
    ),
  };
}

/** Every `CPU.<pid>.cpuprofile` in `dir`, each named by the role of its pid (or "pid N"). */
export function summariseProfiles(dir: string, roles: { pid: number; role: string }[]): ProfileSummary[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return [];
  }
  return files.map((file) => {
    const pid = Number(/^CPU\.(\d+)\./.exec(file)?.[1]);
    return summariseProfile(path.join(dir, file), roles.find((r) => r.pid === pid)?.role ?? `pid ${pid}`);
  });
}

/** A summary with its busy seconds and category shares: what the suites record and print. */
export type ProfileBreakdown = ProfileSummary & { busySeconds: number; shares: Record<string, number> };

/** summariseProfile + categoryShares of one file; `note` replaces the file's path (profiles live in temp dirs). */
export function profileBreakdown(file: string, role: string, note: string, topN = 15): ProfileBreakdown {
  const summary = summariseProfile(file, role, topN);
  return { ...summary, file: note, ...categoryShares(summary) };
}

/** The breakdown as a few indented lines: shares by category, seconds by package, the top functions. */
export function printProfile(title: string, p: ProfileBreakdown, log: (line: string) => void, top = 10): void {
  log(`  ${title}: ${fmtN(p.busySeconds)} s busy (${Object.entries(p.shares).map(([k, v]) => `${k} ${fmtN(v)} %`).join(', ')})`);
  log(`    by package: ${Object.entries(p.modules).map(([k, v]) => `${k} ${fmtN(v)} s`).join(', ')}`);
  for (const t of p.top.slice(0, top)) log(`    ${fmtN(t.pct).padStart(5)} %  ${t.fn}  ${t.url}`);
}

const fmtN = (x: number) => x.toFixed(1);

/** Busy seconds (all but idle) and each category's share of them, e.g. "wasm 41 %, js 35 %, gc 7 %". */
export function categoryShares(p: ProfileSummary): { busySeconds: number; shares: Record<string, number> } {
  const busy = Object.entries(p.categories).reduce((s, [k, v]) => (k === 'idle' ? s : s + v), 0);
  const shares = Object.fromEntries(
    Object.entries(p.categories)
      .filter(([k]) => k !== 'idle')
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => [k, round((100 * v) / Math.max(busy, 1e-9), 1)]),
  );
  return { busySeconds: round(busy, 1), shares };
}

/**
 * The V8 sampler on this process's main thread (a same-thread inspector session): start() when the part to measure
 * begins, stop(file) writes the .cpuprofile. Sampling every 500 µs costs a few per cent, so profiled runs are extra
 * runs, never the timed ones.
 */
export async function cpuProfiler() {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  let started = false;
  return {
    get started() {
      return started;
    },
    start: async () => {
      if (started) return;
      started = true;
      await session.post('Profiler.start');
    },
    stop: async (file: string) => {
      if (started) {
        const { profile } = await session.post('Profiler.stop');
        writeFileSync(file, JSON.stringify(profile));
      }
      session.disconnect();
      return started;
    },
  };
}

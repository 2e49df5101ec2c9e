import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../bench/common.js';
import { categoryShares, cpuProfiler, summariseProfile, summariseProfiles } from '../../bench/profile.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-profile-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const frame = (functionName: string, url: string, lineNumber = 0) => ({ functionName, url, lineNumber });

// The benchmarks explain their gaps from V8 profiles: self time must land in the right function, category and package.
describe('CPU profile summaries', () => {
  it('splits self time by function, category (wasm / js / gc / idle) and package or repository directory', () => {
    const profile = {
      nodes: [
        { id: 1, callFrame: frame('(root)', '') },
        { id: 2, callFrame: frame('encode', 'file:///x/node_modules/apache-arrow/builder.mjs', 290) },
        { id: 3, callFrame: frame('wasm-function[268]', 'wasm://wasm/0019ea4a') },
        { id: 4, callFrame: frame('(garbage collector)', '') },
        { id: 5, callFrame: frame('(idle)', '') },
        { id: 6, callFrame: frame('copyToShards', `file://${ROOT}/activities/source.ts`, 51) },
        { id: 7, callFrame: frame('gatherV2', 'file:///x/node_modules/@tensorflow/tfjs-core/dist/tf-core.node.js', 9) },
      ],
      samples: [2, 3, 2, 4, 5, 6, 3, 7],
      timeDeltas: [200_000, 300_000, 200_000, 100_000, 1_000_000, 500_000, 100_000, 300_000],
      startTime: 0,
      endTime: 2_700_000,
    };
    const file = path.join(dir, 'CPU.4242.cpuprofile');
    writeFileSync(file, JSON.stringify(profile));
    const s = summariseProfile(file, 'worker');
    expect(s.sampledSeconds).toBe(2.7);
    expect(s.categories).toEqual({ js: 1.2, wasm: 0.4, gc: 0.1, idle: 1 });
    expect(s.modules).toEqual({ 'apache-arrow': 0.4, activities: 0.5, wasm: 0.4, '@tensorflow/tfjs-core': 0.3, gc: 0.1 });
    expect(s.top.map((t) => [t.fn, t.url, t.seconds])).toEqual([
      ['copyToShards', 'activities/source.ts:52', 0.5],
      ['encode', 'apache-arrow/builder.mjs:291', 0.4],
      ['wasm-function[268]', 'wasm://wasm/0019ea4a:1', 0.4],
      ['gatherV2', '@tensorflow/tfjs-core/dist/tf-core.node.js:10', 0.3],
      ['(garbage collector)', ':1', 0.1],
    ]);
    // percentages are of busy time (idle left out): 0.5 s of 1.7 s
    expect(s.top[0].pct).toBe(29.4);
    const { busySeconds, shares } = categoryShares(s);
    expect(busySeconds).toBe(1.7);
    expect(shares).toEqual({ js: 70.6, wasm: 23.5, gc: 5.9 });
    expect(Object.keys(shares)).toEqual(['js', 'wasm', 'gc']);
    // a directory of profiles: each named by its pid's role
    expect(summariseProfiles(dir, [{ pid: 4242, role: 'cpu worker 1' }]).map((p) => p.role)).toEqual(['cpu worker 1']);
    expect(summariseProfiles(path.join(dir, 'missing'), [])).toEqual([]);
  });

  it('profiles this process only between start and stop', async () => {
    const idle = await cpuProfiler();
    expect(await idle.stop(path.join(dir, 'never.cpuprofile'))).toBe(false);
    const p = await cpuProfiler();
    await p.start();
    let x = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 60) x += Math.sqrt(x + 1);
    const file = path.join(dir, 'CPU.1.cpuprofile');
    expect(await p.stop(file)).toBe(true);
    const s = summariseProfile(file, 'test');
    expect(x).toBeGreaterThan(0);
    expect(s.sampledSeconds).toBeGreaterThan(0.05);
    expect(s.sampledSeconds).toBeLessThan(30);
    expect(s.categories.js).toBeGreaterThan(0);
  });
});

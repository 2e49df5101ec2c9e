/**
 * `bench ingest`: the pipeline's ingest + clean + split activities (the code the cpu workers run) against psql
 * streaming the same feature query to /dev/null, on a synthetic shop of ≥ 5 M events in its own database.
 */
import { cleanInput } from '../workflows/inputs.js';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type Activities } from '../activities/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { eventFeatureQuery, eventQuarantineQuery } from '../db/features.js';
import {
  appendResult,
  BENCH_DATABASE,
  deletePrefix,
  ensureShop,
  fmt,
  inlineSql,
  machine,
  openBench,
  provenance,
  peakRssMb,
  psqlCopy,
  round,
  table,
  type BenchServices,
  type Log,
} from './common.js';
import { cpuProfiler, printProfile, profileBreakdown, type ProfileBreakdown } from './profile.js';

export interface IngestOptions {
  users: number;
  days: number;
  seed: number;
  horizonDays: number;
  reseed: boolean;
  rounds: number;
  json: boolean;
  /** then one more round of ours under the V8 sampler, and each of the ingest activity's scans alone in psql */
  profile?: boolean;
}

/** Where ingest's time goes: this process's CPU during a profiled round, and each scan of shop.events on its own. */
export interface IngestProfile {
  /** the profiled round (slower than the timed ones by the sampler's cost) */
  profiledSeconds: number;
  stageSeconds: { ingest: number; clean: number; split: number };
  /** Node's own CPU (JavaScript, GC, wasm) during that round, and its split by category and package */
  node: ProfileBreakdown;
  /**
   * The ingest activity runs three scans of shop.events side by side on two cores; each timed alone by psql:
   * the feature query (= psqlCopySeconds), the export of invalid events with reasons, and the row count.
   */
  scansAlone: { features: number; quarantine: number; count: number };
}

export interface IngestResult {
  suite: 'ingest';
  /** Rows in shop.events, dirty ones included. */
  events: number;
  users: number;
  days: number;
  seed: number;
  /** Feature rows (users who signed up before the cutoff) that reached the splits. */
  rows: number;
  /** ingest + clean + split of the best round. */
  ingestSeconds: number;
  /** The best round's stages (they add up to ingestSeconds). */
  stageSeconds: { ingest: number; clean: number; split: number };
  /** Best round of psql `\copy (<feature query>) to '/dev/null'`. */
  psqlCopySeconds: number;
  /** ingestSeconds / psqlCopySeconds */
  ratio: number;
  peakRssMb: number;
  rounds: number;
  /** Every round, in run order, for the record. */
  roundSeconds: { ingest: number[]; psqlCopy: number[] };
  profile: IngestProfile | null;
  gitCommit: string;
  date: string;
  machine: ReturnType<typeof machine>;
}

type Stages = IngestResult['stageSeconds'];

/** MockActivityEnvironment.run with the activity's own argument and result types. */
const call = <A extends unknown[], R>(env: MockActivityEnvironment, fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  env.run(fn as never, ...(args as unknown as never[])) as Promise<R>;

export async function runIngestBench(opts: IngestOptions, log: Log): Promise<IngestResult> {
  log('▸ services');
  const bench = await openBench({ log });
  try {
    log(`▸ synthetic shop in database ${BENCH_DATABASE}: ${opts.users} users, ${opts.days} days, seed ${opts.seed}`);
    const shop = await ensureShop(bench, opts, { reseed: opts.reseed, log });
    if (shop.events < 5_000_000) log(`  note: ${shop.events.toLocaleString('en')} events, fewer than the 5 M the suite is sized for`);

    const acts = createActivities({ db: bench.db, store: bench.store, codeVersion: bench.codeVersion });
    const stamp = new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15);
    const ours: { total: number; stages: Stages; rows: number }[] = [];
    const psql: number[] = [];
    // Alternating rounds (ours, psql, ours, psql, …) and the best of each, so warm caches favour neither side.
    for (let r = 1; r <= opts.rounds; r++) {
      log(`▸ round ${r}/${opts.rounds}: ingest + clean + split (activities)`);
      const run = await oursOnce(bench, acts, { runId: `bench-ingest-${stamp}-r${r}`, cutoff: shop.cutoff, horizonDays: opts.horizonDays });
      ours.push(run);
      log(`  ${fmt(run.total)} s (ingest ${fmt(run.stages.ingest)}, clean ${fmt(run.stages.clean)}, split ${fmt(run.stages.split)}), ${run.rows} rows`);

      log(`▸ round ${r}/${opts.rounds}: psql \\copy (feature query) to /dev/null`);
      // The activity's own query text, values inlined; inlineSql then drops the comments so it fits on one line.
      const { sql, params } = eventFeatureQuery({ cutoff: shop.cutoff, horizonDays: opts.horizonDays, now: new Date(), inline: true });
      const copy = await psqlCopy(bench.databaseUrl, inlineSql(sql, params));
      psql.push(copy.seconds);
      log(`  ${fmt(copy.seconds)} s, ${copy.rows ?? '?'} rows`);
      if (copy.rows !== undefined && copy.rows !== run.rows) {
        log(`  note: psql copied ${copy.rows} rows, the activities kept ${run.rows} (rows quarantined by clean account for a difference)`);
      }
    }

    const best = ours.reduce((a, b) => (b.total < a.total ? b : a));
    const psqlBest = Math.min(...psql);

    let profile: IngestProfile | null = null;
    if (opts.profile) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'propensity-bench-ingest-'));
      try {
        log('▸ profiled round: ingest + clean + split under the V8 sampler (not a timed round)');
        const profiler = await cpuProfiler();
        await profiler.start();
        const run = await oursOnce(bench, acts, { runId: `bench-ingest-${stamp}-profile`, cutoff: shop.cutoff, horizonDays: opts.horizonDays });
        const file = path.join(dir, 'CPU.ingest.cpuprofile');
        await profiler.stop(file);
        log('▸ each scan of shop.events alone: psql \\copy of the invalid-event export, then count(*)');
        const q = eventQuarantineQuery({ now: new Date(), inline: true });
        const quarantine = await psqlCopy(bench.databaseUrl, inlineSql(q.sql, q.params));
        const count = await psqlCopy(bench.databaseUrl, 'SELECT count(*)::float8 AS n FROM shop.events');
        profile = {
          profiledSeconds: round(run.total),
          stageSeconds: { ingest: round(run.stages.ingest), clean: round(run.stages.clean), split: round(run.stages.split) },
          node: profileBreakdown(file, 'bench process (activities in-process)', '(deleted with the temporary directory)'),
          scansAlone: { features: round(psqlBest), quarantine: round(quarantine.seconds), count: round(count.seconds) },
        };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return {
      suite: 'ingest',
      events: shop.events,
      users: shop.users,
      days: shop.days,
      seed: shop.seed,
      rows: best.rows,
      ingestSeconds: round(best.total),
      stageSeconds: { ingest: round(best.stages.ingest), clean: round(best.stages.clean), split: round(best.stages.split) },
      psqlCopySeconds: round(psqlBest),
      ratio: round(best.total / psqlBest),
      peakRssMb: peakRssMb(),
      rounds: opts.rounds,
      roundSeconds: { ingest: ours.map((o) => round(o.total)), psqlCopy: psql.map((p) => round(p)) },
      profile,
      ...provenance(bench.codeVersion),
    };
  } finally {
    await bench.close();
  }
}

/** One pipeline run's startRun (untimed), then ingest → clean → split, each timed, called as the workflow calls them. */
async function oursOnce(
  bench: BenchServices,
  acts: Activities,
  { runId, cutoff, horizonDays }: { runId: string; cutoff: Date; horizonDays: number },
): Promise<{ total: number; stages: Stages; rows: number }> {
  const started = await call(new MockActivityEnvironment(), acts.startRun, {
    runId,
    workflowId: runId,
    config: { modelName: 'bench-ingest', source: { kind: 'events', cutoff: cutoff.toISOString(), horizonDays } },
    trigger: 'bench',
  });
  const env = new MockActivityEnvironment();
  try {
    // Outputs go to the next activity exactly as the workflow passes them, without looking inside the references.
    const t0 = performance.now();
    const { config } = started;
    const ingest = await call(env, acts.ingestSource, { runId, source: config.source });
    const t1 = performance.now();
    const clean = await call(env, acts.cleanData, cleanInput(runId, config, ingest));
    const t2 = performance.now();
    const split = await call(env, acts.splitData, { runId, clean: clean.clean, features: ingest.features, split: config.split });
    const t3 = performance.now();
    const s = (a: number, b: number) => (b - a) / 1000;
    return {
      total: s(t0, t3),
      stages: { ingest: s(t0, t1), clean: s(t1, t2), split: s(t2, t3) },
      rows: split.sizes.train + split.sizes.val + split.sizes.test,
    };
  } finally {
    // The run stops after split by design; its artifacts are the bench's own and would only fill the bucket.
    await call(new MockActivityEnvironment(), acts.finishRun, {
      runId,
      status: 'cancelled',
      error: { type: 'Benchmark', message: 'bench ingest stops every run after split' },
    });
    await deletePrefix(bench.s3, bench.store.bucket, `runs/${runId}/`);
  }
}

export function printIngest(r: IngestResult, log: Log): void {
  const per = (a: number[]) => a.map((x) => fmt(x)).join(' / ');
  log('');
  log(
    table(`ingest benchmark: best of ${r.rounds} alternating rounds each (ours, psql, ours, psql, …)`, [
      ['events (shop.events)', r.events.toLocaleString('en')],
      ['users', r.users.toLocaleString('en')],
      ['feature rows', r.rows.toLocaleString('en')],
      ['ingest (activity) s', fmt(r.stageSeconds.ingest)],
      ['clean (activity) s', fmt(r.stageSeconds.clean)],
      ['split (activity) s', fmt(r.stageSeconds.split)],
      ['ingest+clean+split s', fmt(r.ingestSeconds)],
      ['psql \\copy → /dev/null s', fmt(r.psqlCopySeconds)],
      ['ratio ours / psql', `${fmt(r.ratio)}×`],
      ['rounds: ours s', per(r.roundSeconds.ingest)],
      ['rounds: psql s', per(r.roundSeconds.psqlCopy)],
      ['peak RSS (bench process)', `${fmt(r.peakRssMb, 0)} MB`],
      ['code', r.gitCommit],
      ['machine', `${r.machine.cpus} cpus, ${r.machine.memGb} GB, node ${r.machine.node}`],
    ]),
  );
  const p = r.profile;
  if (p) {
    log('');
    log(`  profiled round ${fmt(p.profiledSeconds)} s (ingest ${fmt(p.stageSeconds.ingest)}, clean ${fmt(p.stageSeconds.clean)}, split ${fmt(p.stageSeconds.split)})`);
    log(`  scans of shop.events alone (psql): features ${fmt(p.scansAlone.features)} s, invalid-event export ${fmt(p.scansAlone.quarantine)} s, count ${fmt(p.scansAlone.count)} s`);
    printProfile('Node CPU in that round', p.node, log, 8);
  }
  log('');
}

export function recordIngest(r: IngestResult): string {
  return appendResult('ingest', r);
}

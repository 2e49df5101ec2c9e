/**
 * `bench ingest`: the pipeline's ingest + clean + split activities (the code the cpu workers run) against psql
 * streaming the same feature query to /dev/null, on a synthetic shop of ≥ 5 M events in its own database.
 */
import { cleanInput } from '../workflows/inputs.js';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type Activities } from '../activities/index.js';
import { eventFeatureQuery } from '../db/features.js';
import {
  appendResult,
  BENCH_DATABASE,
  deletePrefix,
  ensureShop,
  fmt,
  inlineSql,
  machine,
  openBench,
  peakRssMb,
  psqlCopy,
  round,
  table,
  type BenchServices,
  type Log,
} from './common.js';

export interface IngestOptions {
  users: number;
  days: number;
  seed: number;
  horizonDays: number;
  reseed: boolean;
  rounds: number;
  json: boolean;
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
      gitCommit: bench.codeVersion,
      date: new Date().toISOString(),
      machine: machine(),
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
  log('');
}

export function recordIngest(r: IngestResult): string {
  return appendResult('ingest', r);
}

/**
 * `npm run bench -- <suite> [options]`: benchmark suites on the real services, each in the database
 * propensity_bench so that the demo's shop is never touched. One file per suite; shared helpers in common.ts.
 */
import { Command, InvalidArgumentError } from 'commander';
import { intOption } from '../cli/common.js';
import { shopOptions } from '../cli/shop-options.js';
import { searchSpaceSchema, trainingSchema } from '../pipeline/config.js';
import { seedShop } from '../db/synthetic/load.js';
import { appendResult, BENCH_DATABASE, failureLines, openBench, peakRssMb } from './common.js';
import { printIngest, recordIngest, runIngestBench } from './ingest.js';
import { printSearch, recordSearch, runSearchBench } from './search.js';
import { printTrain, recordTrain, runTrainBench, trainBackendChild } from './train.js';
import { printAccuracy, recordAccuracy, runAccuracyBench, type AccuracyResult } from './accuracy.js';
import { printAccuracySummary, summarizeAccuracy } from './accuracy-summary.js';
import { E2E_SHOP, printE2e, recordE2e, runE2eBench } from './e2e.js';
import { printScore, recordScore, runScoreBench } from './score.js';


/** Progress and tables go to stdout; with --json the result is the last line. */
const log = (line: string) => console.log(line);

const program = new Command('bench')
  .description('Propensity benchmarks on the real dev stack (or the services named by the environment)')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));


shopOptions(
  program
    .command('ingest')
    .description('ingest + clean + split activities versus psql \\copy of the same feature query, best of alternating rounds'),
)
  .option('--reseed', 'seed the bench shop again even if it has this shape and seed')
  .option('--rounds <n>', 'alternating rounds of ours and psql', intOption('--rounds'), 2)
  .option('--profile', 'then one more round of ours under the V8 sampler, and each scan of shop.events alone in psql')
  .option('--json', 'end with one JSON line with the results')
  .action(async (o) => {
    const result = await runIngestBench(
      { users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, reseed: !!o.reseed, rounds: o.rounds, json: !!o.json, profile: !!o.profile },
      log,
    );
    printIngest(result, log);
    log(`appended to ${recordIngest(result)}`);
    if (o.json) log(JSON.stringify(result));
  });

program
  .command('search')
  .description('hyperparameterSearch workflow wall time with 1 then 2 train worker processes (parallelism = workers)')
  .option('--users <n>', 'synthetic shop: users', intOption('--users'), 20_000)
  .option('--days <n>', 'synthetic shop: days of events', intOption('--days'), 60)
  .option('--seed <n>', 'synthetic shop: generator seed', intOption('--seed', 0), 1)
  .option('--horizon-days <n>', 'label horizon in days (the shop and the pipeline)', intOption('--horizon-days'), 14)
  .option('--trials <n>', 'search trials', intOption('--trials'), 16)
  .option('--epochs <n>', "the search's largest epoch budget (default: the pipeline's, 30)", intOption('--epochs'))
  .option('--reseed', 'seed the bench shop again even if it has this shape and seed')
  .option('--json', 'end with one JSON line with the results')
  .action(async (o) => {
    const result = await runSearchBench(
      { users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, trials: o.trials, epochs: o.epochs, reseed: !!o.reseed, json: !!o.json },
      log,
    );
    printSearch(result, log);
    log(`appended to ${recordSearch(result)}`);
    if (o.json) log(JSON.stringify(result));
  });

program
  .command('e2e')
  .description('one full nightly retrain (trainPipeline, default config) on a 500k-user, ~10 M-event shop: stage wall times, orchestration overhead, peak RSS per process')
  .option('--users <n>', 'synthetic shop: users', intOption('--users'), E2E_SHOP.users)
  .option('--days <n>', 'synthetic shop: days of events', intOption('--days'), E2E_SHOP.days)
  .option('--seed <n>', 'synthetic shop: generator seed', intOption('--seed', 0), E2E_SHOP.seed)
  .option('--horizon-days <n>', 'label horizon in days (the shop and the pipeline)', intOption('--horizon-days'), E2E_SHOP.horizonDays)
  .option('--train-workers <n>', 'train worker processes (search.parallelism)', intOption('--train-workers'), 2)
  .option('--trials <n>', 'development only: search.trials instead of the default', intOption('--trials'))
  .option('--epochs <n>', 'development only: search.epochs instead of the default', intOption('--epochs'))
  .option('--final-epochs <n>', 'development only: training.finalEpochs instead of the default', intOption('--final-epochs'))
  .option('--quiet-load <x>', 'wait for the 1-minute load average to fall below this before the run', Number, 0.7)
  .option('--wait-minutes <n>', 'wait at most this long for a quiet machine, then run anyway (recorded)', intOption('--wait-minutes', 0), 20)
  .option('--profile', 'V8 CPU profiles of the worker processes, summarised (self time per function)')
  .option('--keep-artifacts', "keep the run's S3 artifacts (runs/<run>/) instead of deleting them")
  .option('--reseed', 'seed the bench shop again even if it has this shape and seed')
  .option('--json', 'end with one JSON line with the results')
  .action(async (o) => {
    const result = await runE2eBench(
      {
        users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, trainWorkers: o.trainWorkers, trials: o.trials,
        epochs: o.epochs, finalEpochs: o.finalEpochs, quietLoad: o.quietLoad, waitMinutes: o.waitMinutes, profile: !!o.profile,
        keepArtifacts: !!o.keepArtifacts, reseed: !!o.reseed, json: !!o.json,
      },
      log,
    );
    printE2e(result, log);
    log(`appended to ${recordE2e(result)}`);
    if (o.json) log(JSON.stringify(result));
  });

program
  .command('score')
  .description("scoreUsers on the e2e bench shop's active users with a real cpu worker: users/s end to end and per phase, rows written, peak RSS; then the same run again (idempotence)")
  .option('--users <n>', 'synthetic shop: users', intOption('--users'), E2E_SHOP.users)
  .option('--days <n>', 'synthetic shop: days of events', intOption('--days'), E2E_SHOP.days)
  .option('--seed <n>', 'synthetic shop: generator seed', intOption('--seed', 0), E2E_SHOP.seed)
  .option('--horizon-days <n>', 'label horizon in days (the shop and the pipeline)', intOption('--horizon-days'), E2E_SHOP.horizonDays)
  .option('--model <ref>', 'model to score with (default: the e2e suite\'s champion, else a small model trained here)')
  .option('--chunk-rows <n>', 'rows per scoring activity (default: the workflow\'s)', intOption('--chunk-rows', 100))
  .option('--parallelism <n>', 'chunks scored at once (default: the workflow\'s)', intOption('--parallelism'))
  .option('--quiet-load <x>', 'wait for the 1-minute load average to fall below this before the run', Number, 0.7)
  .option('--wait-minutes <n>', 'wait at most this long for a quiet machine, then run anyway (recorded)', intOption('--wait-minutes', 0), 20)
  .option('--reseed', 'seed the bench shop again even if it has this shape and seed')
  .option('--json', 'end with one JSON line with the results')
  .action(async (o) => {
    const result = await runScoreBench(
      {
        users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, model: o.model, chunkRows: o.chunkRows,
        parallelism: o.parallelism, quietLoad: o.quietLoad, waitMinutes: o.waitMinutes, reseed: !!o.reseed, json: !!o.json,
      },
      log,
    );
    printScore(result, log);
    log(`appended to ${recordScore(result)}`);
    if (o.json) log(JSON.stringify(result));
  });

const list = <T extends string>(name: string, allowed?: readonly T[]) => (v: string) => {
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = allowed ? items.filter((i) => !allowed.includes(i as T)) : [];
  if (!items.length || bad.length) throw new InvalidArgumentError(`${name}: ${bad.length ? `unknown ${bad.join(', ')} (use ${allowed!.join(', ')})` : 'empty'}`);
  return items as T[];
};
/** The keys `--space` and `--training` may replace, each checked against the pipeline config's schema. */
const ABLATION_KEYS = {
  'search.space': searchSpaceSchema.partial(),
  training: trainingSchema.partial(),
} as const;
/** A JSON object of search.space (or training) keys, checked against the pipeline config's schema before anything starts. */
const jsonObjectOption = (name: string, section: keyof typeof ABLATION_KEYS) => (v: string) => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch (e) {
    throw new InvalidArgumentError(`${name} must be a JSON object, got "${v}" (${(e as Error).message})`);
  }
  const checked = ABLATION_KEYS[section].safeParse(parsed);
  if (!checked.success || parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    const why = checked.success ? 'not an object' : checked.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ');
    throw new InvalidArgumentError(`${name}: not a valid set of ${section} keys: ${why}`);
  }
  return parsed as Record<string, unknown>;
};
const ints = (name: string) => (v: string) => list(name)(v).map((x) => intOption(name)(x));
/** `bench accuracy --seed 1,2`: generator seeds (0 allowed), each one data set, so none twice. */
const seedList = (v: string) => {
  const seeds = list('--seed')(v).map((x) => intOption('--seed', 0)(x));
  const twice = seeds.find((x, i) => seeds.indexOf(x) !== i);
  if (twice !== undefined) throw new InvalidArgumentError(`--seed: seed ${twice} is given twice; each seed is one data set`);
  return seeds;
};

program
  .command('train')
  .description('MLP training rows/s per epoch, ours (each backend) vs Keras on the same matrix; a 16-trial search with 1 and 2 train workers vs the same configurations in Keras')
  .option('--users <n>', 'synthetic shop: users (the search suite\'s shop)', intOption('--users'), 20_000)
  .option('--days <n>', 'synthetic shop: days of events', intOption('--days'), 60)
  .option('--seed <n>', 'synthetic shop: generator seed', intOption('--seed', 0), 1)
  .option('--horizon-days <n>', 'label horizon in days (the shop and the pipeline)', intOption('--horizon-days'), 14)
  .option('--units <list>', 'speed run: hidden layer widths', ints('--units'), [64, 32])
  .option('--batch-size <n>', 'speed run: batch size', intOption('--batch-size'), 256)
  .option('--epochs <n>', 'speed run: epochs (the first is warm-up)', intOption('--epochs', 2), 6)
  .option('--learning-rate <x>', 'speed run: Adam learning rate', Number, 0.001)
  .option('--backends <list>', 'our backends to time', list('--backends', ['wasm', 'cpu', 'tensorflow'] as const), ['wasm', 'cpu', 'tensorflow'])
  .option('--keras-threads <list>', 'Keras thread counts to time (the first is the ratio\'s and the search\'s)', ints('--keras-threads'), [2, 1])
  .option('--no-search', 'skip the search comparison')
  .option('--trials <n>', 'search trials', intOption('--trials'), 16)
  .option('--search-epochs <n>', "the search's largest epoch budget (default: the pipeline's, 30)", intOption('--search-epochs'))
  .option('--quiet-load <x>', 'wait for the 1-minute load average to fall below this before measuring', Number, 0.7)
  .option('--wait-minutes <n>', 'wait at most this long for a quiet machine, then measure anyway (recorded)', intOption('--wait-minutes', 0), 15)
  .option('--profile', 'then train each backend again under the V8 sampler (timed epochs only) and summarise where the time goes')
  .option('--reseed', 'seed the bench shop again even if it has this shape and seed')
  .option('--json', 'end with one JSON line with the results')
  .action(async (o) => {
    const result = await runTrainBench(
      {
        users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, units: o.units, batchSize: o.batchSize, epochs: o.epochs,
        learningRate: o.learningRate, backends: o.backends, kerasThreads: o.kerasThreads, search: o.search !== false, trials: o.trials,
        searchEpochs: o.searchEpochs, quietLoad: o.quietLoad, waitMinutes: o.waitMinutes, reseed: !!o.reseed, profile: !!o.profile,
      },
      log,
    );
    printTrain(result, log);
    log(`appended to ${recordTrain(result)}`);
    if (o.json) log(JSON.stringify(result));
  });

program
  .command('train-backend', { hidden: true })
  .description('one backend of the train suite\'s speed run (a child of `bench train`)')
  .requiredOption('--data <dir>', 'matrices written by the train suite')
  .requiredOption('--params <file>', 'MlpParams JSON')
  .requiredOption('--backend <name>', 'wasm, cpu or tensorflow')
  .option('--profile <file>', 'write a V8 CPU profile of the timed epochs here')
  .action(async (o) => trainBackendChild({ data: o.data, params: o.params, backend: o.backend, profile: o.profile }));

program
  .command('accuracy')
  .description(
    'test ROC-AUC / PR-AUC of our pipeline vs LightGBM (same search budget) and Keras (our best hyperparameters) on the same split; oracle AUC on the synthetic shop. ' +
      'Several data sets (--seed 1,2, and --config with --seed) run one after another and end with ours − LightGBM pooled over them',
  )
  .option('--config <file>', 'a table-mode pipeline config instead of the synthetic shop (e.g. bench/configs/bank-marketing.json); with --seed, after the shops')
  .option('--users <n>', 'synthetic shop: users', intOption('--users'), 100_000)
  .option('--days <n>', 'synthetic shop: days of events', intOption('--days'), 60)
  .option('--seed <list>', 'synthetic shop: generator seed, or seeds (1,2): each a data set of its own', seedList, [1])
  .option('--horizon-days <n>', 'label horizon in days (the shop and the pipeline)', intOption('--horizon-days'), 14)
  .option('--trials <n>', 'search trials and LightGBM configurations (default: 16, or the config file\'s)', intOption('--trials'))
  .option('--sequence-length <n>', 'synthetic shop: source.sequenceLength, each user\'s last N events for the sequence family (with --space \'{"sequenceUnits":[0,16]}\')', intOption('--sequence-length', 0))
  .option('--train-workers <n>', 'train worker processes (synthetic shop: search.parallelism)', intOption('--train-workers'), 2)
  .option('--space <json>', 'search.space keys replacing the run\'s, for an ablation, e.g. \'{"numericEncoding":["ple","periodic"]}\'', jsonObjectOption('--space', 'search.space'))
  .option('--training <json>', 'training keys replacing the run\'s, for an ablation, e.g. \'{"ensemble":{"seeds":8,"maxMembers":10}}\'', jsonObjectOption('--training', 'training'))
  .option('--threads <n>', 'threads for LightGBM and Keras', intOption('--threads'), 2)
  .option('--bank-rows <n>', 'rows to seed into public_data.bank_marketing when a config reads it and it is missing (or with --reseed)', intOption('--bank-rows'), 45_211)
  .option('--quiet-load <x>', 'wait for the 1-minute load average to fall below this before the pipeline starts', Number, 0.7)
  .option('--wait-minutes <n>', 'wait at most this long for a quiet machine, then run anyway (recorded)', intOption('--wait-minutes', 0), 15)
  .option('--keep-artifacts', "keep the run's S3 artifacts (runs/<run>/) instead of deleting them")
  .option('--reseed', 'seed the bench shop (or the bank table of --config) again even if it has this shape and seed')
  .option('--json', 'end with one JSON line with the results (several data sets: one per data set, then the pooled summary)')
  .action(async (o, cmd: Command) => {
    const seeds: number[] = o.seed;
    // --config alone is the table alone (as before seeds were a list); with an explicit --seed the shops come first
    const shops = o.config && cmd.getOptionValueSource('seed') !== 'cli' ? [] : seeds;
    const sets: { seed: number; config?: string }[] = [...shops.map((seed) => ({ seed })), ...(o.config ? [{ seed: seeds[0], config: o.config as string }] : [])];
    const results: AccuracyResult[] = [];
    for (const [i, set] of sets.entries()) {
      if (sets.length > 1) log(`\n▸▸ data set ${i + 1} of ${sets.length}: ${set.config ?? `synthetic shop, seed ${set.seed}`}`);
      const result = await runAccuracyBench(
        {
          users: o.users, days: o.days, seed: set.seed, horizonDays: o.horizonDays, sequenceLength: set.config && shops.length ? 0 : o.sequenceLength, config: set.config,
          trials: o.trials, space: o.space, training: o.training, trainWorkers: o.trainWorkers, threads: o.threads, bankRows: o.bankRows, quietLoad: o.quietLoad, waitMinutes: o.waitMinutes,
          keepArtifacts: !!o.keepArtifacts, reseed: !!o.reseed,
        },
        log,
      );
      printAccuracy(result, log);
      log(`appended to ${recordAccuracy(result)}`);
      if (o.json) log(JSON.stringify(result));
      results.push(result);
    }
    if (results.length > 1) {
      const summary = summarizeAccuracy(results);
      printAccuracySummary(summary, log);
      log(`appended to ${appendResult('accuracy-summary', summary)}`);
      if (o.json) log(JSON.stringify(summary));
    }
  });

// Seeding runs in a child of the suite, so that the generator's memory stays out of the suite's peak RSS.
shopOptions(program.command('seed-shop', { hidden: true }).description('seed the bench database (used by the suites)'))
  .option('--database <name>', 'bench database', BENCH_DATABASE)
  .action(async (o) => {
  const bench = await openBench({ log, startStack: false, database: o.database });
  try {
    await seedShop(bench.db.pool, { users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, end: o.end, log });
    log(`seed-shop peak RSS ${peakRssMb()} MB`); // read by the e2e suite
  } finally {
    await bench.close();
  }
});

try {
  await program.parseAsync();
} catch (err) {
  for (const line of failureLines(err)) console.error(line);
  process.exitCode = 1;
}

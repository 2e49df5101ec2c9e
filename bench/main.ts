/**
 * `npm run bench -- <suite> [options]`: benchmark suites on the real services, each in the database
 * propensity_bench so that the demo's shop is never touched. One file per suite; shared helpers in common.ts.
 */
import { Command, InvalidArgumentError } from 'commander';
import { seedShop } from '../db/synthetic/load.js';
import { BENCH_DATABASE, openBench } from './common.js';
import { printIngest, recordIngest, runIngestBench } from './ingest.js';
import { printSearch, recordSearch, runSearchBench } from './search.js';

const int = (name: string, min = 1) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got "${v}"`);
  return n;
};

/** Progress and tables go to stdout; with --json the result is the last line. */
const log = (line: string) => console.log(line);

const program = new Command('bench')
  .description('Propensity benchmarks on the real dev stack (or the services named by the environment)')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

const shopOptions = (cmd: Command) =>
  cmd
    .option('--users <n>', 'synthetic shop: users', int('--users'), 100_000)
    .option('--days <n>', 'synthetic shop: days of events', int('--days'), 60)
    .option('--seed <n>', 'synthetic shop: generator seed', int('--seed', 0), 1)
    .option('--horizon-days <n>', 'label horizon in days (the shop and the pipeline)', int('--horizon-days'), 14);

shopOptions(
  program
    .command('ingest')
    .description('ingest + clean + split activities versus psql \\copy of the same feature query, best of alternating rounds'),
)
  .option('--reseed', 'seed the bench shop again even if it has this shape and seed')
  .option('--rounds <n>', 'alternating rounds of ours and psql', int('--rounds'), 2)
  .option('--json', 'end with one JSON line with the results')
  .action(async (o) => {
    const result = await runIngestBench(
      { users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, reseed: !!o.reseed, rounds: o.rounds, json: !!o.json },
      log,
    );
    printIngest(result, log);
    log(`appended to ${recordIngest(result)}`);
    if (o.json) log(JSON.stringify(result));
  });

program
  .command('search')
  .description('hyperparameterSearch workflow wall time with 1 then 2 train worker processes (parallelism = workers)')
  .option('--users <n>', 'synthetic shop: users', int('--users'), 20_000)
  .option('--days <n>', 'synthetic shop: days of events', int('--days'), 60)
  .option('--seed <n>', 'synthetic shop: generator seed', int('--seed', 0), 1)
  .option('--horizon-days <n>', 'label horizon in days (the shop and the pipeline)', int('--horizon-days'), 14)
  .option('--trials <n>', 'search trials', int('--trials'), 16)
  .option('--epochs <n>', "the search's largest epoch budget (default: the pipeline's, 30)", int('--epochs'))
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

// Seeding runs in a child of the suite, so that the generator's memory stays out of the suite's peak RSS.
shopOptions(program.command('seed-shop', { hidden: true }).description('seed the bench database (used by the suites)'))
  .option('--database <name>', 'bench database', BENCH_DATABASE)
  .action(async (o) => {
  const bench = await openBench({ log, startStack: false, database: o.database });
  try {
    await seedShop(bench.db.pool, { users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, log });
  } finally {
    await bench.close();
  }
});

try {
  await program.parseAsync();
} catch (err) {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}

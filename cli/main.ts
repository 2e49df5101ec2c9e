import { Command, InvalidArgumentError, Option } from 'commander';
import { grantSourceRead, sourceGrantSql } from '../db/source.js';
import { migrateToLatest } from '../db/migrate.js';
import { importEvents } from '../db/import/rees46.js';
import { seedShop } from '../db/synthetic/load.js';
import { SOURCE_ROLE } from '../infra/connections.js';
import { stackDown, stackStatus, stackUp } from '../infra/index.js';
import { openServices } from '../workers/deps.js';
import { runDemo } from './demo.js';
import { CliError, ExitCode, idParser, withServices } from './common.js';
import { typedCause } from './failure.js';
import { registerAuditCommands } from './commands/audit.js';
import { registerModelsCommands } from './commands/models.js';
import { registerRunsCommands } from './commands/runs.js';
import { registerScheduleCommands } from './commands/schedule.js';
import { registerScoreCommands } from './commands/score.js';

const int = (name: string, min = 1) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got "${v}"`);
  return n;
};

const program = new Command('propensity')
  .description('Retrain, gate and publish purchase-propensity models (Temporal + Postgres + S3 + TensorFlow.js)')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

const dev = program.command('dev').description('the embedded dev stack: Temporal dev server, PostgreSQL, s3rver under .data/');
dev.command('up').description('start (or reuse) the dev stack').action(async () => {
  const info = await stackUp({ log: console.log });
  if (info.temporal.uiUrl) console.log(`Temporal Web UI: ${info.temporal.uiUrl}`);
});
dev.command('down').description('stop what `dev up` started').action(async () => void (await stackDown({ log: console.log })));
dev.command('status').description('show each service').action(async () => void (await stackStatus({ log: console.log })));

const db = program.command('db').description('database administration');
db
  .command('migrate')
  .description('apply pending migrations (schemas shop, ml, bench)')
  .action(async () => {
    const s = await openServices();
    try {
      const results = await migrateToLatest(s.db.db);
      console.log(results.length ? results.map((r) => `applied ${r.migrationName}`).join('\n') : 'database is up to date');
    } finally {
      await s.close();
    }
  });

// The source role must never read ml (the worker refuses it then) nor the system catalogs' schemas.
const RESERVED_SCHEMAS = new Set(['ml', 'information_schema']);
const schemaName = (value: string, previous: string[] = []) => {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(value)) {
    throw new InvalidArgumentError(`"${value}" is not a plain schema name (letters, digits and _, not starting with a digit, at most 63)`);
  }
  if (RESERVED_SCHEMAS.has(value) || value.startsWith('pg_')) {
    throw new InvalidArgumentError(`schema "${value}" is not source data: ${SOURCE_ROLE} must not read it`);
  }
  return previous.includes(value) ? previous : [...previous, value];
};

db
  .command('grant-source')
  .description(`let the source role ${SOURCE_ROLE} read more schemas (table-mode queries outside shop): USAGE, SELECT on their tables and on tables created later`)
  .requiredOption('--schema <name>', 'a schema to grant (repeat for more)', schemaName)
  .option('--print-sql', 'print the SQL for a DBA instead of running it')
  .action(async (o: { schema: string[]; printSql?: boolean }) => {
    if (o.printSql) {
      console.log(o.schema.flatMap((schema) => sourceGrantSql(schema).map((statement) => `${statement};`)).join('\n'));
      return;
    }
    await withServices(async (s) => {
      const { rows } = await s.db.pool.query(
        `select (select count(*) from pg_roles where rolname = $1)::int as role, current_user::text as grantor,
                array(select nspname::text from pg_namespace where nspname = any($2::text[])) as present`,
        [SOURCE_ROLE, o.schema],
      );
      if (!rows[0].role) {
        throw new CliError(
          `role ${SOURCE_ROLE} does not exist: run \`propensity db migrate\` as a user with CREATEROLE, or create it as a DBA (README, "Source-query security")`,
          ExitCode.notFound,
          'UnknownRole',
        );
      }
      const missing = o.schema.filter((schema) => !(rows[0].present as string[]).includes(schema));
      if (missing.length) {
        throw new CliError(`no schema ${missing.map((m) => `"${m}"`).join(', ')} in this database (names are case-sensitive); nothing was granted`, ExitCode.notFound, 'UnknownSchema');
      }
      for (const schema of o.schema) {
        await grantSourceRead(s.db.pool, schema);
        console.log(`granted ${SOURCE_ROLE} read access to schema ${schema}:`);
        for (const statement of sourceGrantSql(schema)) console.log(`  ${statement}`);
      }
      // ALTER DEFAULT PRIVILEGES covers only the tables its own user creates later
      console.log(`tables ${rows[0].grantor} creates in ${o.schema.length === 1 ? 'it' : 'them'} later are readable too; grant again for tables other users create`);
    });
  });

program
  .command('seed')
  .description('replace shop.* with a synthetic shop (and bench.user_truth with its true probabilities)')
  .option('--users <n>', 'number of users', int('--users'), 100_000)
  .option('--days <n>', 'days of history', int('--days'), 60)
  .option('--seed <n>', 'random seed', int('--seed', 0), 1)
  .option('--horizon-days <n>', 'label window after the cutoff', int('--horizon-days'), 14)
  .option('--dirty-rate <x>', 'share of dirty rows', (v) => Number(v), 0.01)
  .action(async (o) => {
    const s = await openServices();
    try {
      await migrateToLatest(s.db.db);
      const shop = await seedShop(s.db.pool, { users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, dirtyRate: o.dirtyRate, log: console.log });
      console.log(JSON.stringify(shop));
    } finally {
      await s.close();
    }
  });

program
  .command('import')
  .description('load a real shop export into shop.*')
  .command('events')
  .description('import an event export (CSV); malformed lines are quarantined with their line number, never dropped')
  .addOption(new Option('--format <format>', 'file format').choices(['rees46']).makeOptionMandatory())
  .option('--json', 'print the import summary as one JSON line')
  .argument('<file>', 'the CSV file')
  .action(async (file: string, o) => {
    const s = await openServices();
    try {
      await migrateToLatest(s.db.db);
      const r = await importEvents(s.db.pool, { file, format: o.format, log: o.json ? undefined : console.log });
      if (o.json) return console.log(JSON.stringify(r));
      console.log(`import ${r.importId}: ${r.rowsLoaded}/${r.rowsIn} rows loaded from ${r.file} in ${r.seconds.toFixed(1)}s`);
      console.log(`  events by type: ${Object.entries(r.byType).map(([k, v]) => `${k} ${v}`).join(', ')}; ${r.sessions} sessions, ${r.users} users (${r.newUsers} new), ${r.products} products`);
      const q = Object.entries(r.quarantined).filter(([, v]) => v > 0);
      if (q.length) {
        console.log(`  quarantined: ${q.map(([k, v]) => `${k} ${v}`).join(', ')} (all lines in ml.import_quarantine where import_id = '${r.importId}')`);
        for (const line of r.quarantine.slice(0, 10)) console.log(`    line ${line.line}: ${line.reason}: ${line.raw.slice(0, 120)}`);
      }
    } finally {
      await s.close();
    }
  });

program
  .command('worker')
  .description('run a worker until SIGINT/SIGTERM')
  .addOption(new Option('--kind <kind>', 'which task queue').choices(['cpu', 'train']).makeOptionMandatory())
  .action(async (o) => {
    const { runWorker } = await import('../workers/run-worker.js');
    await runWorker({ kind: o.kind });
  });

program
  .command('demo')
  .description('stack up, migrate, seed a synthetic shop, run one pipeline with fresh workers, print a summary')
  .option('--users <n>', 'synthetic users', int('--users'), 100_000)
  .option('--days <n>', 'days of history', int('--days'), 60)
  .option('--seed <n>', 'shop seed', int('--seed', 0), 1)
  .option('--horizon-days <n>', 'label window', int('--horizon-days'), 14)
  .option('--trials <n>', 'hyperparameter trials', int('--trials'), 16)
  .option('--train-workers <n>', 'train worker processes', int('--train-workers'), 2)
  .option('--model <name>', 'model name', idParser('modelName'), 'propensity')
  .option('--json', 'end with one JSON line with the results')
  .action(async (o) => {
    const log = (line: string) => console.log(line);
    const r = await runDemo(
      { users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, trials: o.trials, trainWorkers: o.trainWorkers, model: o.model, json: !!o.json },
      log,
    );
    log('');
    log(`Run ${r.workflowId} ${r.status} in ${r.wallSeconds}s on ${r.backend}`);
    log(`  test ROC-AUC ${r.metrics.testAuc.toFixed(4)} (oracle ${r.oracleAuc.toFixed(4)}, gap ${(r.oracleAuc - r.metrics.testAuc).toFixed(4)}), PR-AUC ${r.metrics.testPrAuc.toFixed(4)}, log loss ${r.metrics.testLogLoss.toFixed(4)}`);
    log(`  split train ${r.split.train} / val ${r.split.val} / test ${r.split.test}; ${r.trials} trials`);
    log(r.modelUri ? `  model ${r.modelName} v${r.modelVersion} at ${r.modelUri}` : `  not registered: ${r.gateReasons.join('; ')}`);
    if (r.scoring?.status === 'succeeded') log(`  scored ${r.scoring.rows} active users into ml.scores (score run ${r.scoring.scoreRunId})`);
    if (r.scoring?.status === 'failed') log(`  scoring failed (the model stays registered): ${r.scoring.error}`);
    log(`  query it: psql "${r.databaseUrl}" -c "select * from ml.run_summary order by started_at desc limit 5"`);
    if (r.modelVersion) log(`  look at it: npx propensity models show ${r.modelName}:${r.modelVersion} --card model-card.html`);
    log('  the dev stack keeps running: `npx propensity dev down` stops it');
    if (o.json) log(JSON.stringify({ ...r, databaseUrl: undefined }));
    process.exitCode = r.status === 'registered' ? 0 : 3;
  });

registerRunsCommands(program);
registerScheduleCommands(program);
registerModelsCommands(program);
registerScoreCommands(program);
registerAuditCommands(program);

// Registry lookups that name something missing exit 4; a state conflict exits 5 (README, "Exit codes").
const REGISTRY_EXIT: Record<string, number> = {
  UnknownModel: ExitCode.notFound,
  UnknownVersion: ExitCode.notFound,
  UnknownAlias: ExitCode.notFound,
  InvalidModelRef: ExitCode.usage,
  // an id or name outside its pattern (pipeline/ids.ts), refused before it reaches Temporal, S3 or a file
  InvalidId: ExitCode.usage,
  VersionNotPromotable: ExitCode.conflict,
  NothingToRollBack: ExitCode.conflict,
  NotAwaitingApproval: ExitCode.conflict,
};

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const e = err as Error & { type?: string; code?: string };
  // a failed workflow explains itself with its typed cause (ApplicationFailure type and message), not "Workflow execution failed"
  const cause = err instanceof CliError ? null : typedCause(err);
  const type = err instanceof CliError ? err.type : (cause?.type ?? e.type ?? e.code ?? e.name);
  console.error(`propensity: ${type}: ${cause?.message ?? e.message}`);
  process.exitCode = err instanceof CliError ? err.exitCode : (REGISTRY_EXIT[type ?? ''] ?? ExitCode.error);
}

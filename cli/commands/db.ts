import { InvalidArgumentError, type Command } from 'commander';
import { SOURCE_ROLE } from '../../infra/roles.js';
import { CliError, ExitCode, output, withDb } from '../common.js';

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

/** `db migrate` and `db grant-source`. */
export function registerDbCommands(program: Command): void {
  const db = program.command('db').description('database administration');
  db
    .command('migrate')
    .description('apply pending migrations (schemas shop, ml, bench)')
    .option('--json', 'print the migrations applied as one JSON line')
    .action((o: { json?: boolean }) =>
      withDb(async (db) => {
        const { migrateToLatest } = await import('../../db/migrate.js');
        const results = await migrateToLatest(db.db);
        const applied = results.map((r) => r.migrationName);
        output(o.json, { applied }, () => (applied.length ? applied.map((m) => `applied ${m}`) : 'database is up to date'));
      }),
    );
  db
    .command('grant-source')
    .description(`let the source role ${SOURCE_ROLE} read more schemas (table-mode queries outside shop): USAGE, SELECT on their tables and on tables created later`)
    .requiredOption('--schema <name>', 'a schema to grant (repeat for more)', schemaName)
    .option('--print-sql', 'print the SQL for a DBA instead of running it')
    .option('--json', 'print what was granted as one JSON line')
    .action(async (o: { schema: string[]; printSql?: boolean; json?: boolean }) => {
      const { grantSourceRead, sourceGrantSql } = await import('../../db/source.js');
      if (o.printSql) {
        const statements = o.schema.flatMap((schema) => sourceGrantSql(schema).map((statement) => `${statement};`));
        output(o.json, { role: SOURCE_ROLE, statements }, () => statements);
        return;
      }
      await withDb(async (db) => {
        const { rows } = await db.pool.query(
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
        const granted: { schema: string; statements: string[] }[] = [];
        for (const schema of o.schema) {
          await grantSourceRead(db.pool, schema);
          granted.push({ schema, statements: sourceGrantSql(schema) });
        }
        output(o.json, { role: SOURCE_ROLE, grantor: rows[0].grantor, granted }, () => [
          ...granted.flatMap((g) => [`granted ${SOURCE_ROLE} read access to schema ${g.schema}:`, ...g.statements.map((st) => `  ${st}`)]),
          // ALTER DEFAULT PRIVILEGES covers only the tables its own user creates later
          `tables ${rows[0].grantor} creates in ${o.schema.length === 1 ? 'it' : 'them'} later are readable too; grant again for tables other users create`,
        ]);
      });
    });
}

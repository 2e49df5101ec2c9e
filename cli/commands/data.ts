import { Option, type Command } from 'commander';
import { withServices } from '../common.js';
import { shopOptions } from '../shop-options.js';

/** `seed` (a synthetic shop) and `import events` (a real shop's export): what fills shop.*. */
export function registerDataCommands(program: Command): void {
  shopOptions(program.command('seed').description('replace shop.* with a synthetic shop (and bench.user_truth with its true probabilities)'))
    .option('--dirty-rate <x>', 'share of dirty rows', (v) => Number(v), 0.01)
    .action((o) =>
      withServices(async (s) => {
        const [{ migrateToLatest }, { seedShop }] = await Promise.all([import('../../db/migrate.js'), import('../../db/synthetic/load.js')]);
        await migrateToLatest(s.db.db);
        const shop = await seedShop(s.db.pool, { users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, dirtyRate: o.dirtyRate, end: o.end, log: console.log });
        console.log(JSON.stringify(shop));
      }),
    );

  program
    .command('import')
    .description('load a real shop export into shop.*')
    .command('events')
    .description('import an event export (CSV); malformed lines are quarantined with their line number, never dropped')
    .addOption(new Option('--format <format>', 'file format').choices(['rees46']).makeOptionMandatory())
    .option('--json', 'print the import summary as one JSON line')
    .argument('<file>', 'the CSV file')
    .action((file: string, o) =>
      withServices(async (s) => {
        const [{ migrateToLatest }, { importEvents }] = await Promise.all([import('../../db/migrate.js'), import('../../db/import/rees46.js')]);
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
      }),
    );
}

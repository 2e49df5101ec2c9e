import type { Command } from 'commander';
import { intOption } from '../common.js';

/** `dev up|down|status`: the embedded dev stack under PROPENSITY_DATA_DIR (default .data/), its workers included. */
export function registerDevCommands(program: Command): void {
  const dev = program
    .command('dev')
    .description('the embedded dev stack: Temporal dev server, PostgreSQL, s3rver and supervised workers under .data/')
    // options after a subcommand belong to it (`dev status --json`)
    .enablePositionalOptions();
  dev
    .command('up')
    .description(
      'start (or reuse) the dev stack and its workers: one cpu worker and --train-workers train workers, restarted when they die ' +
        '(none with TEMPORAL_ADDRESS set: workers for an external Temporal are yours to run)',
    )
    .option('--train-workers <n>', 'train worker processes (default PROPENSITY_DEV_TRAIN_WORKERS, else 2)', intOption('--train-workers', 0))
    .option('--no-workers', 'the services only')
    .action(async (o: { trainWorkers?: number; workers: boolean }) => {
      const { stackUp } = await import('../../infra/index.js');
      const info = await stackUp({ log: console.log, workers: o.workers ? { train: o.trainWorkers } : undefined });
      if (info.temporal.uiUrl) console.log(`Temporal Web UI: ${info.temporal.uiUrl}`);
    });
  dev
    .command('down')
    .description('stop what `dev up` started: the workers (SIGTERM, SIGKILL after a grace), then the services')
    .action(async () => {
      const { stackDown } = await import('../../infra/index.js');
      await stackDown({ log: console.log });
    });
  dev
    .command('status')
    .description('show each service and each worker (alive, pid, restarts, queue, polling)')
    .option('--json', 'print { services, workers } as one JSON object')
    .action(async (o: { json?: boolean }) => {
      const { stackStatus, stackWorkersStatus } = await import('../../infra/index.js');
      const log = o.json ? () => {} : console.log;
      const services = await stackStatus({ log });
      const workers = await stackWorkersStatus({ log });
      if (o.json) console.log(JSON.stringify({ services, workers }));
    });
}

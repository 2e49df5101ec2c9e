import type { Command } from 'commander';

/** `dev up|down|status`: the embedded dev stack under PROPENSITY_DATA_DIR (default .data/). */
export function registerDevCommands(program: Command): void {
  const dev = program.command('dev').description('the embedded dev stack: Temporal dev server, PostgreSQL, s3rver under .data/');
  dev
    .command('up')
    .description('start (or reuse) the dev stack')
    .action(async () => {
      const { stackUp } = await import('../../infra/index.js');
      const info = await stackUp({ log: console.log });
      if (info.temporal.uiUrl) console.log(`Temporal Web UI: ${info.temporal.uiUrl}`);
    });
  dev
    .command('down')
    .description('stop what `dev up` started')
    .action(async () => {
      const { stackDown } = await import('../../infra/index.js');
      await stackDown({ log: console.log });
    });
  dev
    .command('status')
    .description('show each service')
    .action(async () => {
      const { stackStatus } = await import('../../infra/index.js');
      await stackStatus({ log: console.log });
    });
}

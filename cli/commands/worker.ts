import { Option, type Command } from 'commander';

/** `worker --kind cpu|train`: one worker process in the foreground, until SIGINT/SIGTERM. */
export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('run a worker until SIGINT/SIGTERM')
    .addOption(new Option('--kind <kind>', 'which task queue').choices(['cpu', 'train']).makeOptionMandatory())
    .action(async (o) => {
      const { runWorker } = await import('../../workers/run-worker.js');
      await runWorker({ kind: o.kind });
    });
}

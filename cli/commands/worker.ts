import { InvalidArgumentError, Option, type Command } from 'commander';
import { intOption } from '../common.js';

const POOL = /^[a-z][a-z0-9-]{0,30}$/;

/** `worker --kind cpu|train [--pool P] [--slots N]`: one worker process in the foreground, until SIGINT/SIGTERM. */
export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description(
      'run a worker until SIGINT/SIGTERM: cpu (workflows, data steps, scoring; queue propensity-cpu) or train ' +
        '(trials of one pool: propensity-train for pool cpu, propensity-train-<pool> otherwise)',
    )
    .addOption(new Option('--kind <kind>', 'which task queue').choices(['cpu', 'train']).makeOptionMandatory())
    .addOption(
      new Option('--pool <name>', 'train: the pool this worker serves (the config\'s training.pool)')
        .env('PROPENSITY_TRAIN_POOL')
        .argParser((v) => {
          if (!POOL.test(v)) throw new InvalidArgumentError(`"${v}" is not a pool name: lower-case letters, digits and -, starting with a letter (e.g. cpu, gpu)`);
          return v;
        }),
    )
    .option('--slots <n>', 'train: trials at once (default 1, or one per GPU on a GPU backend; PROPENSITY_TRAIN_SLOTS)', intOption('--slots'))
    .action(async (o: { kind: 'cpu' | 'train'; pool?: string; slots?: number }) => {
      const { runWorker } = await import('../../workers/run-worker.js');
      await runWorker({ kind: o.kind, pool: o.pool, slots: o.slots });
    });
}

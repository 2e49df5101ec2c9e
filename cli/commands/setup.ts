import type { Command } from 'commander';

/** `setup tensorflow [--gpu]`: optional native pieces built into .tools/ (infra/tensorflow-setup.ts does the work). */
export function registerSetupCommands(program: Command): void {
  const setup = program
    .command('setup')
    .description('install optional native pieces into .tools/ (offline-capable, idempotent)')
    .enablePositionalOptions();
  setup
    .command('tensorflow')
    .description(
      'build @tensorflow/tfjs-node (--gpu: tfjs-node-gpu) against the libtensorflow of PyPI\'s tensorflow-cpu (--gpu: tensorflow with its ' +
        'CUDA 12 wheels) into .tools/tensorflow, check it, and let PROPENSITY_BACKEND=auto select it; a second run only checks',
    )
    .option('--gpu', 'the CUDA 12 build (tensorflow[and-cuda] wheels, @tensorflow/tfjs-node-gpu)')
    .option('--force', 'rebuild even when the installed backend checks out')
    .option('--tensorflow <version>', 'the PyPI tensorflow version to build against (default: the one bench/reference\'s Keras uses)')
    .option('--json', 'end with one JSON line with what was installed where')
    .action(async (o: { gpu?: boolean; force?: boolean; tensorflow?: string; json?: boolean }) => {
      const { setupTensorflow } = await import('../../infra/tensorflow-setup.js');
      const r = await setupTensorflow({ gpu: !!o.gpu, force: !!o.force, tensorflowVersion: o.tensorflow, log: (l) => console.log(l) });
      if (o.json) console.log(JSON.stringify(r));
    });
}

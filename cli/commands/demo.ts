import type { Command } from 'commander';
import { idParser, intOption } from '../common.js';
import { shopOptions } from '../shop-options.js';

/** `demo`: the whole story on one machine (cli/demo.ts), with its summary. */
export function registerDemoCommand(program: Command): void {
  shopOptions(program.command('demo').description('stack up (workers included), migrate, seed a synthetic shop, run one pipeline, print a summary'))
    .option('--trials <n>', 'hyperparameter trials', intOption('--trials'), 16)
    .option('--train-workers <n>', 'the dev stack\'s train worker processes (they keep running after the demo)', intOption('--train-workers'), 2)
    .option('--model <name>', 'model name', idParser('modelName'), 'propensity')
    .option('--json', 'end with one JSON line with the results')
    .action(async (o) => {
      const { runDemo } = await import('../demo.js');
      const log = (line: string) => console.log(line);
      const r = await runDemo(
        { users: o.users, days: o.days, seed: o.seed, horizonDays: o.horizonDays, end: o.end, trials: o.trials, trainWorkers: o.trainWorkers, model: o.model, json: !!o.json },
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
      log('  the dev stack and its workers keep running, so `npx propensity run --config …` works now; `npx propensity dev down` stops them');
      if (o.json) log(JSON.stringify({ ...r, databaseUrl: undefined }));
      process.exitCode = r.status === 'registered' ? 0 : 3;
    });
}

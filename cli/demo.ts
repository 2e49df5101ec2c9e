import { migrateToLatest } from '../db/migrate.js';
import { seedShop } from '../db/synthetic/load.js';
import { loadEnv, stackUp, workerQueues } from '../infra/index.js';
import { rocAuc } from '../ml/metrics.js';
import { TASK_QUEUES } from '../workflows/constants.js';
import { trainPipeline, type TrainPipelineOutput } from '../workflows/pipeline.js';
import type { PipelineConfigInput } from '../pipeline/config.js';
import { connectTemporal, openServices } from '../workers/deps.js';
import { followPipeline } from './follow.js';
import { pipelineNeeds, requireWorkers } from './preflight.js';

export interface DemoOptions {
  users: number;
  days: number;
  seed: number;
  horizonDays: number;
  /** where the shop's data ends (the cutoff is horizonDays before): fixed by default, so every demo is the same */
  end: Date;
  trials: number;
  trainWorkers: number;
  model: string;
  json: boolean;
}

export interface DemoResult {
  runId: string;
  workflowId: string;
  status: TrainPipelineOutput['status'];
  modelName: string;
  modelVersion: number | null;
  modelUri: string | null;
  modelUriExists: boolean;
  metrics: { testAuc: number; testPrAuc: number; testLogLoss: number; testBrier: number };
  oracleAuc: number;
  split: TrainPipelineOutput['split'];
  trials: number;
  trialsFailed: number;
  wallSeconds: number;
  backend: string;
  cutoff: string | null;
  gateReasons: string[];
  scoring: TrainPipelineOutput['scoring'];
  temporalUi: string | null;
  /** omitted from --json output: it holds the password */
  databaseUrl: string;
}

/** The whole story on one machine: stack up, migrate, seed, workers, one pipeline run, a summary. */
export async function runDemo(opts: DemoOptions, log: (line: string) => void): Promise<DemoResult> {
  const t0 = Date.now();
  const env = loadEnv();
  log('▸ dev stack and its workers');
  // the workers stay up after the demo (supervised, like the services), so `propensity run` works next
  const stack = await stackUp({ env, log: (l) => log(`  ${l}`), workers: { train: opts.trainWorkers } });
  const services = await openServices(env);
  try {
    log('▸ migrations');
    const applied = await migrateToLatest(services.db.db);
    log(`  ${applied.length ? applied.map((m) => m.migrationName).join(', ') : 'up to date'}`);

    log(`▸ synthetic shop: ${opts.users} users, ${opts.days} days up to ${opts.end.toISOString().slice(0, 10)}, seed ${opts.seed}`);
    const shop = await ensureShop(services, opts, log);

    const client = await connectTemporal(services.connections);
    // the stack's workers poll these queues; with an external Temporal (TEMPORAL_ADDRESS) they are the operator's
    const queues = workerQueues();
    await requireWorkers(client, pipelineNeeds(queues));

    const config: PipelineConfigInput = {
      modelName: opts.model,
      source: { kind: 'events', cutoff: shop.cutoff.toISOString(), horizonDays: opts.horizonDays },
      search: { trials: opts.trials, parallelism: opts.trainWorkers },
      // the promoted model scores every active user into ml.scores (a child workflow), so the analysts'
      // queries in the README have scores to read
      scoring: { afterPromotion: true },
    };
    // train-<model>-<yyyy-mm-dd>, plus the time so that two manual runs on one day get distinct ids
    const stamp = new Date().toISOString();
    const workflowId = `train-${opts.model}-${stamp.slice(0, 10)}-${stamp.slice(11, 19).replaceAll(':', '')}`;
    log(`▸ pipeline ${workflowId}`);
    if (stack.temporal.uiUrl) log(`  watch it: ${stack.temporal.uiUrl}/namespaces/${stack.temporal.namespace}/workflows/${encodeURIComponent(workflowId)}`);
    const custom = queues.cpu !== TASK_QUEUES.cpu || queues.train !== TASK_QUEUES.train;
    const handle = await client.workflow.start(trainPipeline, {
      taskQueue: queues.cpu,
      workflowId,
      // the demo's "now" is the end of its shop's data, so that it reads and scores the same rows on any day
      args: [{ config, trigger: 'demo', asOf: shop.end.toISOString(), ...(custom ? { taskQueues: queues } : {}) }],
    });
    const out = await followPipeline(client, handle, (l) => log(`  ${l}`));
    await client.connection.close();

    const oracleAuc = await oracleAucOnTest(services, out);
    const modelUriExists = out.modelUri ? await services.store.exists(out.modelUri.replace(`s3://${services.store.bucket}/`, '')) : false;
    return {
      runId: out.runId,
      workflowId: out.workflowId,
      status: out.status,
      modelName: out.modelName,
      modelVersion: out.modelVersion,
      modelUri: out.modelUri,
      modelUriExists,
      metrics: out.metrics,
      oracleAuc,
      split: out.split,
      trials: out.trials,
      trialsFailed: out.trialsFailed,
      wallSeconds: Math.round((Date.now() - t0) / 100) / 10,
      backend: out.backend,
      cutoff: out.cutoff,
      gateReasons: out.gate.reasons,
      scoring: out.scoring,
      temporalUi: stack.temporal.uiUrl ?? null,
      databaseUrl: services.connections.databaseUrl,
    };
  } finally {
    await services.close();
  }
}

/** Reuses the seeded shop when it has the same shape and seed (so a second demo trains on the same data). */
async function ensureShop(services: Awaited<ReturnType<typeof openServices>>, opts: DemoOptions, log: (l: string) => void) {
  const existing = await services.db.db
    .selectFrom('bench.shops')
    .selectAll()
    .executeTakeFirst()
    .catch(() => undefined);
  if (
    existing &&
    existing.seed === opts.seed &&
    existing.users === opts.users &&
    existing.days === opts.days &&
    existing.horizon_days === opts.horizonDays &&
    new Date(existing.end_at).getTime() === opts.end.getTime()
  ) {
    log(`  reusing the shop seeded at ${new Date(existing.created_at).toISOString()} (${existing.events} events)`);
    return { cutoff: new Date(existing.cutoff_at), end: new Date(existing.end_at) };
  }
  const t = Date.now();
  const shop = await seedShop(services.db.pool, {
    users: opts.users,
    days: opts.days,
    seed: opts.seed,
    horizonDays: opts.horizonDays,
    end: opts.end,
    log: (l: string) => log(`  ${l}`),
  });
  log(`  seeded in ${((Date.now() - t) / 1000).toFixed(1)}s`);
  return { cutoff: shop.timeline.cutoff, end: shop.timeline.end };
}

/** AUC of the generator's true probabilities on the same test rows: the ceiling any model can reach. */
export async function oracleAucOnTest(
  services: Awaited<ReturnType<typeof openServices>>,
  out: Pick<TrainPipelineOutput, 'artifacts'>,
): Promise<number> {
  const test = await services.store.getFrame(out.artifacts.test);
  const { rows } = await services.db.pool.query<{ user_id: string; probability: number }>(
    'select user_id::text as user_id, probability from bench.user_truth where user_id = any($1::bigint[])',
    [test.ids],
  );
  const truth = new Map(rows.map((r) => [r.user_id, r.probability]));
  const p = Float64Array.from(test.ids, (id) => truth.get(id) ?? NaN);
  if (p.some(Number.isNaN)) throw new Error('bench.user_truth lacks some test users: was the shop re-seeded during the run?');
  return rocAuc(test.label, p);
}

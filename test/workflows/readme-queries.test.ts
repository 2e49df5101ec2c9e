import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import { findRepoRoot } from '../../infra/index.js';
import { promote, rollback } from '../../registry/registry.js';
import { trainPipeline } from '../../workflows/pipeline.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';
import { activityInterceptors } from '../../workers/interceptors.js';
import { connections, freshDatabase, testStore } from '../support/services.js';

// The README's example SQL, run as written against a database in the state the demo leaves (model "propensity",
// two runs, a promotion, a rollback, a scoring run): every query must run and return rows.

/** Each statement of each ```sql block of the README, with the comment line that names it. */
function readmeQueries(readme: string): { title: string; sql: string }[] {
  const blocks = [...readme.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]);
  const out: { title: string; sql: string }[] = [];
  for (const block of blocks) {
    for (const chunk of block.split(/;\s*(?:\n|$)/)) {
      const lines = chunk.split('\n').filter((l) => l.trim());
      const sql = lines.filter((l) => !l.trim().startsWith('--')).join('\n').trim();
      if (!sql) continue;
      out.push({ title: lines.find((l) => l.trim().startsWith('--'))?.replace(/^\s*--\s*/, '') ?? sql.slice(0, 60), sql });
    }
  }
  return out;
}

/** The analysts' section of the README (other sections hold SQL for a DBA, e.g. the source role's grants). */
const mlSection = (readme: string): string => {
  const start = readme.indexOf('## The `ml` schema');
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
};
const queries = readmeQueries(mlSection(readFileSync(path.join(findRepoRoot(), 'README.md'), 'utf8')));
let db: Db;
let closeStore: () => void;

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  ({ db } = await freshDatabase('readme_queries'));
  const { store, close } = await testStore();
  closeStore = close;
  const shop = await seedShop(db.pool, { users: 2000, days: 40, seed: 31, horizonDays: 14 });
  const queues = { cpu: `readme-cpu-${randomUUID()}`, train: `readme-train-${randomUUID()}` };
  const { address, namespace } = connections().temporal;
  const nativeConnection = await NativeConnection.connect({ address });
  const client = new Client({ connection: await Connection.connect({ address }), namespace });
  const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} } });
  const activities = createActivities({ db, store, codeVersion: 'test' });
  const cpu = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.cpu, workflowBundle: bundle, activities, interceptors: activityInterceptors({ db }) });
  const train = await Worker.create({ connection: nativeConnection, namespace, taskQueue: queues.train, activities, interceptors: activityInterceptors({ db }) });
  const config = {
    modelName: 'propensity',
    source: { kind: 'events', cutoff: shop.timeline.cutoff.toISOString(), horizonDays: 14 },
    search: { trials: 3, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 } },
    training: { finalEpochs: 4, backend: 'wasm' },
    gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false }, versusChampion: { enabled: false } },
    evaluation: { bootstrapSamples: 10, importanceRepeats: 1 },
    scoring: { afterPromotion: true },
  };
  try {
    await cpu.runUntil(
      train.runUntil(
        (async () => {
          for (let i = 0; i < 2; i++) {
            const out = await client.workflow.execute(trainPipeline, {
              taskQueue: queues.cpu,
              workflowId: `train-readme-${randomUUID()}`,
              args: [{ config, taskQueues: queues, trigger: 'test', asOf: shop.timeline.end.toISOString() }],
            });
            expect(out.status).toBe('registered');
            expect(out.scoring?.status).toBe('succeeded');
          }
        })(),
      ),
    );
  } finally {
    await client.connection.close();
    await nativeConnection.close();
  }
  await promote(db.db, { modelName: 'propensity', version: 1, alias: 'challenger', by: 'analyst', reason: 'readme test' });
  await rollback(db.db, { modelName: 'propensity', by: 'analyst', reason: 'readme test' });
});

afterAll(async () => {
  closeStore?.();
  await db?.close();
});

describe('README example queries', () => {
  it('the README has example queries for every view', () => {
    expect(queries.length).toBeGreaterThanOrEqual(10);
    const text = queries.map((q) => q.sql).join('\n');
    for (const view of ['run_summary', 'step_timings', 'trial_leaderboard', 'champion_history', 'metric_trends', 'data_quality_trend', 'latest_scores']) {
      expect(text, view).toContain(`ml.${view}`);
    }
  });

  it.each(queries.map((q) => [q.title, q.sql]))('runs as written and returns rows: %s', async (_title, sql) => {
    const { rows } = await db.pool.query(sql);
    expect(rows.length).toBeGreaterThan(0);
  });
});

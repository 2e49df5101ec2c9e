import { randomUUID } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { poolOfQueue, trainQueueFor } from '../../workflows/constants.js';
import { trainPipeline } from '../../workflows/pipeline.js';
import { runCli } from '../support/cli.js';
import { pipelineHarness, type PipelineHarness } from '../support/pipeline-harness.js';

// Worker pools (issue 15): a run's training goes to the task queue of its config's training.pool, the worker of that
// pool records itself (pool, host) on every trial, and pool 'gpu' trains on a GPU unless the config allows a CPU.
// This machine has no GPU: a worker started as the gpu pool trains on wasm, which is exactly the fallback case.
let h: PipelineHarness;

beforeAll(async () => {
  h = await pipelineHarness('pools', { users: 1500, days: 40, seed: 21, horizonDays: 14 });
});

afterAll(async () => {
  await h?.close();
});

const config = (training: Record<string, unknown>) => ({
  modelName: `pool_${randomUUID().slice(0, 8)}`,
  source: { kind: 'events', cutoff: h.cutoff, horizonDays: 14 },
  search: { trials: 2, parallelism: 2, epochs: 2, patience: 2, halving: { eta: 3, minEpochs: 1 } },
  training: { finalEpochs: 2, backend: 'wasm', final: 'retrain', ...training },
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false }, versusChampion: { enabled: false } },
  evaluation: { bootstrapSamples: 10, importanceRepeats: 0 },
});

const start = (cfg: unknown) =>
  h.client.workflow.start(trainPipeline, { taskQueue: h.queues.cpu, workflowId: `train-pool-${randomUUID()}`, args: [{ config: cfg, taskQueues: h.queues, trigger: 'test' }] });

describe('worker pools', () => {
  it('the pool queue names: the default pool keeps propensity-train, others get a suffix', () => {
    expect(trainQueueFor('cpu')).toBe('propensity-train');
    expect(trainQueueFor('gpu')).toBe('propensity-train-gpu');
    expect(trainQueueFor('gpu-large', 'x-train')).toBe('x-train-gpu-large');
    expect(poolOfQueue('propensity-train-gpu')).toBe('gpu');
    expect(poolOfQueue('propensity-train')).toBe('cpu');
  });

  it('training.pool gpu with allowCpuFallback trains on the gpu pool\'s worker and records pool and host on every trial', async () => {
    // with two seed replicas of the best trial (training.ensemble.seeds 3), which must train on the run's pool too
    const handle = await start(config({ pool: 'gpu', allowCpuFallback: true, ensemble: { seeds: 3, replicaBudgetSeconds: null } }));
    const out = await h.withWorkers(() => handle.result(), { pool: 'gpu', host: 'rehearsal-gpu-host' });
    expect(out.status).toBe('registered');
    const trials = await h.db.db.selectFrom('ml.trials').select(['trial_id', 'pool', 'host', 'backend']).where('run_id', '=', out.runId).execute();
    expect(trials.map((t) => t.trial_id).sort()).toEqual(['baseline', 'final', 't001', 't002', `${out.best.trialId}-s2`, `${out.best.trialId}-s3`].sort());
    for (const t of trials) expect({ pool: t.pool, host: t.host, backend: t.backend }).toEqual({ pool: 'gpu', host: 'rehearsal-gpu-host', backend: 'wasm' });
    // run show says which pool and host trained each trial
    const show = await runCli(['run', 'show', out.workflowId], { databaseUrl: h.dbUrl });
    expect(show.code, show.stderr).toBe(0);
    const rows = show.stdout.split('\n').filter((l) => /\bt00[12](-s[23])?\b/.test(l) && l.includes('rehearsal-gpu-host'));
    expect(rows.length).toBe(4);
    for (const row of rows) expect(row).toMatch(/\bgpu\b/);
  });

  it('training.pool gpu without the fallback fails every trial on a GPU-less worker with GpuUnavailable, registering nothing', async () => {
    const cfg = config({ pool: 'gpu' });
    const handle = await start(cfg);
    const err = await h.withWorkers(() => handle.result().then(() => null, (e) => e), { pool: 'gpu', host: 'no-gpu-host' });
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const text = JSON.stringify(err, Object.getOwnPropertyNames(err)) + String(((err as Error).cause as Error | undefined)?.message);
    expect(text).toMatch(/AllTrialsFailed|GpuUnavailable/);
    const runs = await h.db.db.selectFrom('ml.pipeline_runs').select(['run_id', 'status', 'error_message']).where('model_name', '=', cfg.modelName).execute();
    expect(runs).toHaveLength(1);
    expect(runs[0].status).toBe('failed');
    expect(runs[0].error_message).toMatch(/must train on a GPU .*allowCpuFallback/s);
    // each trial's row says why, on which host
    const trials = await h.db.db.selectFrom('ml.trials').select(['trial_id', 'status', 'error', 'host']).where('run_id', '=', runs[0].run_id).execute();
    expect(trials.length).toBeGreaterThanOrEqual(2);
    for (const t of trials) expect(t, t.trial_id).toMatchObject({ status: 'failed', host: 'no-gpu-host', error: expect.stringMatching(/must train on a GPU/) });
    const versions = await h.db.db.selectFrom('ml.model_versions').select('version').where('model_name', '=', cfg.modelName).execute();
    expect(versions).toHaveLength(0);
  });
});

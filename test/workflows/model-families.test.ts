import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchServerHistory, replayHistories } from '../../audit/history.js';
import { initBackend } from '../../ml/backend.js';
import { formatEnsembleGain } from '../../ml/ensemble-gain.js';
import { rocAuc } from '../../ml/metrics.js';
import { predict } from '../../ml/model.js';
import { transform, type Preprocessor } from '../../ml/preprocess.js';
import { readRegistered } from '../../store/models.js';
import { progressQuery, trainPipeline, type TrainPipelineOutput } from '../../workflows/pipeline.js';
import { formatReplicaPlan, replicaPlan } from '../../ml/replicas.js';
import type { TrainTrialOutput } from '../../activities/train.js';
import { pipelineHarness, type PipelineHarness } from '../support/pipeline-harness.js';

// Model families (issue 14) through the real pipeline: a run whose final model is an ensemble of its search's
// networks (piecewise-linear encoded numerics, weights reused from the trials, no final training), registered as one
// version with its members as lineage, scored for every active user after promotion, its history replaying; the
// same for a GRU sequence model and for a BatchEnsemble MLP over periodic embeddings.
let h: PipelineHarness;

beforeAll(async () => {
  h = await pipelineHarness('families', { users: 2500, days: 40, seed: 31, horizonDays: 14 });
});

afterAll(async () => {
  await h?.close();
});

const run = (config: unknown) =>
  h.client.workflow.execute(trainPipeline, {
    taskQueue: h.queues.cpu,
    workflowId: `train-families-${randomUUID()}`,
    args: [{ config, taskQueues: h.queues, trigger: 'test' }],
  });

async function scoresOf(workflowId: string) {
  const { rows } = await h.db.pool.query<{ user_id: string; probability: number; model_version: number }>(
    'select user_id::text as user_id, probability, model_version from ml.scores where score_run_id = $1 order by user_id',
    [`${workflowId}/score`],
  );
  return rows;
}

async function replays(out: TrainPipelineOutput, children = ['search', 'score']) {
  const items = await Promise.all([out.workflowId, ...children.map((c) => `${out.workflowId}/${c}`)].map((workflowId) => fetchServerHistory(h.client, { workflowId })));
  const outcomes = await replayHistories(items, { workflowBundle: h.bundle });
  return outcomes.map((o) => ({ workflowType: o.workflowType, ok: o.ok, error: o.error?.message }));
}

/** Scored after promotion (every active user, in ml.scores) and the pipeline, its search and its scoring child replay. */
async function expectScoredAndReplaying(out: TrainPipelineOutput) {
  expect(out.scoring).toMatchObject({ status: 'succeeded' });
  const scores = await scoresOf(out.workflowId);
  expect(scores.length).toBe((out.scoring as { rows: number }).rows);
  expect(scores.length).toBeGreaterThan(100);
  expect(await replays(out)).toEqual([
    { workflowType: 'trainPipeline', ok: true, error: undefined },
    { workflowType: 'hyperparameterSearch', ok: true, error: undefined },
    { workflowType: 'scoreUsers', ok: true, error: undefined },
  ]);
  return scores;
}

describe('model families through trainPipeline', () => {
  it('registers an ensemble of PLE networks as one version listing its members, scores every active user with it, and replays', async () => {
    const modelName = `ens_${randomUUID().slice(0, 8)}`;
    const out = await h.withWorkers(() =>
      run({
        modelName,
        source: { kind: 'events', cutoff: h.cutoff, horizonDays: 14 },
        // every trial trains its full budget (eta 1): four candidate networks, all reading the same PLE matrix
        search: { trials: 4, parallelism: 2, epochs: 4, patience: 2, halving: { eta: 1, minEpochs: 4 }, baselineCompetes: false, space: { numericEncoding: ['ple'], pleBins: [8] } },
        training: { backend: 'wasm', final: 'reuse', ensemble: { maxMembers: 4, minGain: 0, seeds: 3, replicaBudgetSeconds: null } },
        gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.55 }], versusBaseline: { enabled: true }, versusChampion: { enabled: false } },
        evaluation: { bootstrapSamples: 0, importanceRepeats: 1 },
        scoring: { afterPromotion: true, activeDays: 14 },
      }),
    );
    expect(out.status).toBe('registered');
    expect(out.family).toBe('ensemble');
    const members = out.model!.members!;
    expect(members.length).toBeGreaterThanOrEqual(2);

    // two seed replicas of the best trial: its parameters, other seeds, trained to the same budget
    const trials = await h.db.db.selectFrom('ml.trials').selectAll().where('run_id', '=', out.runId).execute();
    const bestRow = trials.find((t) => t.trial_id === out.best.trialId)!;
    const replicas = trials.filter((t) => t.trial_id.startsWith(`${out.best.trialId}-s`)).sort((a, b) => (a.trial_id < b.trial_id ? -1 : 1));
    expect(replicas.map((r) => [r.trial_id, r.status])).toEqual([
      [`${out.best.trialId}-s2`, 'completed'],
      [`${out.best.trialId}-s3`, 'completed'],
    ]);
    for (const r of replicas) expect(r.params).toEqual(bestRow.params);
    expect(new Set([bestRow, ...replicas].map((r) => String(r.seed))).size).toBe(3);
    // the greedy selection starts from the best network on validation, search trial or replica
    const networks = trials.filter((t) => t.trial_id !== 'baseline' && t.status === 'completed');
    const top = Math.max(...networks.map((t) => t.val_auc!));
    expect(networks.filter((t) => t.val_auc === top).map((t) => t.trial_id)).toContain(members[0]);

    // no final training: the members' weights are the trials' own
    const steps = await h.db.db.selectFrom('ml.run_steps').select(['step', 'status', 'detail']).where('run_id', '=', out.runId).execute();
    expect(steps.filter((s) => s.step === 'final')).toEqual([]);
    const ensembleStep = steps.find((s) => s.step === 'ensemble')!;
    expect(ensembleStep.status).toBe('succeeded');
    expect((ensembleStep.detail as { members: string[] }).members).toEqual(members);
    // the records say how much the ensemble beat its first member on validation, and whether that is within the noise
    const detail = ensembleStep.detail as { val: { auc: number }; single: { trialId: string; auc: number }; gain: { over: string; diff: number; se: number; p: number; withinNoise: boolean } };
    expect(detail.gain.over).toBe(members[0]);
    expect(detail.gain.diff).toBeCloseTo(detail.val.auc - detail.single.auc, 10);
    expect(detail.gain.se).toBeGreaterThan(0);
    expect(detail.gain.withinNoise).toBe(!(detail.gain.p < 0.05));

    // one registered version: its family and members in ml.model_versions, the card and metadata.json
    const version = await h.db.db.selectFrom('ml.model_versions').select(['family', 'members', 'params']).where('model_name', '=', modelName).executeTakeFirstOrThrow();
    expect(version).toMatchObject({ family: 'ensemble', members });
    const metadata = JSON.parse(new TextDecoder().decode(await h.store.getKey(`models/${modelName}/v1/metadata.json`)));
    expect(metadata.lineage).toMatchObject({ family: 'ensemble', members });
    const card = JSON.parse(new TextDecoder().decode(await h.store.getKey(`models/${modelName}/v1/model-card.json`)));
    expect(card.lineage).toMatchObject({ family: 'ensemble', members, ensembleGain: detail.gain });
    const cardHtml = new TextDecoder().decode(await h.store.getKey(`models/${modelName}/v1/model-card.html`));
    expect(cardHtml).toContain(`ensemble vs its first member (validation ROC-AUC; members chosen on those rows)</th><td>${formatEnsembleGain(detail.gain).replace("<", "&lt;")}</td>`);

    // one model.json averaging the members, and the registered preprocessing is the PLE encoding they read
    const { artifacts, pre } = await readRegistered(h.store, modelName, 1);
    expect(JSON.stringify(artifacts.modelJson.modelTopology)).toContain('"name":"ensemble_mean"');
    expect(pre.encoding).toEqual({ numeric: 'ple', bins: 8 });
    expect(pre.featureNames.some((f) => f.endsWith('__ple1'))).toBe(true);

    // its test AUC is what the registered files give on the test split, and the baseline was judged on its own matrix
    await initBackend('wasm');
    const test = await h.store.getFrame(out.artifacts.test);
    const m = transform(pre as Preprocessor, test);
    expect(rocAuc(test.label, await predict(artifacts, m.x, m.rows, m.cols))).toBeCloseTo(out.metrics.testAuc, 10);
    const evaluation = await h.db.db.selectFrom('ml.evaluations').select('comparisons').where('run_id', '=', out.runId).executeTakeFirstOrThrow();
    expect((evaluation.comparisons as { check: string; status?: string }[]).find((c) => c.check === 'beats_baseline')).toBeDefined();

    // scored after promotion: every active user, with this version; the pipeline, its search and its scoring child
    // replay against the current workflow code
    const scores = await expectScoredAndReplaying(out);
    expect(new Set(scores.map((s) => s.model_version))).toEqual(new Set([1]));
  });

  it('trains only the seed replicas that fit training.ensemble.replicaBudgetSeconds, and says so', async () => {
    // the stage lines are the workflow's progress query, answered while a worker runs
    const { out, detail } = await h.withWorkers(async () => {
      const done = await run({
        modelName: `budget_${randomUUID().slice(0, 8)}`,
        source: { kind: 'events', cutoff: h.cutoff, horizonDays: 14 },
        // one slot: replicas train one at a time, so a 1 s budget cannot fit the fifteen that seeds 16 asks for
        search: { trials: 2, parallelism: 1, epochs: 3, patience: 2, halving: { eta: 1, minEpochs: 3 }, baselineCompetes: false, space: { numericEncoding: ['ple'], pleBins: [8] } },
        training: { backend: 'wasm', final: 'reuse', ensemble: { maxMembers: 3, minGain: 0, seeds: 16, replicaBudgetSeconds: 1 } },
        gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }], versusBaseline: { enabled: false }, versusChampion: { enabled: false } },
        evaluation: { bootstrapSamples: 0, importanceRepeats: 1 },
      });
      return { out: done, detail: (await h.client.workflow.getHandle(done.workflowId).query(progressQuery)).completed.find((c) => c.stage === 'final')?.detail };
    });
    expect(out.status).toBe('registered');
    // the plan is the pure rule's on the best trial's recorded time (the search child's result, in its history)
    const search = (await h.client.workflow.getHandle(`${out.workflowId}/search`).result()) as { best: TrainTrialOutput };
    const plan = replicaPlan({ seeds: 16, budgetSeconds: 1, slots: 1, best: search.best });
    expect(plan.wanted).toBe(15);
    expect(plan.count).toBeLessThan(15);
    const trials = await h.db.db.selectFrom('ml.trials').select('trial_id').where('run_id', '=', out.runId).execute();
    expect(trials.filter((t) => t.trial_id.startsWith(`${out.best.trialId}-s`)).length).toBe(plan.count);
    expect(detail).toContain(`; ${plan.count ? `${plan.count} of ${plan.count} seed replicas trained (` : 'no seed replica trained ('}${formatReplicaPlan(plan, 1)})`);
    expect(formatReplicaPlan(plan, 1)).toMatch(/^the 1 s replica budget fits (none|\d+) of the 15 asked for, at about [\d.]+ s each$/);
    expect(await replays(out, ['search'])).toEqual([
      { workflowType: 'trainPipeline', ok: true, error: undefined },
      { workflowType: 'hyperparameterSearch', ok: true, error: undefined },
    ]);
  });

  it('registers a GRU sequence model over the last events, scores every active user with it, and replays', async () => {
    const modelName = `seq_${randomUUID().slice(0, 8)}`;
    const out = await h.withWorkers(() =>
      run({
        modelName,
        source: { kind: 'events', cutoff: h.cutoff, horizonDays: 14, sequenceLength: 8 },
        // seed 12 draws t001 joined with the aggregates and t002 alone (sequenceAlone)
        search: {
          trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 1, minEpochs: 3 }, baselineCompetes: false, seed: 12,
          space: { numericEncoding: ['standard'], sequenceUnits: [8], sequenceAlone: [false, true] },
        },
        training: { backend: 'wasm', final: 'reuse', ensemble: { maxMembers: 2, seeds: 2, replicaBudgetSeconds: null } },
        gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.55 }], versusBaseline: { enabled: true }, versusChampion: { enabled: false } },
        evaluation: { bootstrapSamples: 0, importanceRepeats: 1 },
        scoring: { afterPromotion: true, activeDays: 14 },
      }),
    );
    expect(out.status, out.gate.reasons.join('; ')).toBe('registered');
    expect(['sequence', 'ensemble']).toContain(out.family);
    const byId = (a: { trial_id: string }, b: { trial_id: string }) => (a.trial_id < b.trial_id ? -1 : 1);
    const trials = await h.db.db.selectFrom('ml.trials').select(['trial_id', 'family', 'status']).where('run_id', '=', out.runId).execute();
    // a GRU replica trains like any trial (checkpoints, resume) with its own seed
    expect(trials.sort(byId)).toEqual([
      { trial_id: 'baseline', family: 'logistic', status: 'completed' },
      { trial_id: 't001', family: 'sequence', status: 'completed' },
      { trial_id: 't002', family: 'sequence', status: 'completed' },
      { trial_id: `${out.best.trialId}-s2`, family: 'sequence', status: 'completed' },
    ].sort(byId));
    // the GRU alone cuts the aggregate columns away: its trial model has no 'joined' layer; the joined one has
    const layersOf = async (trialId: string) => {
      const row = await h.db.db.selectFrom('ml.trials').select(['params', 'model_uri']).where('run_id', '=', out.runId).where('trial_id', '=', trialId).executeTakeFirstOrThrow();
      const modelJson = JSON.parse(new TextDecoder().decode(await h.store.getKey(row.model_uri!.replace(/^s3:\/\/[^/]+\//, ''))));
      return { alone: (row.params as { sequenceAlone?: boolean }).sequenceAlone ?? false, layers: (modelJson.modelTopology.config.layers as { name: string }[]).map((l) => l.name) };
    };
    const [joined, alone] = [await layersOf('t001'), await layersOf('t002')];
    expect([joined.alone, joined.layers]).toEqual([false, expect.arrayContaining(['gru', 'joined'])]);
    expect([alone.alone, alone.layers.includes('gru'), alone.layers.includes('joined')]).toEqual([true, true, false]);
    const { artifacts, pre } = await readRegistered(h.store, modelName, 1);
    expect(JSON.stringify(artifacts.modelJson.modelTopology)).toMatch(/"class_name":"GRU"/);
    expect(pre.encoding).toMatchObject({ sequence: true });
    const test = await h.store.getFrame(out.artifacts.test);
    const m = transform(pre as Preprocessor, test);
    await initBackend('wasm');
    expect(rocAuc(test.label, await predict(artifacts, m.x, m.rows, m.cols))).toBeCloseTo(out.metrics.testAuc, 10);
    // the whole last-events block is one feature of the permutation importance
    const importance = await h.db.db.selectFrom('ml.feature_importance').select(['feature', 'kind']).where('run_id', '=', out.runId).execute();
    expect(importance).toContainEqual({ feature: 'last_events', kind: 'sequence' });

    await expectScoredAndReplaying(out);
  });

  it('registers a BatchEnsemble MLP over periodic embeddings (two layer classes of our own), scores every active user with it, and replays', async () => {
    const modelName = `per_${randomUUID().slice(0, 8)}`;
    const out = await h.withWorkers(() =>
      run({
        modelName,
        source: { kind: 'events', cutoff: h.cutoff, horizonDays: 14 },
        search: { trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 1, minEpochs: 3 }, baselineCompetes: false, space: { numericEncoding: ['periodic'], periodicSigma: [0.03, 0.3], batchEnsemble: [4] } },
        training: { backend: 'wasm', final: 'reuse', ensemble: { maxMembers: 1 } },
        gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.55 }], versusBaseline: { enabled: true }, versusChampion: { enabled: false } },
        evaluation: { bootstrapSamples: 0, importanceRepeats: 1 },
        scoring: { afterPromotion: true, activeDays: 14 },
      }),
    );
    expect(out.status).toBe('registered');
    expect(out.family).toBe('mlp');
    const trials = await h.db.db.selectFrom('ml.trials').select(['trial_id', 'params']).where('run_id', '=', out.runId).where('trial_id', 'like', 't%').execute();
    expect(trials).toHaveLength(2);
    for (const t of trials) {
      const p = t.params as { numericEncoding: string; periodicSigma: number; batchEnsemble: number };
      expect([p.numericEncoding, p.batchEnsemble]).toEqual(['periodic', 4]);
      expect(p.periodicSigma).toBeGreaterThanOrEqual(0.03);
      expect(p.periodicSigma).toBeLessThanOrEqual(0.3);
    }
    // the registered files: the periodic layer, then the members' layer, over the quantile-encoded matrix
    const { artifacts, pre } = await readRegistered(h.store, modelName, 1);
    expect(JSON.stringify(artifacts.modelJson.modelTopology)).toContain('"class_name":"PropensityPeriodic"');
    expect(JSON.stringify(artifacts.modelJson.modelTopology)).toContain('"class_name":"PropensityBatchEnsemble"');
    expect(pre.encoding).toEqual({ numeric: 'quantile' });
    const test = await h.store.getFrame(out.artifacts.test);
    const m = transform(pre as Preprocessor, test);
    await initBackend('wasm');
    expect(rocAuc(test.label, await predict(artifacts, m.x, m.rows, m.cols))).toBeCloseTo(out.metrics.testAuc, 10);

    await expectScoredAndReplaying(out);
  });
});

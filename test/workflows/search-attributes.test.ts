import { randomUUID } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainPipeline, type TrainPipelineOutput } from '../../workflows/pipeline.js';
import { MODEL_ATTRIBUTE, OUTCOME_ATTRIBUTE, TEST_AUC_ATTRIBUTE, TRIGGER_ATTRIBUTE } from '../../workflows/search-attributes.js';
import { pipelineHarness, type PipelineHarness } from '../support/pipeline-harness.js';

// What the Temporal Web UI shows of a run, read back from the real dev server: its search attributes (which the
// dev stack registers), its activities' summaries, and the filter `temporal workflow list --query` uses.
let h: PipelineHarness;
const modelName = `sa_${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  h = await pipelineHarness('search_attributes', { users: 1500, days: 40, seed: 21, horizonDays: 14 });
});

afterAll(async () => {
  await h?.close();
});

const withWorkers = <T>(fn: () => Promise<T>) => h.withWorkers(fn);

const config = (threshold: number) => ({
  modelName,
  source: { kind: 'events', cutoff: h.cutoff, horizonDays: 14 },
  search: { trials: 2, parallelism: 2, epochs: 3, patience: 2, halving: { eta: 3, minEpochs: 1 }, baselineCompetes: false },
  training: { finalEpochs: 3, backend: 'wasm' },
  gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: threshold }], versusBaseline: { enabled: false }, versusChampion: { enabled: false } },
  evaluation: { bootstrapSamples: 10, importanceRepeats: 0 },
});

async function start(cfg: unknown, trigger = 'test') {
  const workflowId = `train-sa-${randomUUID()}`;
  const handle = await h.client.workflow.start(trainPipeline, { taskQueue: h.queues.cpu, workflowId, args: [{ config: cfg, taskQueues: h.queues, trigger }] });
  return handle;
}

/** The summaries the Web UI shows on the activities' bars, from the history's ActivityTaskScheduled events. */
async function activitySummaries(workflowId: string): Promise<string[]> {
  const history = await h.client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? [])
    .filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => (e.userMetadata?.summary ? String(defaultPayloadConverter.fromPayload(e.userMetadata.summary as never)) : ''));
}

describe('the Temporal Web UI speaks ML', () => {
  let registered: TrainPipelineOutput;

  it('a finished run carries its model name, outcome, test AUC and trigger as search attributes', async () => {
    const handle = await start(config(0.5));
    registered = await withWorkers(() => handle.result());
    expect(registered.status).toBe('registered');
    const d = await handle.describe();
    expect(d.typedSearchAttributes.get(MODEL_ATTRIBUTE)).toBe(modelName);
    expect(d.typedSearchAttributes.get(OUTCOME_ATTRIBUTE)).toBe('registered');
    expect(d.typedSearchAttributes.get(TRIGGER_ATTRIBUTE)).toBe('test');
    expect(d.typedSearchAttributes.get(TEST_AUC_ATTRIBUTE)).toBeCloseTo(registered.metrics.testAuc, 9);

    // every step's bar has a readable name, trials with their id and rung
    const pipeline = await activitySummaries(handle.workflowId);
    expect(pipeline.every((s) => s.length > 0)).toBe(true);
    expect(pipeline.some((s) => s.startsWith('ingest: event features as of cutoff'))).toBe(true);
    expect(pipeline.some((s) => s.startsWith('evaluate on the test split; gate: rocAuc >= 0.5'))).toBe(true);
    const search = await activitySummaries(`${handle.workflowId}/search`);
    // 2 trials, budgets 1 → 3 epochs: both at rung 1, the better one again at rung 2
    expect(search.filter((s) => /^trial t00[12], rung 1\/2, 1 epochs$/.test(s))).toHaveLength(2);
    expect(search.filter((s) => /^trial t00[12], rung 2\/2, 3 epochs \(from epoch 1\)$/.test(s))).toHaveLength(1);
  });

  it('a rejected run is visibly rejected: its result, its outcome attribute and the list query say so', async () => {
    const handle = await start(config(0.999), 'nightly-test');
    const out = await withWorkers(() => handle.result());
    expect(out.status).toBe('rejected');
    expect(out.rejection?.type).toBe('GateFailed');
    const d = await handle.describe();
    expect(d.typedSearchAttributes.get(OUTCOME_ATTRIBUTE)).toBe('rejected');
    expect(d.typedSearchAttributes.get(MODEL_ATTRIBUTE)).toBe(modelName);
    expect(d.typedSearchAttributes.get(TRIGGER_ATTRIBUTE)).toBe('nightly-test');

    // what `temporal workflow list --query 'PropensityOutcome="rejected"'` filters on (visibility is eventually consistent)
    const query = `PropensityModel = "${modelName}" AND PropensityOutcome = "rejected"`;
    let ids: string[] = [];
    for (let i = 0; i < 40 && !ids.length; i++) {
      ids = [];
      for await (const w of h.client.workflow.list({ query })) ids.push(w.workflowId);
      if (!ids.length) await new Promise((r) => setTimeout(r, 250));
    }
    expect(ids).toEqual([handle.workflowId]);
    const registeredIds: string[] = [];
    for await (const w of h.client.workflow.list({ query: `PropensityModel = "${modelName}" AND PropensityOutcome = "registered"` })) registeredIds.push(w.workflowId);
    expect(registeredIds).toEqual([registered.workflowId]);
  });

  it('a failed run ends with outcome failed', async () => {
    const handle = await start({ ...config(0.5), sourc: {} });
    const err = await withWorkers(() => handle.result().catch((e: unknown) => e));
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const d = await handle.describe();
    expect(d.status.name).toBe('FAILED');
    expect(d.typedSearchAttributes.get(OUTCOME_ATTRIBUTE)).toBe('failed');
    expect(d.typedSearchAttributes.get(TRIGGER_ATTRIBUTE)).toBe('test');
  });
});

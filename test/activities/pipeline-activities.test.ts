import { ApplicationFailure } from '@temporalio/common';
import { tableFromIPC } from 'apache-arrow';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { SplitOutput } from '../../activities/split.js';
import type { TrainTrialInput } from '../../activities/train.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import { datasetRef, type ArtifactStore } from '../../store/artifacts.js';
import { freshDatabase, testStore } from '../support/services.js';
import { resilientActivities } from '../../workers/interceptors.js';
import { recordStart } from '../../activities/steps.js';

// Activities on the real Postgres and s3rver of the dev stack, in Temporal's mock activity context
// (attempt numbers, heartbeats and heartbeat details as a retry would see them).
let db: Db;
let store: ArtifactStore;
let closeStore: () => void;
let acts: ReturnType<typeof createActivities>;
let cutoff: string;
const runId = `act-${Date.now()}`;
const quality = { maxQuarantineRate: 0.05, maxPsi: 0.25 };

beforeAll(async () => {
  ({ db } = await freshDatabase('activities'));
  ({ store, close: closeStore } = await testStore());
  const shop = await seedShop(db.pool, { users: 1500, days: 30, seed: 21, horizonDays: 10 });
  cutoff = shop.timeline.cutoff.toISOString();
  acts = createActivities({ db, store, codeVersion: 'test' });
  await call(mock(), acts.startRun, {
    runId,
    workflowId: 'wf-activities',
    config: { modelName: 'acts', source: { kind: 'events', cutoff, horizonDays: 10 } },
  });
});

afterAll(async () => {
  closeStore?.();
  await db?.close();
});

/** What a test sets of an activity's context: its info (attempt, heartbeat details) and heartbeat listeners. */
interface MockContext {
  info: Partial<Info>;
  on(event: 'heartbeat', listener: (details: unknown) => void): void;
  listeners: ((details: unknown) => void)[];
}
const mock = (info: Partial<Info> = {}): MockContext => {
  const listeners: ((details: unknown) => void)[] = [];
  return { info, listeners, on: (_event, listener) => void listeners.push(listener) };
};

/**
 * Runs an activity as a worker does: in Temporal's mock activity context, named by its activity type, through the
 * workers' interceptor (which records the step's ml.run_steps row and types its errors), with the activity's own
 * argument and result types.
 */
const call = <A extends unknown[], R>(m: MockContext, fn: (...args: A) => Promise<R>, ...args: A): Promise<R> => {
  const activityType = Object.entries(acts).find(([, f]) => (f as unknown) === fn)?.[0] ?? 'unknown';
  const env = new MockActivityEnvironment({ ...m.info, activityType }, { interceptors: [resilientActivities({ db })] });
  for (const l of m.listeners) env.on('heartbeat', l);
  return env.run(fn as never, ...(args as unknown as never[])) as Promise<R>;
};

const steps = (step: string) =>
  db.db.selectFrom('ml.run_steps').selectAll().where('run_id', '=', runId).where('step', '=', step).execute();

describe('data activities', () => {
  let split: SplitOutput;

  it('ingest → clean → split, recording each step once with its attempt; a rerun gives byte-identical splits', async () => {
    const env = mock({ attempt: 3 });
    const ingest = await call(env, acts.ingestSource, { runId, source: { kind: 'events', cutoff, horizonDays: 10 } });
    expect(ingest.rows).toBeGreaterThan(1000);
    expect(ingest.positives).toBeGreaterThan(0);
    expect(ingest.events!.quarantined.duplicate_event_id).toBeGreaterThan(0); // the seeded shop has dirty rows
    const clean = await call(env, acts.cleanData, { runId, modelName: 'acts', mode: 'events', raw: ingest.raw, quality });
    const splitInput = { runId, clean: clean.clean, features: ingest.features, split: { seed: 42, train: 0.8, val: 0.1, test: 0.1 } };
    split = await call(env, acts.splitData, splitInput);
    const again = await call(mock({ attempt: 4 }), acts.splitData, splitInput);
    for (const part of ['train', 'val', 'test'] as const) expect(again[part].sha256).toBe(split[part].sha256);
    expect(again.preprocessing.sha256).toBe(split.preprocessing.sha256);
    expect(split.sizes.train + split.sizes.val + split.sizes.test).toBe(clean.rowsOut);
    // no user lands in two splits
    const [tr, va, te] = await Promise.all([split.train, split.val, split.test].map((r) => store.getFrame(r)));
    const all = [...tr.ids, ...va.ids, ...te.ids];
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(clean.rowsOut);

    for (const step of ['ingest', 'clean']) {
      const rows = await steps(step);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ status: 'succeeded', attempt: 3 });
    }
    // the split ran twice (attempts 3 and 4): one row per execution, none overwritten
    const splitRows = await steps('split');
    expect(splitRows.map((r) => [r.attempt, r.status]).sort()).toEqual([[3, 'succeeded'], [4, 'succeeded']]);

    const ledger = await db.db.selectFrom('ml.data_quality').selectAll().where('run_id', '=', runId).orderBy('stage').execute();
    expect(ledger.map((q) => q.stage)).toEqual(['clean', 'events', 'split']);
    const events = ledger.find((q) => q.stage === 'events')!;
    const reasons = events.quarantined as Record<string, number>;
    expect(Number(events.rows_in) - Number(events.rows_out)).toBe(Object.values(reasons).reduce((a, b) => a + b, 0));
    // the invalid events themselves are kept in S3 with their reason, one row per counted event
    const exported = tableFromIPC(await store.getKey(events.quarantine_uri!.replace(`s3://${store.bucket}/`, '')));
    const exportedReasons: Record<string, number> = {};
    for (const r of exported.getChild('reason')!.toArray() as string[]) exportedReasons[r] = (exportedReasons[r] ?? 0) + 1;
    expect(exportedReasons).toEqual(Object.fromEntries(Object.entries(reasons).filter(([, v]) => v > 0)));
  });

  const dirtyFrame = () => ({
    ids: ['1', '2', '2', '', '5', '6'],
    label: Uint8Array.from([0, 1, 0, 1, 255, 0]),
    numeric: { x: Float64Array.from([1, Infinity, 3, 4, 5, NaN]) },
    categorical: { g: ['a', 'b', null, 'a', 'b', 'a'] },
  });

  it('quarantines rows without a key, duplicates and missing labels, and repairs infinities, counting each', async () => {
    const raw = datasetRef([await store.putFrame(`runs/${runId}/test/raw-dirty.arrow`, dirtyFrame())]);
    const out = await call(mock(), acts.cleanData, {
      runId,
      modelName: 'acts',
      mode: 'events',
      raw,
      quality: { maxQuarantineRate: 1, maxPsi: 100 },
    });
    expect(out.rowsIn).toBe(6);
    expect(out.rowsOut).toBe(3);
    expect(out.quarantined).toEqual({ duplicate_entity_key: 1, null_entity_key: 1, missing_label: 1 });
    expect(out.repaired).toEqual({ 'non_finite:x': 1 });
    const cleaned = await store.getFrame(out.clean.shards[0]);
    expect(cleaned.ids).toEqual(['1', '2', '6']);
    expect(Number.isNaN(cleaned.numeric.x[1])).toBe(true);
    expect(await store.exists(`runs/${runId}/clean/quarantine-00000.arrow`)).toBe(true);
  });

  it('fails the run before training when quarantined rows exceed quality.maxQuarantineRate, after writing the ledger', async () => {
    const raw = datasetRef([await store.putFrame(`runs/${runId}/test/raw-dirty2.arrow`, dirtyFrame())]);
    const err = await call(mock(), acts.cleanData, { runId, modelName: 'acts', mode: 'events', raw, quality }).catch((e) => e);
    expect(err).toMatchObject({ type: 'DataQuality', nonRetryable: true });
    expect(err.message).toMatch(/50\.00 % of entity rows were quarantined.*maxQuarantineRate 0\.05/);
    const ledger = await db.db.selectFrom('ml.data_quality').selectAll().where('run_id', '=', runId).where('stage', '=', 'clean').executeTakeFirstOrThrow();
    expect(Number(ledger.rows_in) - Number(ledger.rows_out)).toBe(3);
  });

  it('refuses duplicate entity keys in table mode', async () => {
    const raw = datasetRef([await store.putFrame(`runs/${runId}/test/raw-dirty3.arrow`, dirtyFrame())]);
    const err = await call(mock(), acts.cleanData, {
      runId,
      modelName: 'acts',
      mode: 'table',
      raw,
      quality: { maxQuarantineRate: 1, maxPsi: 100 },
    }).catch((e) => e);
    expect(err).toMatchObject({ type: 'InvalidData', nonRetryable: true });
    expect(err.message).toMatch(/1 duplicate values \(the rows are in s3:\/\/.*\/clean\/quarantine-00000\.arrow\)/);
    expect(err.message).not.toMatch(/"2"/); // no entity keys in messages that reach the workflow history
  });

  it('fails a split whose label has one class with a non-retryable SingleClassLabel, recorded as failed', async () => {
    const raw = await store.putFrame(`runs/${runId}/test/raw-one-class.arrow`, {
      ids: Array.from({ length: 200 }, (_, i) => String(i)),
      label: new Uint8Array(200),
      numeric: { x: Float64Array.from({ length: 200 }, (_, i) => i) },
      categorical: {},
    });
    const err = await call(mock(), acts.splitData, { runId: runId, clean: datasetRef([raw]), features: [{ name: 'x', kind: 'numeric' as const }], split: { seed: 1, train: 0.8, val: 0.1, test: 0.1 } })
      .catch((e) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'SingleClassLabel', nonRetryable: true });
    expect((await steps('split'))[0]).toMatchObject({ status: 'failed', error_type: 'SingleClassLabel' });
  });

  it('fails ingest for good, naming the cause, when a source table is missing', async () => {
    await db.pool.query('alter table shop.events rename to events_moved');
    try {
      const err = await call(mock(), acts.ingestSource, { runId, source: { kind: 'events', cutoff, horizonDays: 10 } }).catch((e) => e);
      expect(err).toMatchObject({ type: 'SourceSchema', nonRetryable: true });
      expect(err.message).toMatch(/source table does not exist.*shop\.events/);
      expect((await steps('ingest'))[0]).toMatchObject({ status: 'failed', error_type: 'SourceSchema' });
    } finally {
      await db.pool.query('alter table shop.events_moved rename to events');
    }
  });

  describe('training and registry', () => {
    const params = { hiddenUnits: [16], dropout: 0.1, l2: 1e-5, learningRate: 3e-3, batchSize: 256, epochs: 4, classWeight: 'none' as const, patience: 10 };
    const trialInput = (): TrainTrialInput => ({
      runId,
      trialId: 'tx',
      params,
      seed: 99,
      train: split.train,
      val: split.val,
      preprocessing: split.preprocessing,
      backend: 'wasm',
    });

    it('heartbeats every epoch with a checkpoint, and a retry resumes from it to the same model', async () => {
      const heartbeats: unknown[] = [];
      const env = mock();
      env.on('heartbeat', (d: unknown) => heartbeats.push(d));
      const straight = await call(env, acts.trainTrial, trialInput());
      expect(straight.status).toBe('completed');
      expect(heartbeats).toHaveLength(4);
      expect(heartbeats.map((h) => (h as { epoch: number }).epoch)).toEqual([1, 2, 3, 4]);

      // As Temporal would retry it on another worker after a crash in epoch 3: attempt 2, last heartbeat's details.
      const retry = mock({ attempt: 2, heartbeatDetails: heartbeats[1] });
      const resumed = await call(retry, acts.trainTrial, trialInput());
      expect(resumed.resumedFromEpoch).toBe(2);
      expect(resumed.model!.weights.sha256).toBe(straight.model!.weights.sha256);
      const row = await db.db.selectFrom('ml.trials').selectAll().where('run_id', '=', runId).where('trial_id', '=', 'tx').executeTakeFirstOrThrow();
      expect(row).toMatchObject({ status: 'completed', attempt: 2, resumed_from_epoch: 2, epochs_run: 4, backend: 'wasm' });
      // both executions of the trial are kept, each with its own timing
      const tx = (await steps('trial')).filter((s) => s.trial_id === 'tx');
      expect(tx.map((s) => [s.attempt, s.status]).sort()).toEqual([[1, 'succeeded'], [2, 'succeeded']]);
      for (const s of tx) expect(s.duration_ms).not.toBeNull();
    });

    it('a promoted trial whose checkpoint cannot be read fails with its row at that rung, not the rung before', async () => {
      const first = await call(mock(), acts.trainTrial, { ...trialInput(), trialId: 'ty', params: { ...params, epochs: 1 }, rung: 0 });
      expect(first.status).toBe('completed');
      const gone = { ...first.checkpoint!.ref, modelJson: { ...first.checkpoint!.ref.modelJson, key: first.checkpoint!.ref.modelJson.key.replace('epoch-0001', 'epoch-0099') } };
      const err = await call(mock(), acts.trainTrial, { ...trialInput(), trialId: 'ty', params: { ...params, epochs: 2 }, rung: 1, resumeFrom: { ref: gone, epoch: 1 } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      const row = await db.db.selectFrom('ml.trials').selectAll().where('run_id', '=', runId).where('trial_id', '=', 'ty').executeTakeFirstOrThrow();
      expect(row).toMatchObject({ status: 'failed', rung: 1, budget_epochs: 2, resumed_from_epoch: 1 });
      expect(err).toMatchObject({ type: 'ArtifactMissing', nonRetryable: true });
      expect(row.error).toMatch(/ArtifactMissing.*epoch-0099\/model.json does not exist/);
    });

    it('registers a blessed model once: a repeated call returns the same version, a rejected one is refused', async () => {
      const trained = await call(mock(), acts.trainTrial, { ...trialInput(), trialId: 'final', step: 'final' as const });
      const gate = {
        thresholds: [{ metric: 'rocAuc' as const, op: '>=' as const, value: 0.5 }],
        versusBaseline: { enabled: false, alpha: 0.05, requireHigherAuc: false, margin: 0 },
        versusChampion: { enabled: true, alpha: 0.05, minRows: 200, minPositives: 20 },
      };
      const evaluation = await call(mock(), acts.evaluateModel, {
        runId,
        modelName: 'acts',
        model: trained.model!,
        mode: 'events',
        test: split.test,
        val: split.val,
        preprocessing: split.preprocessing,
        gate,
        evaluation: { bootstrapSamples: 50, importanceRepeats: 1 },
      });
      expect(evaluation.blessed).toBe(true);
      const input = {
        runId,
        workflowId: 'wf-activities',
        modelName: 'acts',
        model: trained.model!,
        preprocessing: split.preprocessing,
        evaluation,
        lineage: {
          configHash: 'h',
          codeVersion: 'test',
          dataSha256: split.dataSha256,
          params,
          seed: 99,
          backend: trained.backend,
          cutoff,
          horizonDays: 10,
          source: 'events' as const,
          features: ['x'],
        },
      };
      const first = await call(mock(), acts.registerModel, input);
      const second = await call(mock({ attempt: 2 }), acts.registerModel, input);
      expect(first).toMatchObject({ version: 1, created: true });
      expect(second).toEqual({ ...first, created: false });
      const versions = await db.db.selectFrom('ml.model_versions').selectAll().where('model_name', '=', 'acts').execute();
      expect(versions).toHaveLength(1);
      expect(await store.exists('models/acts/v1/weights.bin')).toBe(true);

      const refused = await call(mock(), acts.registerModel, { ...input, evaluation: { ...evaluation, blessed: false } })
        .catch((e) => e);
      expect(refused).toMatchObject({ type: 'NotBlessed', nonRetryable: true });
    });
  });
});

describe('closing a run', () => {
  // what a trial attempt whose worker was lost leaves behind: the interceptor opened its execution, the activity
  // its trial row, and nothing closed either
  const lostAttempt = async (run: string, trialId: string) => {
    await recordStart(db, { runId: run, step: 'trial', trialId, rung: 0, attempt: 1, detail: () => null }, 'train-queue', 0);
    await db.db
      .insertInto('ml.trials')
      .values({
        run_id: run, trial_id: trialId, status: 'running', params: JSON.stringify({ epochs: 3 }), seed: 1, attempt: 1, resumed_from_epoch: 0,
        curve: '[]', backend: 'wasm', rung: 0, budget_epochs: 3, family: 'mlp', pool: 'default', host: 'lost-host', started_at: new Date(),
      })
      .execute();
  };
  const open = async (run: string) => ({
    steps: await db.db.selectFrom('ml.run_steps').select(['step', 'trial_id', 'status', 'error_type', 'error_message', 'finished_at']).where('run_id', '=', run).orderBy('step').orderBy('trial_id').execute(),
    trials: await db.db.selectFrom('ml.trials').select(['trial_id', 'status', 'error', 'finished_at']).where('run_id', '=', run).orderBy('trial_id').execute(),
  });
  const start = async (run: string) =>
    call(mock(), acts.startRun, { runId: run, workflowId: `wf-${run}`, config: { modelName: 'acts_closed', source: { kind: 'events', cutoff, horizonDays: 10 } } });

  it('finishRun closes the executions and trials a run left running as RunEnded, and leaves the others as they are', async () => {
    const run = `act-ended-${Date.now()}`;
    await start(run);
    await lostAttempt(run, 't001');
    // a trial that completed stays completed
    await lostAttempt(run, 't002');
    await db.db.updateTable('ml.trials').set({ status: 'completed' }).where('run_id', '=', run).where('trial_id', '=', 't002').execute();
    await db.db.updateTable('ml.run_steps').set({ status: 'succeeded', finished_at: new Date() }).where('run_id', '=', run).where('trial_id', '=', 't002').execute();

    await call(mock(), acts.finishRun, { runId: run, status: 'failed', error: { type: 'AllTrialsFailed', message: 'all 2 trials failed' } });
    const { steps, trials } = await open(run);
    expect(steps.map((s) => [s.step, s.trial_id, s.status, s.error_type])).toEqual([
      ['trial', 't001', 'failed', 'RunEnded'],
      ['trial', 't002', 'succeeded', null],
      ['validate', '', 'succeeded', null],
    ]);
    expect(steps[0].error_message).toMatch(/^the run ended \(failed\) with this still running: no outcome was reported/);
    expect(steps[0].finished_at).not.toBeNull();
    expect(trials.map((t) => [t.trial_id, t.status])).toEqual([['t001', 'failed'], ['t002', 'completed']]);
    expect(trials[0].error).toMatch(/^RunEnded: the run ended \(failed\)/);
    expect(trials[0].finished_at).not.toBeNull();
  });

  it('propensity cancel, recording a terminated run that never ran finishRun, closes what it left running too', async () => {
    const run = `act-terminated-${Date.now()}`;
    await start(run);
    await lostAttempt(run, 't001');
    const { recordCancelled } = await import('../../cli/commands/cancel.js');
    // the run has its row, so the client (which reads a run's start input when it has none) is not asked
    const recorded = await recordCancelled(db, undefined as never, { workflowId: `wf-${run}`, runId: run, workflowType: 'trainPipeline', startTime: new Date() }, {
      type: 'Terminated',
      message: 'terminated in the Web UI',
    });
    expect(recorded).toBe('updated');
    const { steps, trials } = await open(run);
    expect(steps.find((s) => s.trial_id === 't001')).toMatchObject({ status: 'failed', error_type: 'RunEnded', error_message: expect.stringMatching(/^the run ended \(terminated\)/) });
    expect(trials).toMatchObject([{ trial_id: 't001', status: 'failed' }]);
    expect((await db.db.selectFrom('ml.pipeline_runs').select(['status', 'error_type']).where('run_id', '=', run).executeTakeFirstOrThrow())).toEqual({ status: 'cancelled', error_type: 'Terminated' });
  });
});

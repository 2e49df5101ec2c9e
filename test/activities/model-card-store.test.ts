import { MockActivityEnvironment } from '@temporalio/testing';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { EvaluateOutput } from '../../activities/evaluate.js';
import type { RegisterInput } from '../../activities/register.js';
import type { SplitOutput } from '../../activities/split.js';
import type { ModelRef } from '../../activities/train.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import { CHARTS, type ModelCard } from '../../report/model-card.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { chartStats, launchChromium } from '../support/chromium.js';
import { freshDatabase, testStore } from '../support/services.js';

// evaluateModel writes the run's model card beside report.json; registerModel publishes it with the version
// filled in beside model.json — on the real Postgres and s3rver of the dev stack.
let db: Db;
let store: ArtifactStore;
let closeStore: () => void;
let browser: Browser | undefined;
let acts: ReturnType<typeof createActivities>;
let split: SplitOutput;
let evaluation: EvaluateOutput;
let model: ModelRef;
let cutoff: string;
const runId = `card-${Date.now()}`;
const modelName = `card_${Date.now()}`;
const params = { hiddenUnits: [8], dropout: 0, l2: 1e-5, learningRate: 5e-3, batchSize: 256, epochs: 3, classWeight: 'none' as const, patience: 10 };

const call = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run(fn as never, ...(args as unknown as never[])) as Promise<R>;
const text = async (key: string) => new TextDecoder().decode(await store.getKey(key));

beforeAll(async () => {
  ({ db } = await freshDatabase('model_card_store'));
  ({ store, close: closeStore } = await testStore());
  const shop = await seedShop(db.pool, { users: 1500, days: 30, seed: 5, horizonDays: 10 });
  cutoff = shop.timeline.cutoff.toISOString();
  acts = createActivities({ db, store, codeVersion: 'card-test' });
  const source = { kind: 'events' as const, cutoff, horizonDays: 10 };
  await call(acts.startRun, { runId, workflowId: 'wf-card', config: { modelName, source } });
  const ingest = await call(acts.ingestSource, { runId, source });
  const clean = await call(acts.cleanData, { runId, modelName, mode: 'events', raw: ingest.raw, quality: { maxQuarantineRate: 0.05, maxPsi: 0.25 } });
  split = await call(acts.splitData, { runId, clean: clean.clean, features: ingest.features, split: { seed: 42, train: 0.8, val: 0.1, test: 0.1 } });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  closeStore?.();
  await db?.close();
});

describe('model card in S3', () => {
  it('evaluateModel stores the card (HTML + JSON) beside report.json, with the lineage and data the run recorded', async () => {
    const trained = await call(acts.trainTrial, {
      runId, trialId: 'final', step: 'final' as const, params, seed: 77,
      train: split.train, val: split.val, preprocessing: split.preprocessing, backend: 'wasm',
    });
    model = trained.model!;
    evaluation = await call(acts.evaluateModel, {
      runId,
      modelName,
      mode: 'events',
      model,
      test: split.test,
      val: split.val,
      preprocessing: split.preprocessing,
      gate: {
        thresholds: [{ metric: 'rocAuc', op: '>=', value: 0.5 }],
        versusBaseline: { enabled: false, alpha: 0.05, requireHigherAuc: false, margin: 0 },
        versusChampion: { enabled: true, alpha: 0.05, minRows: 200, minPositives: 20 },
      },
      evaluation: { bootstrapSamples: 30, importanceRepeats: 1 },
    });
    expect(evaluation.blessed).toBe(true);
    const card = evaluation.card!;
    expect(card.html.key).toBe(`runs/${runId}/eval/model-card.html`);
    expect(card.json.key).toBe(`runs/${runId}/eval/model-card.json`);
    expect(card.uri).toBe(`s3://${store.bucket}/runs/${runId}/eval/model-card.html`);

    const json = await store.getJson<ModelCard>(card.json); // sha256-checked read
    const html = new TextDecoder().decode(await store.get(card.html));
    expect(json.model).toEqual({ name: modelName, version: null });
    for (const k of ['rocAuc', 'prAuc', 'logLoss', 'brier', 'ece', 'f1', 'precision', 'recall', 'threshold'] as const) {
      expect(json.metrics[k]).toBe(evaluation.metrics[k]);
    }
    expect(json.ci95).toEqual(evaluation.ci95);
    expect(json.gate.checks).toEqual(evaluation.checks);
    const report = JSON.parse(await text(evaluation.report.key));
    expect(json.curves).toEqual(report.curves);
    expect(json.deciles).toEqual(report.deciles);
    expect(json.featureImportance).toEqual(report.featureImportance);
    const stored = await db.db.selectFrom('ml.feature_importance').select(['feature', 'importance']).where('run_id', '=', runId).orderBy('rank').execute();
    expect(json.featureImportance.map((f) => f.feature)).toEqual(stored.map((s) => s.feature));

    // lineage and data summary come from what the earlier steps recorded for this run
    const run = await db.db.selectFrom('ml.pipeline_runs').selectAll().where('run_id', '=', runId).executeTakeFirstOrThrow();
    expect(json.lineage).toMatchObject({
      runId, workflowId: 'wf-card', configHash: run.config_hash, codeVersion: 'card-test', dataSha256: split.dataSha256,
      params, seed: 77, backend: 'wasm', cutoff, horizonDays: 10, source: 'events',
    });
    expect(json.lineage.features!.length).toBeGreaterThan(5);
    for (const part of ['train', 'val', 'test'] as const) {
      expect(json.data.splits[part]).toEqual({ rows: split.sizes[part], positiveRate: split.positiveRates[part] });
    }
    const ledger = await db.db.selectFrom('ml.data_quality').selectAll().where('run_id', '=', runId).execute();
    expect(json.data.quality.map((q) => q.stage)).toEqual(['events', 'clean']);
    for (const q of json.data.quality) {
      const row = ledger.find((l) => l.stage === q.stage)!;
      expect(q).toEqual({ stage: q.stage, rowsIn: Number(row.rows_in), rowsOut: Number(row.rows_out), quarantined: row.quarantined });
    }
    expect(json.data.quality[0].rowsIn).toBeGreaterThan(json.data.quality[0].rowsOut); // the seeded shop has dirty events

    expect(html).toContain(`<title>Model card — ${modelName} (not registered)</title>`);
    for (const name of CHARTS) expect(html).toMatch(new RegExp(`<figure data-chart="${name}"[^>]*><figcaption>[^<]*</figcaption><svg`));
  });

  it('registerModel publishes the card beside model.json with the version and lineage filled in, once', async () => {
    const input: RegisterInput = {
      runId,
      workflowId: 'wf-card',
      modelName,
      model,
      preprocessing: split.preprocessing,
      evaluation,
      lineage: {
        configHash: 'hash-from-workflow', codeVersion: 'card-test', dataSha256: split.dataSha256, params, seed: 77,
        backend: 'wasm', cutoff, horizonDays: 10, source: 'events', features: ['a', 'b'],
      },
    };
    const first = await call(acts.registerModel, input);
    const again = await call(acts.registerModel, input);
    expect(again).toEqual({ ...first, created: false });
    const v = first.version;
    const json = JSON.parse(await text(`models/${modelName}/v${v}/model-card.json`)) as ModelCard;
    const html = await text(`models/${modelName}/v${v}/model-card.html`);
    expect(json.model).toEqual({ name: modelName, version: v });
    expect(json.lineage).toMatchObject({ runId, workflowId: 'wf-card', configHash: 'hash-from-workflow', features: ['a', 'b'] });
    const runCard = await store.getJson<ModelCard>(evaluation.card!.json);
    expect(json.metrics).toEqual(runCard.metrics);
    expect(json.curves).toEqual(runCard.curves);
    expect(html).toContain(`<title>Model card — ${modelName} v${v}</title>`);
    expect(html).toContain(`version ${v}`);
    const metadata = JSON.parse(await text(`models/${modelName}/v${v}/metadata.json`));
    expect(metadata.card).toEqual({
      html: `s3://${store.bucket}/models/${modelName}/v${v}/model-card.html`,
      json: `s3://${store.bucket}/models/${modelName}/v${v}/model-card.json`,
    });
    expect(metadata.files).toMatchObject({ card: 'model-card.html', cardJson: 'model-card.json' });

    // the published page, as read back from S3, renders in headless Chromium
    browser = await launchChromium();
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.setContent(html, { waitUntil: 'load' });
    const stats = await chartStats(page);
    expect(errors).toEqual([]);
    for (const name of CHARTS) expect(stats[name].width, name).toBeGreaterThan(250);
    expect(stats.lift.marks.lift).toBe(10);
    expect(stats.importance.marks.importance).toBe(Math.min(20, json.featureImportance.length));
    expect(stats.roc.pathPoints.roc).toBeGreaterThan(10);
  });

  it('registers a model evaluated before cards existed (a replayed history) without one', async () => {
    const { card: _card, ...old } = evaluation;
    await call(acts.startRun, { runId: `${runId}-old`, workflowId: 'wf-card-old', config: { modelName, source: { kind: 'events', cutoff, horizonDays: 10 } } });
    const out = await call(acts.registerModel, {
      runId: `${runId}-old`,
      workflowId: 'wf-card-old',
      modelName,
      model,
      preprocessing: split.preprocessing,
      evaluation: old,
      lineage: {
        configHash: 'h', codeVersion: 'card-test', dataSha256: split.dataSha256, params, seed: 77,
        backend: 'wasm', cutoff, horizonDays: 10, source: 'events', features: [],
      },
    });
    expect(out.created).toBe(true);
    expect(await store.exists(`models/${modelName}/v${out.version}/model.json`)).toBe(true);
    expect(await store.exists(`models/${modelName}/v${out.version}/model-card.html`)).toBe(false);
    const metadata = JSON.parse(await text(`models/${modelName}/v${out.version}/metadata.json`));
    expect(metadata.card).toBeUndefined();
  });
});


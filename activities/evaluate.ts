import { sql } from 'kysely';
import { initBackend } from '../ml/backend.js';
import { compareWithBaseline, compareWithChampion as compareOnUnseen, unseenByChampion, type ChampionSplit, type Comparison } from '../ml/compare.js';
import type { EnsembleGain } from '../ml/ensemble-gain.js';
import { evaluateBinary, type EvaluationMetrics, type EvaluationReport } from '../ml/evaluation.js';
import { evaluateGate, type GateCheck } from '../ml/gate.js';
import { permutationImportance } from '../ml/importance.js';
import { predict } from '../ml/model.js';
import { stepColumns, transform, type Preprocessor } from '../ml/preprocess.js';
import { selectionRule, type SelectionMetric } from '../ml/search.js';
import type { Frame } from '../ml/types.js';
import type { PipelineConfig } from '../pipeline/config.js';
import { modelCardKeys, renderModelCard, type CardLineage, type DataSummary } from '../report/model-card.js';
import { keys, type ArtifactRef } from '../store/artifacts.js';
import type { ActivityDeps } from './deps.js';
import { isTransient } from './errors.js';
import { readModel, readRegistered, type ModelRef } from '../store/models.js';

export interface EvaluateInput {
  runId: string;
  modelName: string;
  mode: 'events' | 'table';
  model: ModelRef;
  /** the logistic-regression baseline trained on the same split */
  baseline?: ModelRef;
  test: ArtifactRef;
  val: ArtifactRef;
  /** the preprocessing the model reads (with its numeric encoding) */
  preprocessing: ArtifactRef;
  /** the baseline's, where it differs from the model's (another numeric encoding); absent: the same */
  baselinePreprocessing?: ArtifactRef;
  gate: PipelineConfig['gate'];
  evaluation: PipelineConfig['evaluation'];
  /** the model shipped: whose trial's params and seed the card shows, its family, an ensemble's members (absent: older histories) */
  shipped?: { trialId: string; family: string; members?: string[]; ensembleGain?: EnsembleGain };
  /** this run's split settings: the champion's are assumed to be these when its lineage lacks them */
  split?: PipelineConfig['split'];
}

export type { Comparison } from '../ml/compare.js';

export interface EvaluateOutput {
  rows: number;
  metrics: Pick<EvaluationMetrics, 'rocAuc' | 'prAuc' | 'logLoss' | 'brier' | 'ece' | 'f1' | 'precision' | 'recall' | 'threshold'>;
  ci95: EvaluationReport['ci95'];
  blessed: boolean;
  checks: GateCheck[];
  comparisons: Comparison[];
  reasons: string[];
  report: ArtifactRef;
  /** the model card (HTML page and its JSON twin) beside report.json; absent in histories recorded before it existed */
  card?: { html: ArtifactRef; json: ArtifactRef; uri: string };
}

/** Event mode reports metrics for new vs returning customers; configured categorical columns are segments too. */
function segmentsOf(test: Frame, input: EvaluateInput): Record<string, (string | null)[]> {
  const names = input.evaluation.segments ?? (input.mode === 'events' ? ['region', 'age_band'] : []);
  const out: Record<string, (string | null)[]> = {};
  for (const name of names) if (test.categorical[name]) out[name] = test.categorical[name];
  const purchases = test.numeric.purchases_90d;
  if (input.mode === 'events' && purchases) out.customer = Array.from(purchases, (v) => (v > 0 ? 'returning' : 'new'));
  return out;
}

/** The evaluate step: the test split scored once, the gate applied, the report and the model card written. */
export function createEvaluateActivities(deps: ActivityDeps) {
  const { db, store } = deps;

  /**
   * The challenger against the current champion on the test rows neither has seen: rows whose entity keys fell in
   * the champion's own train or validation split (recomputed from its split seed and ratios) are left out.
   */
  async function compareWithChampion(input: EvaluateInput, test: Frame, pTest: Float32Array): Promise<Comparison | null> {
    const champion = await db.db
      .selectFrom('ml.model_aliases as a')
      .innerJoin('ml.model_versions as v', (j) => j.onRef('v.model_name', '=', 'a.model_name').onRef('v.version', '=', 'a.version'))
      .leftJoin('ml.pipeline_runs as r', 'r.run_id', 'v.run_id')
      .select(['a.version', 'r.config'])
      .where('a.model_name', '=', input.modelName)
      .where('a.alias', '=', 'champion')
      .executeTakeFirst();
    if (!champion) return null; // the first model of a name is judged against thresholds only
    const against = `champion v${champion.version}`;
    const split = championSplit(champion.config, input.split);
    const rule = input.gate.versusChampion;
    if (!split) {
      const reason = `the ${against}'s lineage has no split settings and this run passed none: its unseen rows cannot be proven`;
      return { check: 'not_worse_than_champion', against, challengerAuc: NaN, otherAuc: NaN, diff: NaN, pValue: null, passed: true, status: 'skipped', skipped: reason, detail: `skipped: ${reason}` };
    }
    const unseen = unseenByChampion(test.ids, split);
    let pChampion: Float32Array;
    try {
      const { artifacts, pre } = await readRegistered(store, input.modelName, champion.version);
      const m = transform(pre, test);
      pChampion = await predict(artifacts, m.x, m.rows, m.cols);
    } catch (err) {
      if (isTransient(err)) throw err;
      // e.g. the feature set changed since the champion was trained: it cannot score these rows
      return {
        check: 'not_worse_than_champion', against, challengerAuc: NaN, otherAuc: NaN, diff: NaN, pValue: null, passed: true,
        status: 'skipped', skipped: (err as Error).message,
        detail: `skipped: the ${against} cannot score this test split (${(err as Error).message})`,
      };
    }
    return compareOnUnseen(test.label, pTest, pChampion, unseen, against, split, rule);
  }

  /**
   * A run's lineage and data summary for its model card, from what the earlier steps recorded (ml.pipeline_runs,
   * ml.trials 'final', ml.run_steps 'split', ml.data_quality), so the evaluation's input stays as it is in recorded
   * histories. Fields stay null for an evaluation outside a recorded run.
   */
  async function cardContext(
    runId: string,
    features: string[],
    test: { rows: number; positiveRate: number },
    shipped?: EvaluateInput['shipped'],
  ): Promise<{ lineage: CardLineage; data: DataSummary }> {
    const [run, final, quality] = await Promise.all([
      db.db
        .selectFrom('ml.pipeline_runs')
        .select(['workflow_id', 'config', 'config_hash', 'code_version', 'cutoff', 'horizon_days'])
        .where('run_id', '=', runId)
        .executeTakeFirst(),
      // the shipped model's trial: 'final', or the baseline when it won on validation (no final training then)
      db.db
        .selectFrom('ml.trials')
        .select(['params', 'seed', 'backend', 'family'])
        .where('run_id', '=', runId)
        .where('trial_id', 'in', shipped ? [shipped.trialId] : ['final', 'baseline'])
        .orderBy(sql`trial_id = 'final'`, 'desc')
        .orderBy('rung', 'desc')
        .executeTakeFirst(),
      db.db.selectFrom('ml.data_quality').select(['stage', 'rows_in', 'rows_out', 'quarantined', 'features']).where('run_id', '=', runId).execute(),
    ]);
    const config = run?.config as { source?: { kind?: 'events' | 'table' }; training?: { seed?: number }; search?: { metric?: SelectionMetric } } | undefined;
    const splitStage = quality.find((q) => q.stage === 'split')?.features as
      | { sizes?: Record<'train' | 'val' | 'test', number>; positiveRates?: Record<'train' | 'val' | 'test', number>; dataSha256?: string }
      | undefined;
    const splits: DataSummary['splits'] = splitStage?.sizes
      ? Object.fromEntries((['train', 'val', 'test'] as const).map((p) => [p, { rows: splitStage.sizes![p], positiveRate: splitStage.positiveRates?.[p] ?? null }]))
      : { test };
    const order = ['events', 'clean'];
    return {
      lineage: {
        runId,
        workflowId: run?.workflow_id ?? null,
        configHash: run?.config_hash ?? null,
        codeVersion: run?.code_version ?? deps.codeVersion,
        dataSha256: splitStage?.dataSha256 ?? null,
        params: (final?.params as Record<string, unknown> | undefined) ?? null,
        seed: final ? Number(final.seed) : (config?.training?.seed ?? null),
        backend: final?.backend ?? null,
        cutoff: run?.cutoff ? new Date(run.cutoff).toISOString() : null,
        horizonDays: run?.horizon_days ?? null,
        source: config?.source?.kind ?? null,
        features,
        selection: config?.search?.metric ? selectionRule(config.search.metric) : null,
        family: shipped?.family ?? final?.family ?? null,
        ...(shipped?.members && { members: shipped.members }),
        ...(shipped?.ensembleGain && { ensembleGain: shipped.ensembleGain }),
      },
      data: {
        splits,
        quality: quality
          .filter((q) => order.includes(q.stage))
          .sort((a, b) => order.indexOf(a.stage) - order.indexOf(b.stage))
          .map((q) => ({ stage: q.stage, rowsIn: Number(q.rows_in), rowsOut: Number(q.rows_out), quarantined: q.quarantined })),
      },
    };
  }

  return {
    /**
     * Scores the held-out test split once and applies the gate — thresholds, the logistic baseline, the current
     * champion on the same rows (DeLong) — like TFX's Evaluator blessing: a failed gate is a result, not an error.
     */
    async evaluateModel(input: EvaluateInput): Promise<EvaluateOutput> {
      await initBackend('auto');
      const [artifacts, test, val, pre] = await Promise.all([
        readModel(store, input.model),
        store.getFrame(input.test),
        store.getFrame(input.val),
        store.getJson<Preprocessor>(input.preprocessing),
      ]);
      const mTest = transform(pre, test);
      const mVal = transform(pre, val);
      const pTest = await predict(artifacts, mTest.x, mTest.rows, mTest.cols);
      const pVal = await predict(artifacts, mVal.x, mVal.rows, mVal.cols);
      // The decision threshold is chosen on validation data, never on the test rows it is judged on.
      const threshold = evaluateBinary(val.label, pVal, { threshold: 'maxF1', bootstrap: false, curvePoints: 2 }).metrics.threshold;
      const report = evaluateBinary(test.label, pTest, {
        threshold,
        segments: segmentsOf(test, input),
        bootstrap: input.evaluation.bootstrapSamples > 0 ? { samples: input.evaluation.bootstrapSamples, seed: 0 } : false,
      });
      const m = report.metrics;
      const metrics = {
        rocAuc: m.rocAuc, prAuc: m.prAuc, logLoss: m.logLoss, brier: m.brier, ece: m.ece,
        f1: m.f1, precision: m.precision, recall: m.recall, threshold: m.threshold,
      };
      const gate = evaluateGate(metrics, input.gate.thresholds);
      const comparisons: Comparison[] = [];
      if (input.gate.versusBaseline.enabled && input.baseline && input.baseline.weights.sha256 === input.model.weights.sha256) {
        comparisons.push({
          check: 'beats_baseline', against: 'baseline', challengerAuc: NaN, otherAuc: NaN, diff: NaN, pValue: null, passed: true, status: 'skipped',
          skipped: 'the model is the logistic baseline (it was as good as the best trial on validation)',
          detail: 'skipped: the model is the logistic baseline, chosen because it was as good as the best trial on validation',
        });
      } else if (input.gate.versusBaseline.enabled && input.baseline) {
        const own = input.baselinePreprocessing && input.baselinePreprocessing.sha256 !== input.preprocessing.sha256
          ? transform(await store.getJson<Preprocessor>(input.baselinePreprocessing), test)
          : mTest;
        const b = await predict(await readModel(store, input.baseline), own.x, own.rows, own.cols);
        comparisons.push(compareWithBaseline(test.label, pTest, b, input.gate.versusBaseline));
      }
      // The champion is always scored on the unseen rows (ml.metric_trends compares like with like); it gates only
      // when gate.versusChampion.enabled.
      const vsChampion = await compareWithChampion(input, test, pTest);
      if (vsChampion) comparisons.push(input.gate.versusChampion.enabled ? vsChampion : { ...vsChampion, informational: true });
      const gating = comparisons.filter((c) => !c.informational);
      const reasons = [...gate.reasons, ...gating.filter((c) => !c.passed).map((c) => `${c.check}: ${c.detail}`)];
      const blessed = gate.blessed && gating.every((c) => c.passed);

      const importance =
        input.evaluation.importanceRepeats > 0
          ? (await permutationImportance(artifacts, pre, mVal, val.label, 17, input.evaluation.importanceRepeats)).features
          : [];
      const reportBody = { runId: input.runId, modelName: input.modelName, split: 'test', blessed, reasons, checks: gate.checks, comparisons, ...report, featureImportance: importance };
      const reportRef = await store.putJson(keys.evalReport(input.runId), reportBody);
      const context = await cardContext(input.runId, pre.steps.flatMap((s) => stepColumns(s).map((c) => c.name)), { rows: m.rows, positiveRate: m.positiveRate }, input.shipped);
      const rendered = await renderModelCard({
        modelName: input.modelName,
        version: null,
        createdAt: new Date().toISOString(),
        report,
        gate: { blessed, reasons, checks: gate.checks, comparisons },
        featureImportance: importance,
        ...context,
      });
      const cardKeys = modelCardKeys.run(input.runId);
      const [cardHtml, cardJson] = await Promise.all([
        store.put(cardKeys.html, new TextEncoder().encode(rendered.html), 'text/html; charset=utf-8'),
        store.putJson(cardKeys.json, rendered.json),
      ]);
      const card = { html: cardHtml, json: cardJson, uri: store.uri(cardHtml.key) };
      const values = {
        run_id: input.runId,
        model_name: input.modelName,
        rows: m.rows,
        metrics: JSON.stringify({ ...metrics, ci95: report.ci95 }),
        blessed,
        checks: JSON.stringify(gate.checks),
        reasons: JSON.stringify(reasons),
        comparisons: JSON.stringify(comparisons),
        report_uri: store.uri(reportRef.key),
      };
      await db.db.transaction().execute(async (trx) => {
        await trx.insertInto('ml.evaluations').values(values).onConflict((oc) => oc.column('run_id').doUpdateSet(values)).execute();
        await trx.deleteFrom('ml.feature_importance').where('run_id', '=', input.runId).execute();
        if (importance.length) {
          await trx
            .insertInto('ml.feature_importance')
            .values(importance.map((f, i) => ({ run_id: input.runId, feature: f.feature, kind: f.kind, importance: f.aucDrop, rank: i + 1 })))
            .execute();
        }
      });
      return { rows: m.rows, metrics, ci95: report.ci95, blessed, checks: gate.checks, comparisons, reasons, report: reportRef, card };
    
    },
  };
}

/** The champion's split settings from its run's stored config, else (older lineage) this run's, else none. */
function championSplit(storedConfig: unknown, current: PipelineConfig['split'] | undefined): ChampionSplit | null {
  const s = (storedConfig as { split?: { seed?: unknown; train?: unknown; val?: unknown; test?: unknown } } | null)?.split;
  if (s && typeof s.seed === 'number' && typeof s.train === 'number' && typeof s.val === 'number' && typeof s.test === 'number') {
    return { seed: s.seed, ratios: { train: s.train, val: s.val, test: s.test }, source: 'lineage' };
  }
  return current ? { seed: current.seed, ratios: { train: current.train, val: current.val, test: current.test }, source: 'assumed' } : null;
}

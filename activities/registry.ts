import { sql } from 'kysely';
import { evaluateGate, type GateCheck } from '../ml/gate.js';
import { brier, logLoss, prAuc, rocAuc } from '../ml/metrics.js';
import { predict } from '../ml/model.js';
import { transform, type Preprocessor } from '../ml/preprocess.js';
import type { MlpParams } from '../ml/types.js';
import { initBackend } from '../ml/backend.js';
import { keys, type ArtifactRef } from '../store/artifacts.js';
import type { PipelineConfig } from './config.js';
import type { ActivityDeps } from './deps.js';
import { ErrorType, PipelineError } from './errors.js';
import { recordStep } from './steps.js';
import { readModel, type ModelRef } from './train.js';

export interface EvaluateInput {
  runId: string;
  modelName: string;
  model: ModelRef;
  test: ArtifactRef;
  preprocessing: ArtifactRef;
  gate: PipelineConfig['gate'];
}
export interface EvaluateOutput {
  rows: number;
  metrics: { rocAuc: number; prAuc: number; logLoss: number; brier: number };
  blessed: boolean;
  checks: GateCheck[];
  reasons: string[];
  report: ArtifactRef;
}

export interface RegisterInput {
  runId: string;
  workflowId: string;
  modelName: string;
  model: ModelRef;
  preprocessing: ArtifactRef;
  evaluation: EvaluateOutput;
  lineage: {
    configHash: string;
    codeVersion: string;
    dataSha256: string;
    params: MlpParams;
    seed: number;
    backend: string;
    cutoff: string | null;
    horizonDays: number | null;
    source: 'events' | 'table';
    features: string[];
  };
}
export interface RegisterOutput {
  version: number;
  uri: string;
  /** false when this run had already registered its model (a retried or replayed call) */
  created: boolean;
}

export function createRegistryActivities(deps: ActivityDeps) {
  const { db, store } = deps;
  return {
    /** Scores the held-out test split once and applies the gate; a failed gate is a result, not an error. */
    async evaluateModel(input: EvaluateInput): Promise<EvaluateOutput> {
      return recordStep(
        deps,
        { runId: input.runId, step: 'evaluate' },
        async () => {
          await initBackend('auto');
          const [artifacts, test, pre] = await Promise.all([
            readModel(store, input.model),
            store.getFrame(input.test),
            store.getJson<Preprocessor>(input.preprocessing),
          ]);
          const m = transform(pre, test);
          const p = await predict(artifacts, m.x, m.rows, m.cols);
          const metrics = {
            rocAuc: rocAuc(test.label, p),
            prAuc: prAuc(test.label, p),
            logLoss: logLoss(test.label, p),
            brier: brier(test.label, p),
          };
          const gate = evaluateGate(metrics, input.gate.thresholds);
          const reportBody = {
            runId: input.runId,
            modelName: input.modelName,
            split: 'test',
            rows: m.rows,
            positives: test.label.reduce((a, b) => a + b, 0),
            metrics,
            ...gate,
          };
          const report = await store.putJson(keys.evalReport(input.runId), reportBody);
          const values = {
            run_id: input.runId,
            model_name: input.modelName,
            rows: m.rows,
            metrics: JSON.stringify(metrics),
            blessed: gate.blessed,
            checks: JSON.stringify(gate.checks),
            reasons: JSON.stringify(gate.reasons),
            report_uri: store.uri(report.key),
          };
          await db.db
            .insertInto('ml.evaluations')
            .values(values)
            .onConflict((oc) => oc.column('run_id').doUpdateSet(values))
            .execute();
          return { rows: m.rows, metrics, blessed: gate.blessed, checks: gate.checks, reasons: gate.reasons, report };
        },
        (r) => ({ metrics: r.metrics, blessed: r.blessed, reasons: r.reasons }),
      );
    },

    /**
     * Publishes a blessed model as the next immutable version. Idempotent per run: a second call returns the
     * version the first one created. Postgres decides the number (advisory lock + unique key), not S3.
     */
    async registerModel(input: RegisterInput): Promise<RegisterOutput> {
      return recordStep(
        deps,
        { runId: input.runId, step: 'register' },
        async () => {
          if (!input.evaluation.blessed) {
            throw new PipelineError(ErrorType.NotBlessed, `run ${input.runId}: the model was not blessed; refusing to register it`);
          }
          return db.db.transaction().execute(async (trx) => {
            await sql`select pg_advisory_xact_lock(hashtext(${'model:' + input.modelName}))`.execute(trx);
            const existing = await trx
              .selectFrom('ml.model_versions')
              .select(['version', 'uri'])
              .where('model_name', '=', input.modelName)
              .where('run_id', '=', input.runId)
              .executeTakeFirst();
            if (existing) return { version: existing.version, uri: existing.uri, created: false };
            const { next } = await trx
              .selectFrom('ml.model_versions')
              .select(sql<number>`coalesce(max(version), 0) + 1`.as('next'))
              .where('model_name', '=', input.modelName)
              .executeTakeFirstOrThrow();
            const version = Number(next);
            const key = (file: string) => keys.modelFile(input.modelName, version, file);
            const [modelJson, weights, preprocessing] = await Promise.all([
              store.get(input.model.modelJson),
              store.get(input.model.weights),
              store.get(input.preprocessing),
            ]);
            const metadata = {
              name: input.modelName,
              version,
              runId: input.runId,
              workflowId: input.workflowId,
              metrics: input.evaluation.metrics,
              gate: { blessed: true, checks: input.evaluation.checks },
              lineage: input.lineage,
              files: { model: 'model.json', weights: 'weights.bin', preprocessing: 'preprocessing.json' },
            };
            await Promise.all([
              store.put(key('model.json'), modelJson, 'application/json'),
              store.put(key('weights.bin'), weights),
              store.put(key('preprocessing.json'), preprocessing, 'application/json'),
              store.putJson(key('metadata.json'), metadata),
            ]);
            const uri = store.uri(key('model.json'));
            await trx
              .insertInto('ml.model_versions')
              .values({
                model_name: input.modelName,
                version,
                run_id: input.runId,
                workflow_id: input.workflowId,
                uri,
                config_hash: input.lineage.configHash,
                code_version: input.lineage.codeVersion,
                data_sha256: input.lineage.dataSha256,
                params: JSON.stringify(input.lineage.params),
                seed: input.lineage.seed,
                backend: input.lineage.backend,
                metrics: JSON.stringify(input.evaluation.metrics),
              })
              .execute();
            // A blessed model becomes the champion; the alias history says who moved it and why.
            const current = await trx
              .selectFrom('ml.model_aliases')
              .select('version')
              .where('model_name', '=', input.modelName)
              .where('alias', '=', 'champion')
              .executeTakeFirst();
            const by = `pipeline:${input.workflowId}`;
            await trx
              .insertInto('ml.model_aliases')
              .values({ model_name: input.modelName, alias: 'champion', version, updated_by: by })
              .onConflict((oc) =>
                oc.columns(['model_name', 'alias']).doUpdateSet({ version, updated_by: by, updated_at: sql`now()` }),
              )
              .execute();
            await trx
              .insertInto('ml.model_alias_history')
              .values({
                model_name: input.modelName,
                alias: 'champion',
                from_version: current?.version ?? null,
                to_version: version,
                changed_by: by,
                reason: `blessed by run ${input.runId}`,
              })
              .execute();
            return { version, uri, created: true };
          });
        },
        (r) => r,
      );
    },
  };
}

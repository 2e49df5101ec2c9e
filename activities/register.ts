import { familyOf } from '../ml/search.js';
import type { MlpParams } from '../ml/types.js';
import { registerVersion } from '../registry/registry.js';
import { MODEL_CARD_FILES, modelCardKeys, renderModelCardHtml, type ModelCard } from '../report/model-card.js';
import { keys, type ArtifactRef } from '../store/artifacts.js';
import type { ActivityDeps } from './deps.js';
import { ErrorType, PipelineError } from './errors.js';
import type { EvaluateOutput } from './evaluate.js';
import type { ModelRef } from './train.js';

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
    /** 'logistic' when the baseline won on validation, 'ensemble', else the network's (absent in older histories: from params) */
    family?: string;
    /** an ensemble's member trials, in the order they were chosen */
    members?: string[];
    /** a resumed run (`propensity run resume`): the failed run whose steps it reused, also in the model card */
    resumedFrom?: { runId: string; workflowId: string; steps: string[]; trials?: string[] };
  };
  /** approval.required: register as pending_approval and leave `champion` where it is */
  approvalRequired?: boolean;
}
export interface RegisterOutput {
  version: number;
  uri: string;
  /** false when this run had already registered its model (a retried or replayed call) */
  created: boolean;
}

/** The register step: a blessed model becomes the next immutable version, through the registry's one write path. */
export function createRegisterActivities(deps: ActivityDeps) {
  const { db, store } = deps;

  /** The registered version's card: the run's card with the version and the registration's lineage filled in. */
  async function registeredCard(input: RegisterInput, version: number): Promise<{ html: string; json: ModelCard } | null> {
    if (!input.evaluation.card) return null; // evaluated before model cards existed
    const card = await store.getJson<ModelCard>(input.evaluation.card.json);
    const json: ModelCard = {
      ...card,
      model: { name: input.modelName, version },
      lineage: { ...card.lineage, ...input.lineage, runId: input.runId, workflowId: input.workflowId, params: { ...input.lineage.params } },
    };
    return { html: await renderModelCardHtml(json), json };
  }

  return {
    /**
     * Publishes a blessed model as the next immutable version. Idempotent per run: a second call returns the
     * version the first one created. Postgres decides the number (the registry's lock and a unique key), not S3;
     * the model files are copied server-side (S3 CopyObject), never downloaded and re-uploaded under the lock.
     */
    async registerModel(input: RegisterInput): Promise<RegisterOutput> {
      if (!input.evaluation.blessed) {
        throw new PipelineError(ErrorType.NotBlessed, `run ${input.runId}: the model was not blessed; refusing to register it`);
      }
      return registerVersion(db.db, {
        modelName: input.modelName,
        runId: input.runId,
        by: `pipeline:${input.workflowId}`,
        reason: `blessed by run ${input.runId}`,
        approvalRequired: input.approvalRequired === true,
        publish: async (version) => {
          const key = (file: string) => keys.modelFile(input.modelName, version, file);
          const card = await registeredCard(input, version);
          const cardKeys = modelCardKeys.model(input.modelName, version);
          const metadata = {
            name: input.modelName,
            version,
            runId: input.runId,
            workflowId: input.workflowId,
            metrics: input.evaluation.metrics,
            gate: { blessed: true, checks: input.evaluation.checks },
            lineage: input.lineage,
            files: {
              model: 'model.json', weights: 'weights.bin', preprocessing: 'preprocessing.json',
              ...(card && { card: MODEL_CARD_FILES.html, cardJson: MODEL_CARD_FILES.json }),
            },
            ...(card && { card: { html: store.uri(cardKeys.html), json: store.uri(cardKeys.json) } }),
          };
          await Promise.all([
            ...(card
              ? [store.put(cardKeys.html, new TextEncoder().encode(card.html), 'text/html; charset=utf-8'), store.putJson(cardKeys.json, card.json)]
              : []),
            store.copy(input.model.modelJson, key('model.json'), 'application/json'),
            store.copy(input.model.weights, key('weights.bin')),
            store.copy(input.preprocessing, key('preprocessing.json'), 'application/json'),
            store.putJson(key('metadata.json'), metadata),
          ]);
          return store.uri(key('model.json'));
        },
        row: (version, uri) => ({
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
          family: input.lineage.family ?? familyOf(input.lineage.params),
          members: input.lineage.members ? JSON.stringify(input.lineage.members) : null,
          metrics: JSON.stringify(input.evaluation.metrics),
          ...(input.approvalRequired && { status: 'pending_approval' as const }),
        }),
      });
    },
  };
}

import { initBackend } from '../ml/backend.js';
import { buildEnsembleModel, selectEnsemble, type EnsembleStep } from '../ml/ensemble.js';
import { predict } from '../ml/model.js';
import { transform, type Preprocessor } from '../ml/preprocess.js';
import type { SelectionMetric } from '../ml/search.js';
import type { ArtifactRef } from '../store/artifacts.js';
import { readModel, writeModel, type ModelRef } from '../store/models.js';
import type { ActivityDeps } from './deps.js';

export interface EnsembleMember {
  trialId: string;
  model: ModelRef;
  /** the preprocessing the member reads; members of one ensemble share it */
  preprocessing: ArtifactRef;
}

export interface BuildEnsembleInput {
  runId: string;
  /** completed candidates, best first by the search's rule; the first is the single model the ensemble must beat */
  candidates: EnsembleMember[];
  val: ArtifactRef;
  metric: SelectionMetric;
  /** at most this many members */
  maxMembers: number;
  /** a member is added only when it raises the validation metric by more than this */
  minGain: number;
}

export interface BuildEnsembleOutput {
  /** the chosen members, in the order the greedy selection added them (one: no ensemble beat the single model) */
  members: string[];
  /** the averaged model (runs/<run>/final/model); absent when one member was chosen: that member's model is the model */
  model?: ModelRef;
  preprocessing: ArtifactRef;
  val: { auc: number; prAuc: number; logLoss: number };
  /** the single best candidate's validation metrics, for the record */
  single: { trialId: string; auc: number; prAuc: number; logLoss: number };
  steps: EnsembleStep[];
  /** candidates left out because they read another preprocessing (numeric encoding) than the first */
  skipped: number;
  seconds: number;
}

export function createEnsembleActivities(deps: ActivityDeps) {
  const { store } = deps;
  return {
    /**
     * Greedy ensemble selection on the validation split over the search's trained models (no training: each
     * member's weights are reused as its trial left them), then one model that averages the chosen members.
     */
    async buildEnsemble(input: BuildEnsembleInput): Promise<BuildEnsembleOutput> {
      const started = Date.now();
      await initBackend('auto');
      const first = input.candidates[0];
      if (!first) throw new Error('buildEnsemble: no completed candidates');
      // members share one input matrix: candidates that read another encoding sit this ensemble out
      const usable = input.candidates.filter((c) => c.preprocessing.sha256 === first.preprocessing.sha256);
      const [val, pre] = await Promise.all([store.getFrame(input.val), store.getJson<Preprocessor>(first.preprocessing)]);
      const m = transform(pre, val);
      const artifacts = await Promise.all(usable.map((c) => readModel(store, c.model)));
      const preds: Float32Array[] = [];
      for (const a of artifacts) preds.push(await predict(a, m.x, m.rows, m.cols));
      const selection = selectEnsemble(
        val.label,
        usable.map((c, i) => ({ id: c.trialId, val: preds[i] })),
        { maxMembers: input.maxMembers, minGain: input.minGain, metric: input.metric },
      );
      const single = selectEnsemble(val.label, [{ id: first.trialId, val: preds[0] }], { maxMembers: 1, metric: input.metric });
      let model: ModelRef | undefined;
      if (selection.members.length > 1) {
        const chosen = selection.members.map((id) => artifacts[usable.findIndex((c) => c.trialId === id)]);
        model = await writeModel(store, (file) => `runs/${input.runId}/final/model/${file}`, await buildEnsembleModel(chosen));
      }
      return {
        members: selection.members,
        ...(model && { model }),
        preprocessing: first.preprocessing,
        val: selection.val,
        single: { trialId: first.trialId, ...single.val },
        steps: selection.steps,
        skipped: input.candidates.length - usable.length,
        seconds: (Date.now() - started) / 1000,
      };
    },
  };
}


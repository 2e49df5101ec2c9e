import { initBackend } from '../ml/backend.js';
import { buildEnsembleModel, selectEnsemble, validationMetrics, type EnsembleStep } from '../ml/ensemble.js';
import type { EnsembleGain } from '../ml/ensemble-gain.js';
import { predict } from '../ml/model.js';
import { blockSlices, transform, withBlocks, type Preprocessor } from '../ml/preprocess.js';
import type { SelectionMetric } from '../ml/search.js';
import { keys, type ArtifactRef } from '../store/artifacts.js';
import { readModel, writeModel, type ModelRef } from '../store/models.js';
import type { ActivityDeps } from './deps.js';

export interface EnsembleMember {
  trialId: string;
  model: ModelRef;
  /** the preprocessing the member reads (members reading different ones are joined side by side) */
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
  /** the ensemble's validation ROC-AUC gain over the single model, with its noise; absent: one member, or older histories */
  gain?: EnsembleGain;
  /** distinct preprocessings (numeric encodings) among the candidates */
  encodings: number;
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
      // each distinct preprocessing (numeric encoding) once: its validation matrix serves every candidate reading it
      const refs = [...new Map(input.candidates.map((c) => [c.preprocessing.sha256, c.preprocessing])).values()];
      const val = await store.getFrame(input.val);
      const pres = new Map<string, Preprocessor>();
      const matrices = new Map<string, ReturnType<typeof transform>>();
      for (const ref of refs) {
        const pre = await store.getJson<Preprocessor>(ref);
        pres.set(ref.sha256, pre);
        matrices.set(ref.sha256, transform(pre, val));
      }
      const artifacts = await Promise.all(input.candidates.map((c) => readModel(store, c.model)));
      const preds: Float32Array[] = [];
      for (const [i, c] of input.candidates.entries()) {
        const m = matrices.get(c.preprocessing.sha256)!;
        preds.push(await predict(artifacts[i], m.x, m.rows, m.cols));
      }
      const selection = selectEnsemble(
        val.label,
        input.candidates.map((c, i) => ({ id: c.trialId, val: preds[i] })),
        { maxMembers: input.maxMembers, minGain: input.minGain, metric: input.metric },
      );
      const chosen = selection.members.map((id) => input.candidates.findIndex((c) => c.trialId === id));
      let model: ModelRef | undefined;
      let preprocessing = first.preprocessing;
      if (chosen.length > 1) {
        // members reading different encodings: the ensemble reads their blocks side by side, each member its own
        const used = [...new Set(chosen.map((i) => input.candidates[i].preprocessing.sha256))];
        let slices: { start: number; width: number }[] | undefined;
        if (used.length > 1) {
          const merged = withBlocks(pres.get(used[0])!, used.map((sha) => pres.get(sha)!.encoding));
          const blocks = blockSlices(merged);
          slices = chosen.map((i) => blocks[used.indexOf(input.candidates[i].preprocessing.sha256)]);
          preprocessing = await store.putJson(keys.modelPreprocessing(input.runId, 'final'), merged);
        } else {
          preprocessing = input.candidates[chosen[0]].preprocessing;
        }
        model = await writeModel(store, (file) => `runs/${input.runId}/final/model/${file}`, await buildEnsembleModel(chosen.map((i) => artifacts[i]), slices));
      }
      return {
        members: selection.members,
        ...(model && { model }),
        preprocessing,
        val: selection.val,
        single: { trialId: first.trialId, ...validationMetrics(val.label, preds[0]) },
        steps: selection.steps,
        ...(selection.gain && { gain: selection.gain }),
        encodings: refs.length,
        seconds: (Date.now() - started) / 1000,
      };
    },
  };
}


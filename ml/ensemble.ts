/**
 * Ensembles of trained networks: which members (greedy forward selection on the validation split, Caruana et al.
 * 2004) and one model that averages them (one model.json, one predict path, so evaluation, importance, scoring and
 * the registry treat an ensemble like any model).
 */
import * as tf from '@tensorflow/tfjs';
import { MlError, ML_ERROR } from './errors.js';
import { ensembleGain, type EnsembleGain } from './ensemble-gain.js';
import { logLoss, prAuc, rocAuc } from './metrics.js';
import { loadModel, serializeModel } from './model.js';
import type { ModelArtifacts } from './types.js';

export interface EnsembleCandidate {
  id: string;
  /** the candidate's P(y = 1) on every validation row, in the same row order as the labels */
  val: Float32Array;
}

export interface EnsembleStep {
  /** members after this step, in the order they were added */
  members: string[];
  /** the averaged prediction's validation value of the selection metric */
  value: number;
}

export interface EnsembleSelection {
  members: string[];
  /** validation metrics of the averaged prediction of `members` */
  val: { auc: number; prAuc: number; logLoss: number };
  /** each step of the greedy search, from the first candidate on */
  steps: EnsembleStep[];
  /** the ensemble against the single best candidate on validation (absent: one member chosen, or too few positives) */
  gain?: EnsembleGain;
}

/** The selection metrics of the search (ml/search.ts SelectionMetric); log loss is lower-is-better. */
export type EnsembleMetric = 'valAuc' | 'valPrAuc' | 'valLogLoss';
const METRIC: Record<EnsembleMetric, { value: (y: ArrayLike<number>, p: Float32Array) => number; higherIsBetter: boolean }> = {
  valAuc: { value: rocAuc, higherIsBetter: true },
  valPrAuc: { value: prAuc, higherIsBetter: true },
  valLogLoss: { value: logLoss, higherIsBetter: false },
};

/** The validation metrics an ensemble step records for a prediction (ROC-AUC, PR-AUC, log loss). */
export const validationMetrics = (y: ArrayLike<number>, p: Float32Array): EnsembleSelection['val'] => ({ auc: rocAuc(y, p), prAuc: prAuc(y, p), logLoss: logLoss(y, p) });

/** The mean of some candidates' predictions. */
export function averagePredictions(preds: Float32Array[]): Float32Array {
  if (preds.length === 0) throw new MlError(ML_ERROR.InvalidConfig, 'an ensemble needs at least one member');
  const out = new Float32Array(preds[0].length);
  for (const p of preds) {
    if (p.length !== out.length) throw new MlError(ML_ERROR.InvalidData, `member predictions have ${p.length} rows, expected ${out.length}`);
    for (let i = 0; i < p.length; i++) out[i] += p[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= preds.length;
  return out;
}

/**
 * Greedy forward selection without replacement (Caruana et al. 2004, equal weights): start from the first
 * candidate (the search's best single model: pass candidates best first), then add whichever candidate improves
 * the averaged prediction's validation metric the most, while one improves it by more than `minGain` and there are
 * fewer than `maxMembers`. Ties go to the earlier candidate. Deterministic; validation rows only, so the test split
 * stays unseen for the gate. The chosen ensemble's validation value is optimistic (it was chosen on those rows),
 * as the best trial's is.
 */
export function selectEnsemble(
  y: ArrayLike<number>,
  candidates: EnsembleCandidate[],
  { maxMembers, minGain = 1e-4, metric = 'valAuc' }: { maxMembers: number; minGain?: number; metric?: EnsembleMetric },
): EnsembleSelection {
  if (candidates.length === 0) throw new MlError(ML_ERROR.InvalidConfig, 'no candidates to build an ensemble from');
  if (!(Number.isInteger(maxMembers) && maxMembers >= 1)) throw new MlError(ML_ERROR.InvalidConfig, `maxMembers must be an integer >= 1, got ${maxMembers}`);
  for (const c of candidates) {
    if (c.val.length !== y.length) throw new MlError(ML_ERROR.InvalidData, `candidate ${c.id} has ${c.val.length} validation predictions for ${y.length} labels`);
  }
  const { value, higherIsBetter } = METRIC[metric];
  const gain = (v: number, than: number) => (higherIsBetter ? v - than : than - v);
  const n = y.length;
  const chosen = [0];
  const sum = Float64Array.from(candidates[0].val);
  let current = value(y, candidates[0].val);
  const steps: EnsembleStep[] = [{ members: [candidates[0].id], value: current }];
  const mean = new Float32Array(n);
  while (chosen.length < Math.min(maxMembers, candidates.length)) {
    let bestI = -1;
    let bestValue = NaN;
    for (let i = 0; i < candidates.length; i++) {
      if (chosen.includes(i)) continue;
      const v = candidates[i].val;
      const k = chosen.length + 1;
      for (let r = 0; r < n; r++) mean[r] = (sum[r] + v[r]) / k;
      const value_ = value(y, mean);
      if (bestI < 0 || gain(value_, bestValue) > 0) [bestI, bestValue] = [i, value_];
    }
    if (bestI < 0 || !(gain(bestValue, current) > minGain)) break;
    chosen.push(bestI);
    for (let r = 0; r < n; r++) sum[r] += candidates[bestI].val[r];
    current = bestValue;
    steps.push({ members: chosen.map((i) => candidates[i].id), value: current });
  }
  const p = averagePredictions(chosen.map((i) => candidates[i].val));
  const overSingle = chosen.length > 1 ? ensembleGain(y, p, candidates[0]) : undefined;
  return { members: chosen.map((i) => candidates[i].id), val: validationMetrics(y, p), steps, ...(overSingle && { gain: overSingle }) };
}

type LayerFactory = [new (cfg: unknown) => tf.layers.Layer, (cls: unknown, cfg: unknown) => tf.layers.Layer];

/**
 * One model averaging the members' probabilities: each member's layers are rebuilt under a `m<k>_` prefix on a
 * shared input (so weight names stay unique in one weights.bin) and an Average layer joins their outputs. Built
 * from stock layers only, so any tfjs loader (and our predict) reads it. Members are single-input, single-output
 * networks over the same input columns, sequential (the MLP) or functional (the sequence model), so one ensemble
 * may mix the families: each layer is rebuilt in order and applied to the rebuilt outputs of its inbound layers,
 * the member's input standing for the shared one. One member: returned as it is.
 */
export async function buildEnsembleModel(
  members: ModelArtifacts[],
  /**
   * members that read different preprocessings (numeric encodings): the ensemble reads their matrices side by side
   * (ml/preprocess.ts withBlocks) and member k its own `slices[k]` of those columns; absent: all read every column
   */
  slices?: { start: number; width: number }[],
): Promise<ModelArtifacts> {
  if (members.length === 0) throw new MlError(ML_ERROR.InvalidConfig, 'an ensemble needs at least one member');
  if (members.length === 1 && !slices) return members[0];
  if (slices && slices.length !== members.length) throw new MlError(ML_ERROR.InvalidConfig, `${members.length} members but ${slices.length} input slices`);
  const loaded = await Promise.all(members.map((m) => loadModel(m)));
  try {
    const widthOf = (k: number) => loaded[k].inputs[0].shape[1];
    const cols = slices ? Math.max(...slices.map((sl) => sl.start + sl.width)) : widthOf(0)!;
    for (const [k, m] of loaded.entries()) {
      const expected = slices ? slices[k].width : cols;
      if (m.inputs.length !== 1 || m.outputs.length !== 1 || widthOf(k) !== expected) {
        throw new MlError(ML_ERROR.InvalidData, `ensemble member ${k + 1} takes ${m.inputs.map((i) => i.shape[1]).join(', ')} input columns, expected one input of ${expected}: ${slices ? 'its slice has another width' : 'members must share one preprocessing'}`);
      }
    }
    const classes = tf.serialization.SerializationMap.getMap().classNameMap as unknown as Record<string, LayerFactory>;
    const shared = tf.input({ shape: [cols], name: 'features' });
    // Every layer that reads a member's input, for each member. Where they are all Dense (an MLP's first layer), the
    // member reads the shared columns directly: its kernel gets zero rows outside its slice, which costs a wider
    // matmul but no slicing op (the crop below made a prediction ~10× slower on the wasm backend).
    const readers = loaded.map((m) => m.layers.filter((l) => l.getClassName() !== 'InputLayer' && l.inboundNodes[0].inboundLayers.some((i) => i.getClassName() === 'InputLayer')));
    const padded = loaded.map((_, k) => !!slices && readers[k].length > 0 && readers[k].every((l) => l.getClassName() === 'Dense'));
    // otherwise a member's slice of the shared columns is cut with stock layers (tfjs has no Cropping1D): [D] → [D,1,1] → crop → [d]
    const columns = slices && padded.some((p) => !p) ? (tf.layers.reshape({ name: 'ensemble_columns', targetShape: [cols, 1, 1] }).apply(shared) as tf.SymbolicTensor) : null;
    const inputOf = (k: number): tf.SymbolicTensor => {
      if (!slices || padded[k]) return shared;
      const { start, width } = slices[k];
      const cut = tf.layers.cropping2D({ name: `m${k + 1}_slice`, cropping: [[start, cols - start - width], [0, 0]] }).apply(columns!) as tf.SymbolicTensor;
      return tf.layers.reshape({ name: `m${k + 1}_input`, targetShape: [width] }).apply(cut) as tf.SymbolicTensor;
    };
    const outputs = loaded.map((m, k) => {
      const input = inputOf(k);
      const rebuilt = new Map<string, tf.SymbolicTensor>();
      for (const layer of m.layers) {
        if (layer.getClassName() === 'InputLayer') {
          rebuilt.set(layer.name, input);
          continue;
        }
        const factory = classes[layer.getClassName()];
        if (!factory) throw new MlError(ML_ERROR.InvalidData, `ensemble member ${k + 1} has a layer of unknown class ${layer.getClassName()}`);
        const { batchInputShape: _b, inputShape: _i, ...config } = layer.getConfig() as Record<string, unknown>;
        const clone = factory[1](factory[0], { ...config, name: `m${k + 1}_${layer.name}` });
        // a sequential member's first layer reads its (unlisted) input layer: the shared input
        const from = layer.inboundNodes[0].inboundLayers.map((l) => rebuilt.get(l.name) ?? (l.getClassName() === 'InputLayer' ? input : undefined));
        if (from.length === 0 || from.some((t) => t === undefined)) {
          throw new MlError(ML_ERROR.InvalidData, `ensemble member ${k + 1}: layer ${layer.name} reads a layer that is not before it`);
        }
        rebuilt.set(layer.name, clone.apply(from.length === 1 ? from[0]! : (from as tf.SymbolicTensor[])) as tf.SymbolicTensor);
        if (padded[k] && readers[k].includes(layer)) {
          const [kernel, ...rest] = layer.getWeights();
          const { start, width } = slices![k];
          tf.tidy(() => {
            const units = kernel.shape[1]!;
            clone.setWeights([tf.concat([tf.zeros([start, units]), kernel, tf.zeros([cols - start - width, units])], 0), ...rest]);
          });
        } else {
          clone.setWeights(layer.getWeights());
        }
      }
      const out = rebuilt.get(m.outputs[0].sourceLayer.name);
      if (!out) throw new MlError(ML_ERROR.InvalidData, `ensemble member ${k + 1}: its output layer ${m.outputs[0].sourceLayer.name} was not rebuilt`);
      return out;
    });
    const mean = outputs.length === 1 ? outputs[0] : (tf.layers.average({ name: 'ensemble_mean' }).apply(outputs) as tf.SymbolicTensor);
    const ensemble = tf.model({ inputs: shared, outputs: mean, name: 'propensity_ensemble' });
    try {
      return await serializeModel(ensemble);
    } finally {
      ensemble.dispose();
    }
  } finally {
    loaded.forEach((m) => m.dispose());
  }
}

/**
 * Permutation feature importance, per original feature (a one-hot group or value + missing flag moves together; the
 * whole last-events sequence block is one feature).
 */
import type * as tf from '@tensorflow/tfjs';
import { MlError, ML_ERROR } from './errors.js';
import { rocAuc } from './metrics.js';
import { loadModel, predict } from './model.js';
import { stepColumnRanges, type Matrix, type Preprocessor } from './preprocess.js';
import { createRng, deriveSeed, shuffleInPlace } from './random.js';
import type { FeatureKind, ModelArtifacts } from './types.js';

export interface FeatureImportance {
  feature: string;
  /** 'sequence': the last-N-events step as a whole */
  kind: FeatureKind | 'sequence';
  /** mean drop in ROC AUC when the feature's columns are shuffled across rows (higher = more important) */
  aucDrop: number;
}

const isArtifacts = (m: tf.LayersModel | ModelArtifacts): m is ModelArtifacts => 'modelJson' in m;

/** Importance of each preprocessor feature on a held-out matrix, most important first. Deterministic in seed. */
export async function permutationImportance(
  modelOrArtifacts: tf.LayersModel | ModelArtifacts,
  pre: Preprocessor,
  m: Matrix,
  y: ArrayLike<number>,
  seed: number,
  repeats = 2,
): Promise<{ baselineAuc: number; features: FeatureImportance[] }> {
  if (m.cols !== pre.featureNames.length) {
    throw new MlError(ML_ERROR.InvalidData, `matrix has ${m.cols} columns but the preprocessor produces ${pre.featureNames.length}`);
  }
  const owned = isArtifacts(modelOrArtifacts);
  const model = isArtifacts(modelOrArtifacts) ? await loadModel(modelOrArtifacts) : modelOrArtifacts;
  try {
    const baselineAuc = rocAuc(y, await predict(model, m.x, m.rows, m.cols));
    const features: FeatureImportance[] = [];
    // a feature's columns move together, in every block of an ensemble that reads several encodings
    const ranges = stepColumnRanges(pre);
    for (const [fi, step] of pre.steps.entries()) {
      if (ranges[fi].length === 0) continue; // a sequence step the model does not read
      let drop = 0;
      for (let r = 0; r < repeats; r++) {
        const order = shuffleInPlace(Int32Array.from({ length: m.rows }, (_, i) => i), createRng(deriveSeed(seed, fi, r)));
        const x = m.x.slice();
        for (let row = 0; row < m.rows; row++) {
          for (const { start, width } of ranges[fi]) {
            for (let c = start; c < start + width; c++) x[row * m.cols + c] = m.x[order[row] * m.cols + c];
          }
        }
        drop += baselineAuc - rocAuc(y, await predict(model, x, m.rows, m.cols));
      }
      features.push({ feature: step.name, kind: step.kind, aucDrop: drop / repeats });
    }
    return { baselineAuc, features: features.sort((a, b) => b.aucDrop - a.aucDrop) };
  } finally {
    if (owned) model.dispose();
  }
}

import { MlError, ML_ERROR } from './errors.js';
import { hashToUnit } from './random.js';

export type SplitName = 'train' | 'val' | 'test';
export interface SplitRatios {
  train: number;
  val: number;
  test: number;
}
export const DEFAULT_SPLIT_RATIOS: Readonly<SplitRatios> = Object.freeze({ train: 0.8, val: 0.1, test: 0.1 });

/** Throws MlError InvalidConfig unless the ratios are non-negative, finite and sum to 1. */
export function validateSplitRatios(ratios: SplitRatios): void {
  for (const k of ['train', 'val', 'test'] as const) {
    const v = ratios[k];
    if (!Number.isFinite(v) || v < 0) {
      throw new MlError(ML_ERROR.InvalidConfig, `split ratio '${k}' must be a finite number >= 0, got ${v}`);
    }
  }
  const sum = ratios.train + ratios.val + ratios.test;
  if (Math.abs(sum - 1) > 1e-9) {
    throw new MlError(
      ML_ERROR.InvalidConfig,
      `split ratios must sum to 1 (train ${ratios.train} + val ${ratios.val} + test ${ratios.test} = ${sum})`,
    );
  }
}

/**
 * Split by a seeded hash of the entity key: a key always lands in the same split for a given seed (so one user
 * never appears in two splits, and reruns reproduce the split) without storing any assignment.
 */
export function assignSplit(key: string, seed: number, ratios: SplitRatios = DEFAULT_SPLIT_RATIOS): SplitName {
  if (ratios !== DEFAULT_SPLIT_RATIOS) validateSplitRatios(ratios);
  const u = hashToUnit(key, seed);
  if (u < ratios.train) return 'train';
  return u < ratios.train + ratios.val ? 'val' : 'test';
}

import { fitPreprocessor, takeRows } from '../ml/preprocess.js';
import { assignSplit } from '../ml/split.js';
import type { FeatureSpec } from '../ml/types.js';
import type { PipelineConfig } from '../pipeline/config.js';
import { concatFrames } from '../store/arrow.js';
import { keys, type ArtifactRef, type DatasetRef } from '../store/artifacts.js';
import type { ActivityDeps } from './deps.js';
import { ErrorType, PipelineError } from './errors.js';
import { upsertQuality } from './quality.js';

export interface SplitInput {
  runId: string;
  clean: DatasetRef;
  features: FeatureSpec[];
  split: PipelineConfig['split'];
}
export type SplitPart = 'train' | 'val' | 'test';
export interface SplitOutput {
  train: ArtifactRef;
  val: ArtifactRef;
  test: ArtifactRef;
  preprocessing: ArtifactRef;
  sizes: Record<SplitPart, number>;
  positiveRates: Record<SplitPart, number>;
  /** sha256 of the cleaned data snapshot the splits were cut from: the model's data lineage. */
  dataSha256: string;
}

export function createSplitActivities(deps: ActivityDeps) {
  const { db, store } = deps;
  return {
    /** Seeded-hash split by entity key, then preprocessing fit on the train split only. */
    async splitData(input: SplitInput): Promise<SplitOutput> {
      const frame = concatFrames(await Promise.all(input.clean.shards.map((s) => store.getFrame(s))));
      const ratios = { train: input.split.train, val: input.split.val, test: input.split.test };
      const idx: Record<SplitPart, number[]> = { train: [], val: [], test: [] };
      frame.ids.forEach((id, i) => idx[assignSplit(id, input.split.seed, ratios)].push(i));
      const parts = { train: takeRows(frame, idx.train), val: takeRows(frame, idx.val), test: takeRows(frame, idx.test) };
      const sizes = {} as Record<SplitPart, number>;
      const positiveRates = {} as Record<SplitPart, number>;
      for (const part of ['train', 'val', 'test'] as const) {
        const labels = parts[part].label;
        const pos = labels.reduce((a, b) => a + b, 0);
        sizes[part] = labels.length;
        positiveRates[part] = labels.length ? pos / labels.length : 0;
        if (pos === 0 || pos === labels.length) {
          throw new PipelineError(
            ErrorType.SingleClassLabel,
            `the ${part} split (${labels.length} rows) has only one label class (${pos} positives): ` +
              'the label window may be empty or the data too small; check source.cutoff and source.horizonDays',
          );
        }
      }
      const pre = fitPreprocessor(parts.train, input.features);
      const [train, val, test, preprocessing] = await Promise.all([
        store.putFrame(keys.split(input.runId, 'train'), parts.train),
        store.putFrame(keys.split(input.runId, 'val'), parts.val),
        store.putFrame(keys.split(input.runId, 'test'), parts.test),
        store.putJson(keys.preprocessing(input.runId), pre),
      ]);
      await upsertQuality(db, {
        run_id: input.runId,
        stage: 'split',
        rows_in: frame.ids.length,
        rows_out: frame.ids.length,
        quarantined: JSON.stringify({}),
        features: JSON.stringify({ sizes, positiveRates, seed: input.split.seed, dataSha256: input.clean.sha256 }),
      });
      return { train, val, test, preprocessing, sizes, positiveRates, dataSha256: input.clean.sha256 };
    
    },
  };
}

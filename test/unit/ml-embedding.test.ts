import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../ml/backend.js';
import { embeddingStructure, layoutOf, loadModel, predict, trainMlp, type EpochReport } from '../../ml/model.js';
import { fitPreprocessor, transform } from '../../ml/preprocess.js';
import { createRng } from '../../ml/random.js';
import { rocAuc } from '../../ml/metrics.js';
import type { Frame, MlpParams, ModelArtifacts } from '../../ml/types.js';

// A categorical with 12 levels whose effect has no order, next to a numeric feature.
function frame(n: number, seed: number): Frame {
  const rng = createRng(seed);
  const effect = [2, -2, 1, -1, 0.5, -0.5, 1.5, -1.5, 0, 2.5, -2.5, 0.2];
  const x = new Float64Array(n);
  const c: (string | null)[] = [];
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = rng.next() * 4 - 2;
    const level = Math.floor(rng.next() * 12);
    c.push(`level_${level}`);
    y[i] = rng.next() < 1 / (1 + Math.exp(-(effect[level] + 0.8 * x[i] - 1))) ? 1 : 0;
  }
  return { ids: Array.from({ length: n }, (_, i) => String(i)), label: y, numeric: { x }, categorical: { c } };
}

const params: MlpParams = { hiddenUnits: [16], dropout: 0, l2: 0, learningRate: 0.01, batchSize: 128, epochs: 6, classWeight: 'none', patience: 10, embeddingDim: 3 };

describe('categorical embeddings', () => {
  const specs = [{ name: 'x', kind: 'numeric' as const }, { name: 'c', kind: 'categorical' as const }];
  let train: ReturnType<typeof transform> & { y: Uint8Array };
  let val: ReturnType<typeof transform> & { y: Uint8Array };
  let layout: ReturnType<typeof layoutOf>;

  beforeAll(async () => {
    await initBackend('wasm');
    const tr = frame(3000, 1);
    const va = frame(1000, 2);
    const pre = fitPreprocessor(tr, specs);
    layout = layoutOf(pre);
    train = { ...transform(pre, tr), y: tr.label };
    val = { ...transform(pre, va), y: va.label };
  });

  it('lays out one block per categorical feature and a block-structured kernel', () => {
    expect(layout.blocks).toEqual([{ start: 1, width: 14 }]); // x, then 12 levels + other + missing
    const s = embeddingStructure(15, 3, layout);
    expect(s.outDim).toBe(1 + 3);
    expect(s.fixed[0 * 4 + 0]).toBe(1); // x passes through
    expect(Array.from(s.mask.subarray(0, 4))).toEqual([0, 0, 0, 0]); // x never mixes into the embedding
    expect(Array.from(s.mask.subarray(4, 8))).toEqual([0, 1, 1, 1]); // a level feeds only the embedding
  });

  it('learns through the embedding, keeps its structure, and serves as a plain dense layer', async () => {
    const before = tf.memory().numTensors;
    const fit = await trainMlp({ train, val, params, seed: 3, layout });
    expect(tf.memory().numTensors).toBe(before);
    expect(fit.val.auc).toBeGreaterThan(0.75);
    const model = await loadModel(fit.artifacts);
    try {
      const kernel = model.getLayer('embed').getWeights()[0].arraySync() as number[][];
      expect(kernel[0]).toEqual([1, 0, 0, 0]); // identity for the numeric column, untouched by training
      for (let r = 1; r < 15; r++) expect(kernel[r][0]).toBe(0);
    } finally {
      model.dispose();
    }
    const p = await predict(fit.artifacts, val.x, val.rows, val.cols);
    expect(rocAuc(val.y, p)).toBeCloseTo(fit.val.auc, 10);
  });

  it('resumes from a checkpoint to byte-identical weights', async () => {
    let checkpoint: ModelArtifacts | undefined;
    const straight = await trainMlp({
      train, val, params, seed: 5, layout,
      onEpochEnd: async (e: EpochReport) => {
        if (e.epoch === 2) checkpoint = await e.state();
      },
    });
    const resumed = await trainMlp({ train, val, params, seed: 5, layout, initialState: checkpoint });
    expect(Buffer.from(resumed.artifacts.weights).equals(Buffer.from(straight.artifacts.weights))).toBe(true);
  });
});

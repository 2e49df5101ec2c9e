/**
 * The native TensorFlow backend for real: trains on it and scores its model on wasm. It runs where
 * `propensity setup tensorflow` has been run (a clean clone has not: CI skips it, saying so).
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { initBackend, nativeBackendPrefix } from '../../ml/backend.js';
import { rocAuc } from '../../ml/metrics.js';
import { predict, trainMlp, type XY } from '../../ml/model.js';
import { createRng } from '../../ml/random.js';
import type { MlpParams } from '../../ml/types.js';

const installedAt = (['gpu', 'cpu'] as const)
  .map((v) => path.join(nativeBackendPrefix(v), 'node_modules', '@tensorflow', v === 'gpu' ? 'tfjs-node-gpu' : 'tfjs-node'))
  .find((p) => existsSync(path.join(p, 'package.json')));

/** y = 1 when x0 and x1 (or the two `signal` columns) share a sign (10 % label noise): a linear model cannot, a small MLP can. */
function xor(rows: number, seed: number, cols = 6, [a, b]: [number, number] = [0, 1]): XY {
  const rng = createRng(seed);
  const x = new Float32Array(rows * cols);
  const y = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) x[r * cols + c] = rng.next() * 2 - 1;
    const truth = x[r * cols + a] * x[r * cols + b] > 0 ? 1 : 0;
    y[r] = rng.next() < 0.1 ? 1 - truth : truth;
  }
  return { x, y, rows, cols };
}

describe('native TensorFlow backend', () => {
  if (!installedAt) {
    it.skip(`not installed here (no ${path.relative(process.cwd(), nativeBackendPrefix('cpu'))}/node_modules/@tensorflow/tfjs-node): run \`npx propensity setup tensorflow\` to run this test`, () => {});
    return;
  }

  it('auto selects it, an MLP trains on it without leaking tensors, and its model scores the same on wasm', async () => {
    const info = await initBackend('auto');
    expect(info.name).toBe('tensorflow');
    expect(info.detail).toMatch(/libtensorflow \d+\.\d+/);
    expect(tf.getBackend()).toBe('tensorflow');

    const train = xor(2000, 1);
    const val = xor(500, 2);
    const params: MlpParams = { hiddenUnits: [16, 8], dropout: 0.1, l2: 1e-5, learningRate: 0.01, batchSize: 64, epochs: 30, classWeight: 'none', patience: 5 };
    const before = tf.memory().numTensors;
    const fit = await trainMlp({ train, val, params, seed: 3 });
    expect(tf.memory().numTensors).toBe(before);
    expect(fit.val.auc).toBeGreaterThan(0.85);
    const native = await predict(fit.artifacts, val.x, val.rows, val.cols);
    expect(rocAuc(val.y, native)).toBeCloseTo(fit.val.auc, 6);

    // a model trained on a native train pool is scored by cpu workers on wasm: the same probabilities
    await initBackend('wasm');
    const wasm = await predict(fit.artifacts, val.x, val.rows, val.cols);
    const maxDiff = native.reduce((m, p, i) => Math.max(m, Math.abs(p - wasm[i])), 0);
    expect(maxDiff).toBeLessThan(1e-4);
  });

  // The families with layers of our own (periodic embedding: sin/cos under a custom gradient; BatchEnsemble: rank-one
  // adapters over a shared kernel) and the GRU (joined with the aggregates or alone), each trained natively and
  // scored on wasm, as a native train pool and the cpu workers would.
  const seqLayout = { blocks: [], sequence: { start: 6, length: 4, width: 3 } };
  const families: [string, Partial<MlpParams>, object][] = [
    ['periodic embeddings', { numericEncoding: 'periodic', periodicSigma: 0.3 }, { blocks: [] }],
    ['a BatchEnsemble of 4', { batchEnsemble: 4 }, { blocks: [] }],
    ['a GRU joined with the aggregates', { sequenceUnits: 8, numericEncoding: 'quantile' }, seqLayout],
    ['a GRU alone', { sequenceUnits: 8, sequenceAlone: true, numericEncoding: 'quantile' }, seqLayout],
  ];
  for (const [name, extra, layout] of families) {
    it(`${name}: trains on it without leaking tensors, learns, and scores the same on wasm`, async () => {
      await initBackend('tensorflow');
      const cols = 6 + (extra.sequenceUnits ? 12 : 0);
      // the GRU alone sees only the last-events block: its label is the xor of two of those columns
      const signal: [number, number] = extra.sequenceAlone ? [6, 9] : [0, 1];
      const data = (rows: number, seed: number) => xor(rows, seed, cols, signal);
      const [train, val] = [data(2000, 1), data(500, 2)];
      const params: MlpParams = { hiddenUnits: [16], dropout: 0.1, l2: 1e-5, learningRate: 0.01, batchSize: 64, epochs: 30, classWeight: 'none', patience: 5, ...extra };
      const before = tf.memory().numTensors;
      const fit = await trainMlp({ train, val, params, seed: 3, layout: layout as never });
      expect(tf.memory().numTensors).toBe(before);
      console.log(`native ${name}: val AUC ${fit.val.auc.toFixed(4)} (best epoch ${fit.bestEpoch} of ${fit.history.length})`);
      expect(fit.val.auc).toBeGreaterThan(0.8);
      const native = await predict(fit.artifacts, val.x, val.rows, val.cols);
      await initBackend('wasm');
      const wasm = await predict(fit.artifacts, val.x, val.rows, val.cols);
      expect(native.reduce((m, p, i) => Math.max(m, Math.abs(p - wasm[i])), 0)).toBeLessThan(1e-4);
    });
  }

  it('the same seed gives the same weights, byte for byte (a retried trial reproduces its model)', async () => {
    await initBackend('tensorflow');
    const params: MlpParams = { hiddenUnits: [32, 16], dropout: 0.1, l2: 1e-5, learningRate: 0.01, batchSize: 128, epochs: 3, classWeight: 'none', patience: 3 };
    const [a, b] = [await trainMlp({ train: xor(4000, 5), val: xor(500, 6), params, seed: 11 }), await trainMlp({ train: xor(4000, 5), val: xor(500, 6), params, seed: 11 })];
    expect(Buffer.compare(a.artifacts.weights, b.artifacts.weights)).toBe(0);
  });
});

/**
 * Periodic embeddings of numeric features (Gorishniy et al., NeurIPS 2022, "On Embeddings for Numerical Features in
 * Tabular Deep Learning": PLR, in the "lite" form of Gorishniy et al. 2024, TabM). Each numeric column x_j becomes
 *   relu(W · [sin(2π c_j x_j), cos(2π c_j x_j)] + b)
 * with k learned frequencies c_j of its own (initialised N(0, σ²)) and one linear map W to `units` outputs shared by
 * all columns (the lite form: one matmul; a map per column scored the same on the synthetic shop, test ROC-AUC 0.8627
 * against 0.8634). The other columns (the categorical one-hot blocks) pass through unchanged after the embeddings.
 * One layer, the MLP's first.
 *
 * tfjs has no sine activation, so this is a custom layer, registered under PropensityPeriodic when this module loads:
 * ml/model.ts imports it, so every loader of ours (predict, evaluation, scoring, ensembles) reads such a model; a
 * plain tfjs loader elsewhere must register the class too (see the README).
 */
import * as tf from '@tensorflow/tfjs';
import { MlError, ML_ERROR } from './errors.js';

/** frequencies per numeric column and outputs per numeric column: the paper's small setting (its lite variant shares W) */
export const PERIODIC_FREQUENCIES = 16;
export const PERIODIC_UNITS = 8;

export interface PeriodicConfig {
  /** the input columns embedded (numeric values and missing flags), in order */
  numericColumns: number[];
  /** the input columns passed through after the embeddings (categorical blocks), in order */
  otherColumns: number[];
  frequencies: number;
  units: number;
  sigma: number;
  seed: number;
  /** L2 on the linear map (the MLP's l2) */
  l2: number;
}

/**
 * [sin v, cos v] along the last axis, with a gradient that reuses them (d sin = cos, d cos = −sin): sin and cos are
 * the costly kernels on the wasm backend, and tfjs' own gradients would evaluate both again.
 */
const sinCos = tf.customGrad((v, save) => {
  const s = tf.sin(v as tf.Tensor);
  const c = tf.cos(v as tf.Tensor);
  (save as unknown as (t: tf.Tensor[]) => void)([s, c]);
  const axis = s.rank - 1;
  return {
    value: tf.concat([s, c], axis),
    gradFunc: (dy, saved) => {
      const [ds, dc] = tf.split(dy as tf.Tensor, 2, axis);
      return tf.sub(tf.mul(ds, saved[1]), tf.mul(dc, saved[0]));
    },
  };
}) as (v: tf.Tensor) => tf.Tensor;

export class PeriodicEmbedding extends tf.layers.Layer {
  static className = 'PropensityPeriodic';
  private readonly cfg: PeriodicConfig;
  private frequency!: tf.LayerVariable;
  private kernel!: tf.LayerVariable;
  private bias!: tf.LayerVariable;
  private numericIndex: tf.Tensor1D | null = null;
  private otherIndex: tf.Tensor1D | null = null;

  constructor(config: PeriodicConfig & { name?: string; inputShape?: number[]; batchInputShape?: (number | null)[] }) {
    super(config);
    const { numericColumns, otherColumns, frequencies, units, sigma, seed, l2 } = config;
    this.cfg = { numericColumns: [...numericColumns], otherColumns: [...otherColumns], frequencies, units, sigma, seed, l2 };
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const { numericColumns: num, frequencies: k, units: d, sigma, seed, l2 } = this.cfg;
    const cols = (inputShape as tf.Shape)[1];
    if (cols != null && [...this.cfg.numericColumns, ...this.cfg.otherColumns].some((c) => c < 0 || c >= cols)) {
      throw new MlError(ML_ERROR.InvalidData, `${this.name}: a column index is outside the ${cols} input columns`);
    }
    const n = num.length;
    const regularizer = l2 > 0 ? tf.regularizers.l2({ l2 }) : undefined;
    this.frequency = this.addWeight('frequency', [n, k], 'float32', tf.initializers.randomNormal({ mean: 0, stddev: sigma, seed }));
    // the paper's nn.Linear initialisation: uniform(±1/√fan_in)
    const bound = 1 / Math.sqrt(2 * k);
    this.kernel = this.addWeight('kernel', [2 * k, d], 'float32', tf.initializers.randomUniform({ minval: -bound, maxval: bound, seed: seed + 1 }), regularizer);
    this.bias = this.addWeight('bias', [d], 'float32', tf.initializers.randomUniform({ minval: -bound, maxval: bound, seed: seed + 2 }));
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return [(inputShape as tf.Shape)[0], this.cfg.numericColumns.length * this.cfg.units + this.cfg.otherColumns.length];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor2D;
      const { numericColumns: num, otherColumns: other, units: d } = this.cfg;
      // the column indices as kept tensors: made once, outside any tidy that would dispose them
      this.numericIndex ??= tf.keep(tf.tensor1d(num, 'int32'));
      this.otherIndex ??= other.length ? tf.keep(tf.tensor1d(other, 'int32')) : null;
      const b = x.shape[0];
      const v = tf.mul(tf.expandDims(tf.gather(x, this.numericIndex, 1), 2), tf.mul(this.frequency.read(), 2 * Math.PI)); // [b, n, k]
      const periodic = tf.reshape(sinCos(v), [-1, 2 * this.cfg.frequencies]); // [b·n, 2k]
      const linear = tf.fused.matMul({ a: periodic, b: this.kernel.read() as tf.Tensor2D, bias: this.bias.read(), activation: 'relu' }); // [b·n, d]
      const embedded = tf.reshape(linear, [b, num.length * d]);
      return this.otherIndex ? tf.concat([embedded, tf.gather(x, this.otherIndex, 1)], 1) : embedded;
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.cfg } as unknown as tf.serialization.ConfigDict;
  }

  override dispose(): ReturnType<tf.layers.Layer['dispose']> {
    const result = super.dispose();
    // a layer shared by several models is disposed once per model: the indices go with its last reference
    if (result.refCountAfterDispose === 0) {
      this.numericIndex?.dispose();
      this.otherIndex?.dispose();
      this.numericIndex = this.otherIndex = null;
    }
    return result;
  }
}

tf.serialization.registerClass(PeriodicEmbedding);

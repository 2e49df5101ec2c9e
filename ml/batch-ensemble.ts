/**
 * BatchEnsemble (Wen et al., ICLR 2020) as TabM uses it for tabular MLPs (Gorishniy et al., ICLR 2025): k members
 * that share one weight matrix W and differ by rank-one multiplicative adapters, member i computing
 *   relu(((x ⊙ r_i) W) ⊙ s_i + b_i)
 * with r_i and s_i initialised to random signs (TabM's choice, so the members start apart) and b_i to zeros. This layer
 * is the network's first hidden layer; it maps [batch, features] to [batch, k, units], and the MLP's later dense
 * layers and its output act on each member alike (TabM-mini's sharing after the first layer). The network's output
 * averages the members' probabilities; training takes the mean of their losses.
 *
 * (x ⊙ r_i) W = x (diag(r_i) W): the members' kernels are formed from W (k·features·units values) and applied in one
 * matmul, instead of scaling k copies of the batch.
 *
 * A custom layer registered under PropensityBatchEnsemble when this module loads (ml/model.ts imports it).
 */
import * as tf from '@tensorflow/tfjs';
import { MlError, ML_ERROR } from './errors.js';

export interface BatchEnsembleConfig {
  units: number;
  members: number;
  seed: number;
  /** L2 on the shared kernel (the MLP's l2) */
  l2: number;
}

/** ±1 with equal probability, seeded: a random-signs initializer from a stock one */
const randomSigns = (shape: number[], seed: number): tf.Tensor => tf.tidy(() => tf.sub(tf.mul(tf.step(tf.randomUniform(shape, -1, 1, 'float32', seed)), 2), 1));

export class BatchEnsembleDense extends tf.layers.Layer {
  static className = 'PropensityBatchEnsemble';
  private readonly cfg: BatchEnsembleConfig;
  private kernel!: tf.LayerVariable;
  private r!: tf.LayerVariable;
  private s!: tf.LayerVariable;
  private bias!: tf.LayerVariable;

  constructor(config: BatchEnsembleConfig & { name?: string; inputShape?: number[]; batchInputShape?: (number | null)[] }) {
    super(config);
    const { units, members, seed, l2 } = config;
    if (!(Number.isInteger(members) && members >= 2 && Number.isInteger(units) && units >= 1)) {
      throw new MlError(ML_ERROR.InvalidConfig, `a BatchEnsemble layer needs at least 2 members and 1 unit, got ${members} and ${units}`);
    }
    this.cfg = { units, members, seed, l2 };
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const d = (inputShape as tf.Shape)[1];
    if (d == null || (inputShape as tf.Shape).length !== 2) throw new MlError(ML_ERROR.InvalidData, `${this.name}: expected [batch, features] input, got ${JSON.stringify(inputShape)}`);
    const { units, members: k, seed, l2 } = this.cfg;
    // an initializer object of our own: the weights are saved, never the initializer, so it need not be serializable
    const signs = (shape: number[], s: number) => ({ apply: () => randomSigns(shape, s) }) as never;
    this.kernel = this.addWeight('kernel', [d, units], 'float32', tf.initializers.heNormal({ seed }), l2 > 0 ? tf.regularizers.l2({ l2 }) : undefined);
    this.r = this.addWeight('r', [k, d], 'float32', signs([k, d], seed + 1));
    this.s = this.addWeight('s', [k, units], 'float32', signs([k, units], seed + 2));
    this.bias = this.addWeight('bias', [k, units], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return [(inputShape as tf.Shape)[0], this.cfg.members, this.cfg.units];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor2D;
      const { units, members: k } = this.cfg;
      const d = x.shape[1];
      // [d, k, units]: member i's kernel is diag(r_i) W
      const kernels = tf.mul(tf.expandDims(tf.transpose(this.r.read()), 2), tf.expandDims(this.kernel.read(), 1));
      const h = tf.reshape(tf.matMul(x, tf.reshape(kernels, [d, k * units])), [-1, k, units]);
      return tf.relu(tf.add(tf.mul(h, this.s.read()), this.bias.read()));
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.cfg } as unknown as tf.serialization.ConfigDict;
  }
}

tf.serialization.registerClass(BatchEnsembleDense);

import { describe, expect, it } from 'vitest';
import { MlError } from '../../ml/errors.js';
import { binaryMetrics, brier, logLoss, prAuc, rocAuc } from '../../ml/metrics.js';

// Expected values from scikit-learn 1.9.1: roc_auc_score, average_precision_score, log_loss, brier_score_loss.
const fixtures = {
  brief: {
    y: [0, 0, 1, 1],
    s: [0.1, 0.4, 0.35, 0.8],
    sk: [0.75, 0.8333333333333333, 0.47228795380917615, 0.15812500000000002],
  },
  ties: {
    y: [0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0],
    s: [0.2, 0.9, 0.2, 0.6, 0.2, 0.6, 0.05, 0.9, 0.6, 0.3, 0.3, 0.1],
    sk: [0.7857142857142857, 0.7342857142857143, 0.5272628910168765, 0.18437499999999996],
  },
  allTied: { y: [0, 1, 0, 1, 1], s: [0.5, 0.5, 0.5, 0.5, 0.5], sk: [0.5, 0.6, 0.6931471805599453, 0.25] },
  // numpy default_rng(3): integers(0, 2, 40) and round(random(40), 1): many ties, scores of exactly 0 and 1
  rng40: {
    y: [1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0],
    s: [0, 1, 0.3, 0.3, 0.9, 0.6, 0.5, 0.8, 0, 0.7, 0.4, 0.1, 0.7, 0.9, 0.2, 0.6, 0.3, 0.7, 0.7, 0.2, 0.8, 0.7, 0.7, 0.8, 0.4, 0.8,
      0.9, 0.1, 0.8, 0.4, 0.5, 0.1, 0.7, 0.3, 0.9, 0.3, 0.6, 0.4, 0.6, 0.2],
    sk: [0.4649122807017544, 0.4409744195294775, 2.6240217018291667, 0.34125],
  },
};

describe('metrics equal scikit-learn', () => {
  for (const [name, { y, s, sk }] of Object.entries(fixtures)) {
    it(name, () => {
      expect(rocAuc(y, s)).toBeCloseTo(sk[0], 12);
      expect(prAuc(y, s)).toBeCloseTo(sk[1], 12);
      expect(logLoss(y, s)).toBeCloseTo(sk[2], 12);
      expect(brier(y, s)).toBeCloseTo(sk[3], 12);
    });
  }

  it('hand-computed: AUC counts a tied pair as half a win', () => {
    // pairs (pos, neg): (0.5, 0.5) tie → 0.5, (0.9, 0.5) → 1, (0.5, 0.2) → 1, (0.9, 0.2) → 1 ⇒ 3.5 / 4
    expect(rocAuc([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.2])).toBe(0.875);
  });

  it('log loss clips probabilities of exactly 0 and 1 like sklearn (float64 eps)', () => {
    expect(logLoss([0, 1, 1], [0, 1, 0])).toBeCloseTo(12.014551129705717, 10);
  });

  it('accepts typed arrays (Uint8Array labels, Float32Array scores)', () => {
    const { y, s, sk } = fixtures.ties;
    expect(rocAuc(Uint8Array.from(y), Float32Array.from(s))).toBeCloseTo(sk[0], 12);
  });

  it('binaryMetrics bundles them', () => {
    const m = binaryMetrics(fixtures.brief.y, fixtures.brief.s);
    expect(m).toMatchObject({ rows: 4, positives: 2, positiveRate: 0.5, auc: 0.75 });
  });
});

describe('metric errors', () => {
  const typeOf = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as MlError).type;
    }
    return 'no error';
  };
  it('one class → SingleClassLabel for ranking metrics, but log loss and Brier are defined', () => {
    expect(typeOf(() => rocAuc([1, 1], [0.2, 0.3]))).toBe('SingleClassLabel');
    expect(typeOf(() => prAuc([0, 0], [0.2, 0.3]))).toBe('SingleClassLabel');
    expect(logLoss([0, 0], [0.5, 0.5])).toBeCloseTo(Math.LN2, 12);
    expect(brier([1, 1], [0.5, 1])).toBe(0.125);
  });
  it('bad input → InvalidData / EmptyDataset', () => {
    expect(typeOf(() => rocAuc([0, 1], [0.2]))).toBe('InvalidData');
    expect(typeOf(() => rocAuc([0, 2], [0.2, 0.3]))).toBe('InvalidData');
    expect(typeOf(() => rocAuc([0, 1], [0.2, NaN]))).toBe('InvalidData');
    expect(typeOf(() => logLoss([], []))).toBe('EmptyDataset');
    expect(() => rocAuc([0, 1], [0.2])).toThrow(MlError);
  });
});

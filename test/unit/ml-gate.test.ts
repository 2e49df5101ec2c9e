import { describe, expect, it } from 'vitest';
import { MlError } from '../../ml/errors.js';
import { evaluateGate } from '../../ml/gate.js';

describe('evaluateGate', () => {
  const metrics = { auc: 0.71, logLoss: 0.52, aucLiftOverBaseline: -0.004 };

  it('blesses when every check passes', () => {
    const r = evaluateGate(metrics, [
      { metric: 'auc', op: '>=', value: 0.7 },
      { metric: 'logLoss', op: '<=', value: 0.6 },
    ]);
    expect(r).toEqual({
      blessed: true,
      checks: [
        { metric: 'auc', value: 0.71, op: '>=', threshold: 0.7, passed: true },
        { metric: 'logLoss', value: 0.52, op: '<=', threshold: 0.6, passed: true },
      ],
      reasons: [],
    });
  });

  it('returns reasons instead of throwing when a check fails; bounds are inclusive', () => {
    const r = evaluateGate(metrics, [
      { metric: 'auc', op: '>=', value: 0.71 },
      { metric: 'aucLiftOverBaseline', op: '>=', value: 0 },
      { metric: 'logLoss', op: '<=', value: 0.5 },
    ]);
    expect(r.blessed).toBe(false);
    expect(r.checks.map((c) => c.passed)).toEqual([true, false, false]);
    expect(r.reasons).toEqual(['aucLiftOverBaseline = -0.004 fails >= 0', 'logLoss = 0.52 fails <= 0.5']);
  });

  it('fails a check on a NaN metric', () => {
    const r = evaluateGate({ auc: NaN }, [{ metric: 'auc', op: '>=', value: 0.5 }]);
    expect(r.blessed).toBe(false);
    expect(r.reasons).toEqual(['auc = NaN fails >= 0.5']);
  });

  it('rejects a threshold on an unknown metric as InvalidConfig', () => {
    const call = () => evaluateGate(metrics, [{ metric: 'rocauc', op: '>=', value: 0.7 }]);
    expect(call).toThrow(MlError);
    expect(call).toThrow(/unknown metric 'rocauc'; available: auc, logLoss/);
    try {
      call();
    } catch (e) {
      expect((e as MlError).type).toBe('InvalidConfig');
    }
  });
});

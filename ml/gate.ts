/** The blessing gate: a failed gate is a result with reasons (like TFX's Evaluator), never an exception. */
import { MlError, ML_ERROR } from './errors.js';

export type GateOp = '>=' | '<=';
export interface GateThreshold {
  metric: string;
  op: GateOp;
  value: number;
}
export interface GateCheck {
  metric: string;
  value: number;
  op: GateOp;
  threshold: number;
  passed: boolean;
}
export interface GateResult {
  blessed: boolean;
  checks: GateCheck[];
  reasons: string[];
}

/**
 * Check every threshold against `metrics`. A threshold naming a metric that is absent, or with a bad op/value, is a
 * configuration error (MlError InvalidConfig) rather than a silent pass. A non-finite metric value fails its check.
 */
export function evaluateGate(metrics: Record<string, number>, thresholds: GateThreshold[]): GateResult {
  const known = Object.keys(metrics);
  const checks: GateCheck[] = thresholds.map((t, i) => {
    if (!Object.hasOwn(metrics, t.metric)) {
      throw new MlError(
        ML_ERROR.InvalidConfig,
        `gate threshold ${i} names unknown metric '${t.metric}'; available: ${known.join(', ') || '(none)'}`,
      );
    }
    if (t.op !== '>=' && t.op !== '<=') {
      throw new MlError(ML_ERROR.InvalidConfig, `gate threshold ${i} (${t.metric}) has op '${t.op}'; use '>=' or '<='`);
    }
    if (typeof t.value !== 'number' || !Number.isFinite(t.value)) {
      throw new MlError(ML_ERROR.InvalidConfig, `gate threshold ${i} (${t.metric}) needs a finite numeric value, got ${t.value}`);
    }
    const value = metrics[t.metric];
    const passed = Number.isFinite(value) && (t.op === '>=' ? value >= t.value : value <= t.value);
    return { metric: t.metric, value, op: t.op, threshold: t.value, passed };
  });
  const reasons = checks
    .filter((c) => !c.passed)
    .map((c) => `${c.metric} = ${fmt(c.value)} fails ${c.op} ${fmt(c.threshold)}`);
  return { blessed: reasons.length === 0, checks, reasons };
}

const fmt = (x: number): string => (Number.isFinite(x) ? String(Number(x.toPrecision(6))) : String(x));

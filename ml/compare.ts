/**
 * The gate's model comparisons, as pure rules over labels and scores (no I/O): the logistic baseline and the
 * current champion. Both use DeLong's paired test on rows that neither model trained or validated on.
 */
import { delongPairedTest, formatPValue, normalSf } from './delong.js';
import { assignSplit, type SplitRatios } from './split.js';

export interface Comparison {
  check: 'beats_baseline' | 'not_worse_than_champion';
  /** the other model: 'baseline' or 'champion v<N>' */
  against: string;
  challengerAuc: number;
  otherAuc: number;
  diff: number;
  /** the p-value the decision used (one-sided for non-inferiority), null when skipped */
  pValue: number | null;
  /** the significance level it was judged at (absent in records written before it was kept) */
  alpha?: number;
  passed: boolean;
  /** 'passed' | 'failed' | 'skipped' (a skipped comparison passes: it never rejects on too little evidence) */
  status?: 'passed' | 'failed' | 'skipped';
  /** why the comparison was skipped, when it was */
  skipped?: string;
  /** rows compared and rows left out because the other model had seen them (champion only) */
  rows?: number;
  excluded?: number;
  positives?: number;
  /** recorded for trends only: this check does not gate (gate.versusChampion.enabled is false) */
  informational?: boolean;
  detail: string;
}

export interface BaselineRule {
  alpha: number;
  /** non-inferiority margin in AUC: the model may be up to this much worse before "significantly worse" counts */
  margin: number;
  /** opt-in strict rule: also require a higher AUC than the baseline (by more than the margin) */
  requireHigherAuc: boolean;
}

const f4 = (x: number) => x.toFixed(4);

/**
 * Non-inferiority against the baseline: fail only when the model is significantly worse than baseline − margin
 * (one-sided DeLong test of H0: diff ≥ −margin at `alpha`). Two models within noise of each other pass, so a
 * nightly run is never decided by a coin flip. `requireHigherAuc` adds the strict rule diff > margin.
 */
export function compareWithBaseline(labels: ArrayLike<number>, pModel: ArrayLike<number>, pBaseline: ArrayLike<number>, rule: BaselineRule): Comparison {
  const t = delongPairedTest(labels, pModel, pBaseline);
  const pWorse = oneSidedWorseP(t.diff, t.se, rule.margin);
  const significantlyWorse = pWorse < rule.alpha;
  const passed = !significantlyWorse && (!rule.requireHigherAuc || t.diff > rule.margin);
  const ruleText = rule.requireHigherAuc
    ? `must be higher by > ${rule.margin} and not significantly worse at alpha ${rule.alpha}`
    : `non-inferiority: must not be significantly worse than baseline${rule.margin ? ` − ${rule.margin}` : ''} at alpha ${rule.alpha}`;
  return {
    check: 'beats_baseline', against: 'baseline', challengerAuc: t.aucA, otherAuc: t.aucB, diff: t.diff,
    pValue: Number.isFinite(pWorse) ? pWorse : null, alpha: rule.alpha, passed, status: passed ? 'passed' : 'failed', rows: labels.length,
    detail:
      `test ROC-AUC ${f4(t.aucA)} vs logistic baseline ${f4(t.aucB)} on ${labels.length} rows (diff ${f4(t.diff)}, ` +
      `one-sided DeLong p ${formatPValue(pWorse, rule.alpha)}; ${ruleText})` +
      (passed && t.diff < 0 ? '; the difference is within noise' : ''),
  };
}

/** P(a difference this low | true difference = −margin): small means significantly worse than −margin. */
function oneSidedWorseP(diff: number, se: number, margin: number): number {
  const shifted = diff + margin;
  if (se === 0) return shifted < 0 ? 0 : 1;
  return normalSf(-shifted / se);
}

export interface ChampionSplit {
  seed: number;
  ratios: SplitRatios;
  /** 'lineage': the champion's own split settings; 'assumed': its lineage lacks them, the current config's are used */
  source: 'lineage' | 'assumed';
}

/**
 * Indices of the rows whose entity keys the champion never trained or validated on: recomputed from the champion's
 * own split seed and ratios (the split is a seeded hash of the key, so membership needs no stored list).
 */
export function unseenByChampion(ids: readonly string[], split: ChampionSplit): number[] {
  const out: number[] = [];
  for (let i = 0; i < ids.length; i++) if (assignSplit(ids[i], split.seed, split.ratios) === 'test') out.push(i);
  return out;
}

export interface ChampionRule {
  alpha: number;
  /** fewer unseen rows or positives than this: the comparison is skipped, never decided */
  minRows: number;
  minPositives: number;
}

/**
 * The challenger against the champion on the test rows neither has seen. Fails only when the challenger is
 * significantly worse (two-sided DeLong at alpha, diff < 0); skipped (passing) when too few unseen rows or
 * positives remain for a meaningful test.
 */
export function compareWithChampion(
  labels: ArrayLike<number>,
  pChallenger: ArrayLike<number>,
  pChampion: ArrayLike<number>,
  unseen: readonly number[],
  against: string,
  split: ChampionSplit,
  rule: ChampionRule,
): Comparison {
  const rows = unseen.length;
  const excluded = labels.length - rows;
  const y = new Uint8Array(rows);
  const a = new Float64Array(rows);
  const b = new Float64Array(rows);
  let positives = 0;
  unseen.forEach((i, k) => {
    y[k] = labels[i];
    a[k] = pChallenger[i];
    b[k] = pChampion[i];
    positives += labels[i] ? 1 : 0;
  });
  const which = `${rows} unseen test rows (${excluded} excluded: in the ${against}'s train or validation split, ` +
    `split seed ${split.seed}${split.source === 'assumed' ? ', assumed from this config: its lineage has none' : ''})`;
  const base = { check: 'not_worse_than_champion' as const, against, rows, excluded, positives, alpha: rule.alpha };
  if (rows < rule.minRows || positives < rule.minPositives || positives === rows) {
    const reason = `too few unseen rows for a meaningful test: ${rows} rows, ${positives} positives (need ${rule.minRows} and ${rule.minPositives}, and both classes)`;
    return {
      ...base, challengerAuc: NaN, otherAuc: NaN, diff: NaN, pValue: null, passed: true, status: 'skipped', skipped: reason,
      detail: `skipped on ${which}: ${reason}`,
    };
  }
  const t = delongPairedTest(y, a, b);
  const worse = t.diff < 0 && t.pValue < rule.alpha;
  return {
    ...base, challengerAuc: t.aucA, otherAuc: t.aucB, diff: t.diff, pValue: Number.isFinite(t.pValue) ? t.pValue : null,
    passed: !worse, status: worse ? 'failed' : 'passed',
    detail:
      `test ROC-AUC ${f4(t.aucA)} vs ${against} ${f4(t.aucB)} on ${which} ` +
      `(diff ${f4(t.diff)}, DeLong p ${formatPValue(t.pValue, rule.alpha)}, alpha ${rule.alpha})`,
  };
}

/**
 * `bench accuracy` over several data sets: ours − LightGBM pooled over them (mean, SE, 95 % interval), which sets are
 * significantly worse, and each synthetic shop's gap to the oracle with its SE. One run of the command, one code
 * version: the figures a claim such as "level with LightGBM on average" has to be read against.
 */
import { table, type Cell } from '../cli/table.js';
import { formatAucDiff, formatPValue } from '../ml/delong.js';
import { NOISE_ALPHA } from '../ml/ensemble-gain.js';
import { poolDifferences, type PooledDifference } from '../ml/pooled.js';
import type { AccuracyResult, Versus } from './accuracy.js';
import type { Log } from './common.js';

export interface AccuracySetRow {
  /** 'shop seed 2' or the table config's path */
  name: string;
  ours: number;
  lightgbm: number;
  versusLightgbm: Required<Versus>;
  /** ours worse than LightGBM at p < NOISE_ALPHA */
  significantlyWorse: boolean;
  /** synthetic shop: oracle − ours, with the paired DeLong SE; null for a table */
  oracleGap: { gap: number; se: number } | null;
}

export interface AccuracySummary {
  suite: 'accuracy-summary';
  sets: AccuracySetRow[];
  /** ours − LightGBM averaged over the sets, each set weighing the same */
  versusLightgbm: PooledDifference;
  gitCommits: string[];
  date: string;
}

export const datasetName = (r: Pick<AccuracyResult, 'dataset'>): string =>
  r.dataset.kind === 'synthetic' ? `shop seed ${r.dataset.seed}` : r.dataset.config;

const withSe = (v: Versus, what: string, name: string): Required<Versus> => {
  if (v.se === undefined) throw new Error(`${name}: the ${what} comparison has no DeLong SE (a result written before SEs were kept); run the data set again`);
  return { diff: v.diff, se: v.se, pValue: v.pValue };
};

/** The pooled comparison of several `bench accuracy` results, one per data set. */
export function summarizeAccuracy(results: readonly AccuracyResult[], date = new Date()): AccuracySummary {
  if (results.length === 0) throw new Error('summarizeAccuracy: no results');
  const names = results.map(datasetName);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new Error(`summarizeAccuracy: data set "${twice}" appears twice; pool each data set once (its rows would count twice)`);
  const sets = results.map((r, i): AccuracySetRow => {
    const v = withSe(r.delong.lightgbm, 'LightGBM', names[i]);
    const o = r.versusOracle ? withSe(r.versusOracle, 'oracle', names[i]) : null;
    return {
      name: names[i],
      ours: r.ours.testAuc,
      lightgbm: r.lightgbm.testAuc,
      versusLightgbm: v,
      significantlyWorse: v.diff < 0 && v.pValue < NOISE_ALPHA,
      oracleGap: o ? { gap: -o.diff, se: o.se } : null,
    };
  });
  return {
    suite: 'accuracy-summary',
    sets,
    versusLightgbm: poolDifferences(sets.map((s) => ({ name: s.name, diff: s.versusLightgbm.diff, se: s.versusLightgbm.se }))),
    gitCommits: [...new Set(results.map((r) => r.gitCommit))],
    date: date.toISOString(),
  };
}

/** What the pooled figures allow one to say, in words that never claim a sign the interval does not show. */
export function pooledVerdict(p: PooledDifference): string {
  const ci = `95 % CI ${formatAucDiff(p.ci95[0])} to ${formatAucDiff(p.ci95[1])}`;
  if (!p.withinNoise) return `ours is ${p.mean > 0 ? 'ahead of' : 'behind'} LightGBM on average: mean ${formatAucDiff(p.mean)}, ${ci}, p ${formatPValue(p.pValue)}`;
  return `level with LightGBM within the noise: mean ${formatAucDiff(p.mean)}, ${ci}, p ${formatPValue(p.pValue)}; the data do not tell which is ahead`;
}

export function printAccuracySummary(s: AccuracySummary, log: Log): void {
  const rows: Cell[][] = s.sets.map((r) => [
    r.name,
    r.ours.toFixed(4),
    r.lightgbm.toFixed(4),
    formatAucDiff(r.versusLightgbm.diff),
    r.versusLightgbm.se.toFixed(4),
    formatPValue(r.versusLightgbm.pValue) + (r.significantlyWorse ? ' (worse)' : ''),
    r.oracleGap ? `${r.oracleGap.gap.toFixed(4)} (SE ${r.oracleGap.se.toFixed(4)})` : null,
  ]);
  const p = s.versusLightgbm;
  rows.push([`mean of ${p.sets}`, null, null, formatAucDiff(p.mean), p.se.toFixed(4), formatPValue(p.pValue), null]);
  log('');
  log(`accuracy over ${s.sets.length} data sets: ours − LightGBM on each one's test rows (DeLong), pooled`);
  for (const line of table(
    ['data set', { header: 'ours', align: 'right' }, { header: 'LightGBM', align: 'right' }, { header: 'ours − LGBM', align: 'right' }, { header: 'SE', align: 'right' }, 'p', 'gap to oracle'],
    rows,
    { indent: '  ' },
  )) log(line);
  const worse = s.sets.filter((r) => r.significantlyWorse).map((r) => r.name);
  log(`  ${pooledVerdict(p)}`);
  log(`  significantly worse (p < ${NOISE_ALPHA}) on: ${worse.length ? worse.join(', ') : 'none'}`);
  log(`  code ${s.gitCommits.join(', ')}`);
  log('');
}

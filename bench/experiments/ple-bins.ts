/**
 * Experiment (issue 14, fifteenth session; not part of the product): one configuration trained with several seeds on
 * a kept `bench accuracy --keep-artifacts` run's split, PLE bins from train quantiles against target-aware bins (a
 * best-first one-feature regression tree on the train labels, Gorishniy et al. 2022's "PLE-T"), and the test ROC-AUC
 * of each network and of their average (a deep ensemble of seeds).
 *
 *   node --import tsx bench/experiments/ple-bins.ts <runId> '<MlpParams JSON>' q8,t8:0.01,s 1,2,3
 *
 * Variants: qN quantile PLE with N bins; tN:f tree PLE with at most N bins, each holding at least a fraction f of the
 * train rows; s the params' own encoding. OVER='{"dropout":0.3}' overrides params. Needs the bench's stack running.
 */
import { initBackend } from '../../ml/backend.js';
import { predict, trainMlp } from '../../ml/model.js';
import { rocAuc } from '../../ml/metrics.js';
import { numericValue, transform, withEncoding, QUANTILE_LEVELS, type Preprocessor } from '../../ml/preprocess.js';
import { ipcToFrame } from '../../store/arrow.js';
import { keys } from '../../store/artifacts.js';
import { openBench } from '../common.js';
import type { Frame, MlpParams } from '../../ml/types.js';

const [runId, paramsJson, variantsArg, seedsArg] = process.argv.slice(2);

/** Best-first 1-D regression tree on 0/1 labels; returns sorted thresholds (midpoints between distinct values). */
export function treeThresholds(values: ArrayLike<number>, labels: ArrayLike<number>, maxLeaves: number, minLeaf: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i).sort((a, b) => values[a] - values[b]);
  const distinct: number[] = [];
  const cnt: number[] = [];
  const pos: number[] = [];
  for (const i of idx) {
    const v = values[i];
    if (distinct.length === 0 || v !== distinct[distinct.length - 1]) { distinct.push(v); cnt.push(0); pos.push(0); }
    cnt[cnt.length - 1]++;
    pos[pos.length - 1] += labels[i];
  }
  const K = distinct.length;
  const cN = new Float64Array(K + 1);
  const cS = new Float64Array(K + 1);
  for (let k = 0; k < K; k++) { cN[k + 1] = cN[k] + cnt[k]; cS[k + 1] = cS[k] + pos[k]; }
  const best = (lo: number, hi: number): { gain: number; at: number } => {
    // segment of distinct groups [lo, hi); split after group j (left [lo, j], right [j+1, hi))
    const N = cN[hi] - cN[lo];
    const S = cS[hi] - cS[lo];
    let g = 0;
    let at = -1;
    for (let j = lo; j < hi - 1; j++) {
      const nl = cN[j + 1] - cN[lo];
      const nr = N - nl;
      if (nl < minLeaf || nr < minLeaf) continue;
      const sl = cS[j + 1] - cS[lo];
      const sr = S - sl;
      const gain = (sl * sl) / nl + (sr * sr) / nr - (S * S) / N;
      if (gain > g + 1e-12) { g = gain; at = j; }
    }
    return { gain: g, at };
  };
  const segs: { lo: number; hi: number; gain: number; at: number }[] = [{ lo: 0, hi: K, ...best(0, K) }];
  const cuts: number[] = [];
  while (segs.length < maxLeaves) {
    let bi = -1;
    for (let i = 0; i < segs.length; i++) if (segs[i].at >= 0 && (bi < 0 || segs[i].gain > segs[bi].gain)) bi = i;
    if (bi < 0) break;
    const s = segs[bi];
    cuts.push((distinct[s.at] + distinct[s.at + 1]) / 2);
    segs.splice(bi, 1, { lo: s.lo, hi: s.at + 1, ...best(s.lo, s.at + 1) }, { lo: s.at + 1, hi: s.hi, ...best(s.at + 1, s.hi) });
  }
  return [distinct[0], ...cuts.sort((a, b) => a - b), distinct[K - 1]].filter((v, i, a) => i === 0 || v > a[i - 1]);
}

function treePre(pre: Preprocessor, train: Frame, bins: number, minLeafFrac: number): Preprocessor {
  const steps = pre.steps.map((s) => {
    if (s.kind !== 'numeric') return s;
    const col = train.numeric[s.name];
    const vals = Float64Array.from(col, (r) => numericValue(s, r as number));
    const edges = treeThresholds(vals, train.label, bins, Math.max(1, Math.ceil(minLeafFrac * vals.length)));
    const q = Array.from({ length: QUANTILE_LEVELS + 1 }, (_, i) => edges[Math.min(i, edges.length - 1)]);
    return { ...s, quantiles: q };
  });
  // a fresh preprocessor with these "quantiles": PLE with bins = QUANTILE_LEVELS takes every distinct value as an edge
  const base = { ...pre, steps } as Preprocessor;
  return withEncoding(base, { numeric: 'ple', bins: QUANTILE_LEVELS });
}

const log = (l: string) => console.error(l);
const bench = await openBench({ log, startStack: false });
await initBackend('wasm');
const get = (k: string) => bench.store.getKey(k);
const [train, val, test] = await Promise.all((['train', 'val', 'test'] as const).map(async (p) => ipcToFrame(await get(keys.split(runId, p)))));
const pre = JSON.parse(new TextDecoder().decode(await get(keys.preprocessing(runId)))) as Preprocessor;
const params = JSON.parse(paramsJson) as MlpParams;
const over = JSON.parse(process.env.OVER ?? '{}');
Object.assign(params, over);
const seeds = (seedsArg ?? '1,2,3').split(',').map(Number);
for (const variant of variantsArg.split(',')) {
  // q8 = quantile PLE 8 bins; t8:0.01 = tree PLE, 8 leaves, min leaf 1 % of rows
  const [kind, binsS, fracS] = variant === 's' ? ['s', '8', undefined] : variant.match(/^([qt])(\d+)(?::([\d.]+))?$/)!.slice(1);
  const bins = Number(binsS);
  const p = variant === 's' ? pre : kind === 'q' ? withEncoding(pre, { numeric: 'ple', bins }) : treePre(pre, train, bins, Number(fracS ?? '0.01'));
  const m = (f: Frame) => { const t = transform(p, f); return { x: t.x, rows: t.rows, cols: t.cols, y: f.label }; };
  const [tr, va, te] = [m(train), m(val), m(test)];
  const aucs: number[] = [];
  const sum = new Float64Array(te.rows);
  for (const seed of seeds) {
    const t0 = performance.now();
    const out = await trainMlp({ train: tr, val: va, params: (variant === 's' ? params : { ...params, numericEncoding: 'ple', pleBins: Math.min(bins, 128) }) as MlpParams, seed });
    const pr = await predict(out.artifacts, te.x, te.rows, te.cols);
    const auc = rocAuc(te.y, Float64Array.from(pr));
    aucs.push(auc);
    for (let i = 0; i < te.rows; i++) sum[i] += pr[i];
    if (aucs.length > 1) console.log(`  average of first ${aucs.length}: ${rocAuc(te.y, sum).toFixed(4)}`);
    console.log(JSON.stringify({ runId: runId.slice(0, 8), variant, cols: tr.cols, seed, valAuc: +out.val.auc.toFixed(4), testAuc: +auc.toFixed(4), bestEpoch: out.bestEpoch, s: Math.round((performance.now() - t0) / 1000) }));
  }
  console.log(`${variant}: mean test ${(aucs.reduce((a, b) => a + b, 0) / aucs.length).toFixed(4)}, average of ${seeds.length}: ${rocAuc(te.y, sum).toFixed(4)}`);
}
await bench.close();

/**
 * Experiment (issue 14, fifteenth session; not part of the product): how other ways of combining a run's trained
 * networks would have scored, on a kept `bench accuracy --keep-artifacts` run. Reads the candidates from the
 * pipeline's buildEnsemble input in its history, predicts validation and test once each, and prints validation and
 * test ROC-AUC of: the best trial, the greedy selection with and without seed replicas, a uniform "bag" of the best
 * trial and its first k replicas (with and without greedy additions), and the top trials averaged.
 *
 *   node --import tsx bench/experiments/ensemble-rules.ts <the bench's workflow id, e.g. bench-accuracy-20261202T112043> [oracle AUC] [replica counts, e.g. 4,6]
 */
import { defaultPayloadConverter } from '@temporalio/common';
import { initBackend } from '../../ml/backend.js';
import { averagePredictions, selectEnsemble } from '../../ml/ensemble.js';
import { predict } from '../../ml/model.js';
import { rocAuc } from '../../ml/metrics.js';
import { transform, type Preprocessor } from '../../ml/preprocess.js';
import { ipcToFrame } from '../../store/arrow.js';
import { keys } from '../../store/artifacts.js';
import { readModel } from '../../store/models.js';
import { connectTemporal } from '../../workers/deps.js';
import type { BuildEnsembleInput } from '../../activities/ensemble.js';
import { openBench } from '../common.js';

const [workflowId, oracleArg, replicaCounts] = process.argv.slice(2);
const log = (l: string) => console.error(l);
const bench = await openBench({ log, startStack: false });
await initBackend('wasm');
const client = await connectTemporal(bench.connections);
// the pipeline's buildEnsemble input, from its own history (the bench's pipeline or its child)
const history = await client.workflow.getHandle(workflowId).fetchHistory();
let input: BuildEnsembleInput | undefined;
for (const e of history.events ?? []) {
  const a = e.activityTaskScheduledEventAttributes;
  if (a?.activityType?.name === 'buildEnsemble') input = defaultPayloadConverter.fromPayload(a.input!.payloads![0]) as BuildEnsembleInput;
}
if (!input) throw new Error('no buildEnsemble in ' + workflowId);
const runId = input.runId;
const [val, test] = await Promise.all((['val', 'test'] as const).map(async (p) => ipcToFrame(await bench.store.getKey(keys.split(runId, p)))));
const vp: Float32Array[] = [];
const tp: Float32Array[] = [];
const mats = new Map<string, { v: ReturnType<typeof transform>; t: ReturnType<typeof transform> }>();
for (const c of input.candidates) {
  if (!mats.has(c.preprocessing.sha256)) {
    const pre = await bench.store.getJson<Preprocessor>(c.preprocessing);
    mats.set(c.preprocessing.sha256, { v: transform(pre, val), t: transform(pre, test) });
  }
  const m = mats.get(c.preprocessing.sha256)!;
  const art = await readModel(bench.store, c.model);
  vp.push(await predict(art, m.v.x, m.v.rows, m.v.cols));
  tp.push(await predict(art, m.t.x, m.t.rows, m.t.cols));
}
const ids = input.candidates.map((c) => c.trialId);
const testAuc = (members: string[]) => rocAuc(test.label, averagePredictions(members.map((id) => tp[ids.indexOf(id)])));
const valAuc = (members: string[]) => rocAuc(val.label, averagePredictions(members.map((id) => vp[ids.indexOf(id)])));
const show = (name: string, members: string[]) => console.log(`${name.padEnd(44)} val ${valAuc(members).toFixed(4)} test ${testAuc(members).toFixed(4)}  ${members.join(',')}`);
const best = ids.find((id) => id.includes('-s'))?.split('-s')[0] ?? ids[0];
const replicas = ids.filter((id) => id.startsWith(`${best}-s`)).sort((a, b) => Number(a.split('-s')[1]) - Number(b.split('-s')[1]));
const trials = ids.filter((id) => !id.includes('-s'));
console.log(`run ${runId}: ${ids.length} candidates, best ${best}, ${replicas.length} replicas; oracle ${oracleArg ?? '?'}`);
const greedy = (cands: string[], maxMembers: number, bagged?: string[]) => {
  const list = cands.map((id) => ({ id, val: vp[ids.indexOf(id)] }));
  if (bagged) list.unshift({ id: 'BAG', val: averagePredictions(bagged.map((id) => vp[ids.indexOf(id)])) });
  const sel = selectEnsemble(val.label, list, { maxMembers, minGain: 1e-4 });
  return sel.members.flatMap((m) => (m === 'BAG' ? bagged! : [m]));
};
show('best trial alone', [best]);
show('default: greedy over trials, max 5', greedy(trials, 5));
show('greedy over trials + replicas, max 5', greedy(ids, 5));
show('greedy over trials + replicas, max 10', greedy(ids, 10));
for (const k of [1, 3, 5, 7].filter((k) => k <= replicas.length)) {
  const bag = [best, ...replicas.slice(0, k)];
  show(`bag of ${bag.length} seeds`, bag);
  show(`bag of ${bag.length} seeds, then greedy over trials (max +4)`, greedy(trials.filter((t) => t !== best), 5, bag));
}
// what the default selection (greedy, at most 5 members) ships when only the first k replicas trained
for (const k of (replicaCounts ?? '').split(',').filter(Boolean).map(Number)) {
  const kept = new Set([...trials, ...replicas.slice(0, k)]);
  show(`greedy over trials + first ${k} replicas, max 5`, greedy(ids.filter((id) => kept.has(id)), 5)); // best first, as the pipeline orders them
}
const top = trials.slice(0, 5);
show('top 5 trials by val, uniform', top);
show('top 3 trials by val, uniform', trials.slice(0, 3));
await client.connection.close();
await bench.close();

import { describe, expect, it } from 'vitest';
import {
  carriedInterrupted, changedSections, firstExecutedStep, lastReusedRungs, reusableBaseline, reusableInterrupted, reusableInterruptedReplicas, reusablePrefix, reusableReplicas, reusableSearchResults, reusedTrialLabel, reusedTrials,
  searchFromHistory, stepsRead, upstreamChanges,
} from '../../pipeline/resume.js';

// The rules `propensity run resume` and the resumed run's first activity share: which of the failed run's steps a
// new run takes, where it starts, and which config changes make a reused step's output stale.
const out = (step: string) => ({ of: step });

describe('reusablePrefix', () => {
  it('takes the completed steps up to the first one missing, in pipeline order', () => {
    expect(Object.keys(reusablePrefix({ ingest: out('ingest'), clean: out('clean'), search: out('search') }))).toEqual(['ingest', 'clean']);
    expect(Object.keys(reusablePrefix({ clean: out('clean') }))).toEqual([]);
    const all = { ingest: out('i'), clean: out('c'), split: out('s'), search: out('se'), final: out('f'), ensemble: out('e') };
    expect(Object.keys(reusablePrefix(all))).toEqual(['ingest', 'clean', 'split', 'search', 'final', 'ensemble']);
    expect(reusablePrefix(all).ensemble).toBe(all.ensemble);
  });

  it('passes over a final step that trained nothing (the best trial reused) when the ensemble after it completed', () => {
    const found = { ingest: out('i'), clean: out('c'), split: out('s'), search: out('se'), ensemble: out('e') };
    expect(Object.keys(reusablePrefix(found))).toEqual(['ingest', 'clean', 'split', 'search', 'ensemble']);
  });

  it('does not take an ensemble whose search is not reused', () => {
    expect(Object.keys(reusablePrefix({ ingest: out('i'), clean: out('c'), split: out('s'), ensemble: out('e') }))).toEqual(['ingest', 'clean', 'split']);
  });
});

describe('reusableReplicas', () => {
  const replicas = [
    { trialId: 't010-s2', status: 'completed' },
    { trialId: 't010-s3', status: 'failed' },
    { trialId: 't010-s4', status: 'completed' },
  ];
  const upToSearch = { ingest: out('i'), clean: out('c'), split: out('s'), search: out('se') };

  it('takes the completed replicas of an ensemble step that did not complete; a failed one trains again', () => {
    expect(reusableReplicas(upToSearch, replicas).map((r) => r.trialId)).toEqual(['t010-s2', 't010-s4']);
    expect(reusableReplicas({ ...upToSearch, final: out('f') }, replicas).map((r) => r.trialId)).toEqual(['t010-s2', 't010-s4']);
  });

  it('takes none one by one when the whole ensemble step is reused, or when the search they replicate is not', () => {
    expect(reusableReplicas({ ...upToSearch, ensemble: out('e') }, replicas)).toEqual([]);
    expect(reusableReplicas({ ingest: out('i'), clean: out('c'), split: out('s') }, replicas)).toEqual([]);
  });
});

describe('reusableInterruptedReplicas', () => {
  const upToSearch = { ingest: out('i'), clean: out('c'), split: out('s'), search: out('se') };
  const open = [
    { trialId: 't010-s2', rung: 0, epoch: 7 },
    { trialId: 't010-s3', rung: 0, epoch: 0 },
  ];

  it('continues an interrupted replica from its checkpoint once its search is reused and its ensemble step is not; one with no checkpoint starts over', () => {
    expect(reusableInterruptedReplicas(upToSearch, open)).toEqual([open[0]]);
    expect(reusableInterruptedReplicas({ ...upToSearch, final: out('f') }, open)).toEqual([open[0]]);
    expect(reusableInterruptedReplicas({ ...upToSearch, ensemble: out('e') }, open)).toEqual([]);
    expect(reusableInterruptedReplicas({ ingest: out('i'), clean: out('c'), split: out('s') }, open)).toEqual([]);
  });

  it('names it by the epoch it continues from, among the replicas taken', () => {
    const taken = reusedTrials({ replicas: [{ trialId: 't010-s4' }], interruptedReplicas: [{ trialId: 't010-s2', from: { epoch: 7 } }] });
    expect(taken.map(reusedTrialLabel)).toEqual(['t010-s2:7', 't010-s4']);
  });
});

describe('carriedInterrupted', () => {
  it('adds the trials the resumed run had been given to continue and never started; one it started is its own to report', () => {
    const open = [{ trialId: 't003', rung: 1 }];
    const earlier = [
      { trialId: 't003', rung: 1, from: { epoch: 7 } },
      { trialId: 't005', rung: 1, from: { epoch: 4 } },
      { trialId: 't006', rung: 0, from: { epoch: 2 } },
    ];
    // t006 was started at rung 0 (and completed or failed there): not carried
    expect(carriedInterrupted(open, earlier, [{ trialId: 't003', rung: 1 }, { trialId: 't006', rung: 0 }])).toEqual([
      { trialId: 't003', rung: 1 },
      { trialId: 't005', rung: 1 },
    ]);
    // a run that stopped before it trained anything carries every one
    expect(carriedInterrupted([], earlier, [])).toEqual(earlier.map(({ trialId, rung }) => ({ trialId, rung })));
    expect(carriedInterrupted(open, [], [{ trialId: 't003', rung: 1 }])).toEqual(open);
  });
});

describe('reusableSearchResults and lastReusedRungs', () => {
  const result = (trialId: string, status: string, epochs: number, budget: number, valAuc: number | null) => ({
    trialId, status, epochs, params: { epochs: budget }, valAuc, valPrAuc: valAuc && valAuc / 3, valLogLoss: valAuc && 1 - valAuc, bestEpoch: epochs, stopReason: 'maxEpochs',
    resumedFromEpoch: budget > 1 ? budget / 3 : 0, seconds: 2.5 * epochs,
    ...(status === 'completed' && { model: { modelJson: { bucket: 'b', key: `runs/r/trials/${trialId}/rung-${budget > 1 ? 1 : 0}/model/model.json` } }, checkpoint: { epoch: epochs } }),
  });
  // rung 0 all completed; at rung 1 t002 completed and t001 failed for good; t002 reached rung 2
  const results = [
    { rung: 0, result: result('t001', 'completed', 1, 1, 0.71) },
    { rung: 0, result: result('t002', 'completed', 1, 1, 0.74) },
    { rung: 0, result: result('t003', 'completed', 1, 1, 0.69) },
    { rung: 1, result: result('t002', 'completed', 3, 3, 0.78) },
    { rung: 1, result: result('t001', 'failed', 1, 3, null) },
    { rung: 2, result: result('t002', 'completed', 9, 9, 0.79) },
  ];
  const upToSplit = { ingest: out('i'), clean: out('c'), split: out('s') };
  const labels = (taken: { rung: number; result: { trialId: string } }[]) => taken.map((r) => reusedTrialLabel({ trialId: r.result.trialId, rung: r.rung }));

  it('takes the completed results of a search that did not complete, each at its rung, up to the lowest rung with a failure', () => {
    // t001 trains rung 1 again and may now be promoted to rung 2 instead of t002: t002's rung 2 trains again too
    expect(labels(reusableSearchResults(upToSplit, results))).toEqual(['t001@0', 't002@0', 't003@0', 't002@1']);
    // no failure: every completed result
    expect(labels(reusableSearchResults(upToSplit, results.filter((r) => r.result.status === 'completed')))).toEqual(['t001@0', 't002@0', 't003@0', 't002@1', 't002@2']);
    // a first-rung failure: only the first rung
    const t003Failed = results.map((r) => (r.result.trialId === 't003' ? { rung: 0, result: result('t003', 'failed', 0, 1, null) } : r));
    expect(labels(reusableSearchResults(upToSplit, t003Failed))).toEqual(['t001@0', 't002@0']);
  });

  it('takes the baseline the failed search completed, under the same conditions', () => {
    const done = { status: 'completed' };
    expect(reusableBaseline(upToSplit, done)).toBe(done);
    expect(reusableBaseline(upToSplit, { status: 'failed' })).toBeUndefined();
    expect(reusableBaseline(upToSplit, undefined)).toBeUndefined();
    expect(reusableBaseline({ ...upToSplit, search: out('se') }, done)).toBeUndefined();
    expect(reusableBaseline({ ingest: out('i'), clean: out('c') }, done)).toBeUndefined();
  });

  it('takes none one by one when the whole search is reused, or when the split it reads is not', () => {
    expect(reusableSearchResults({ ...upToSplit, search: out('se') }, results)).toEqual([]);
    expect(reusableSearchResults({ ingest: out('i'), clean: out('c') }, results)).toEqual([]);
  });

  it("gives each trial's last reused rung with the result its row shows there", () => {
    const last = lastReusedRungs(reusableSearchResults(upToSplit, results));
    expect(last.map(reusedTrialLabel)).toEqual(['t001@0', 't002@1', 't003@0']);
    expect(last[1]).toEqual({
      trialId: 't002', rung: 1,
      result: {
        budget: 3, epochs: 3, valAuc: 0.78, valPrAuc: 0.78 / 3, valLogLoss: 1 - 0.78, bestEpoch: 3, stopReason: 'maxEpochs',
        model: { bucket: 'b', key: 'runs/r/trials/t002/rung-1/model/model.json' }, resumedFromEpoch: 1, seconds: 7.5,
      },
    });
    expect(reusedTrialLabel({ trialId: 'baseline' })).toBe('baseline');
    expect(reusedTrialLabel({ trialId: 't010-s2' })).toBe('t010-s2');
  });

  it('names every trial taken one by one: search trials through their last rung, then the baseline, then replicas', () => {
    const searchTrials = { results: reusableSearchResults(upToSplit, results), baseline: { status: 'completed' } };
    expect(reusedTrials({ searchTrials, replicas: [{ trialId: 't002-s2' }] }).map(reusedTrialLabel)).toEqual(['t001@0', 't002@1', 't003@0', 'baseline', 't002-s2']);
    expect(reusedTrials({})).toEqual([]);
  });

  it('continues an interrupted trial from its checkpoint where the new search reaches its rung with the same trials', () => {
    const noFailure = results.filter((r) => r.result.status === 'completed' && r.rung < 2);
    const interrupted = [
      { trialId: 't002', rung: 2, epoch: 6 }, // in rung 2 (from epoch 3) through epoch 6
      { trialId: 't004', rung: 0, epoch: 1 }, // a first rung, through its only epoch so far
      { trialId: 't005', rung: 0, epoch: 0 }, // no checkpoint yet: trains from epoch 1
      { trialId: 't006', rung: 1, epoch: 2 }, // rung 1, but no rung-0 result of it is taken
    ];
    expect(reusableInterrupted(upToSplit, noFailure, interrupted)).toEqual([interrupted[0], interrupted[1]]);
    // not past where the rung starts: nothing to continue from
    expect(reusableInterrupted(upToSplit, noFailure, [{ trialId: 't002', rung: 2, epoch: 3 }])).toEqual([]);
    // above the lowest rung with a failure (t001 at rung 1) the new search may promote others: rung 2 starts over
    expect(reusableInterrupted(upToSplit, results.filter((r) => r.rung < 2), interrupted)).toEqual([interrupted[1]]);
    // none when the whole search is reused, or the split is not
    expect(reusableInterrupted({ ...upToSplit, search: out('se') }, noFailure, interrupted)).toEqual([]);
    expect(reusableInterrupted({ ingest: out('i') }, noFailure, interrupted)).toEqual([]);
  });

  it('names an interrupted trial by the rung it continues in and the epoch it continues from, in place of its last rung', () => {
    const searchTrials = {
      results: reusableSearchResults(upToSplit, results.filter((r) => r.result.status === 'completed' && r.rung < 2)),
      interrupted: [{ trialId: 't002', rung: 2, from: { epoch: 6 } }, { trialId: 't004', rung: 0, from: { epoch: 1 } }],
    };
    const taken = reusedTrials({ searchTrials });
    expect(taken.map(reusedTrialLabel)).toEqual(['t001@0', 't002@2:6', 't003@0', 't004@0:1']);
    expect(taken[1]).toEqual({ trialId: 't002', rung: 2, through: 6 });
    // and the config check reads the search and training sections for it, as for any trial taken
    expect(stepsRead(['ingest', 'clean', 'split'], [taken[3]])).toEqual(['ingest', 'clean', 'split', 'search']);
  });

  it('makes the config check read the search and training sections when trials are taken one by one', () => {
    expect(stepsRead(['ingest', 'clean', 'split'], [{ trialId: 't001', rung: 0 }])).toEqual(['ingest', 'clean', 'split', 'search']);
    expect(stepsRead(['ingest', 'clean', 'split'], [])).toEqual(['ingest', 'clean', 'split']);
    expect(stepsRead(['ingest', 'clean', 'split', 'search'], [{ trialId: 't001-s2' }])).toEqual(['ingest', 'clean', 'split', 'search']);
    const changed = changedSections({ search: { trials: 16 } }, { search: { trials: 24 } });
    expect(upstreamChanges(stepsRead(['ingest', 'clean', 'split'], [{ trialId: 'baseline' }]), changed)).toEqual([{ section: 'search', step: 'search' }]);
  });
});

describe('searchFromHistory', () => {
  const r = (id: string) => ({ rung: 0, result: { trialId: id } });

  it('is the whole step when the search completed and the baseline is known, trained by the run or taken by it', () => {
    expect(searchFromHistory({ search: 'S', baseline: 'B', results: [] }).search).toEqual({ search: 'S', baseline: 'B' });
    // a resume that took the baseline from the run it resumed has no baseline training of its own
    expect(searchFromHistory({ search: 'S', earlier: { results: [r('t001')], baseline: 'B0' }, results: [] }).search).toEqual({ search: 'S', baseline: 'B0' });
    expect(searchFromHistory({ search: 'S', results: [] }).search).toBeUndefined();
  });

  it('else the results the run had taken, then those its own search child completed or failed, with the baseline if known', () => {
    const h = searchFromHistory({ earlier: { results: [r('t001')], baseline: 'B0' }, results: [r('t002')] });
    expect(h.search).toBeUndefined();
    expect(h.trials).toEqual({ results: [r('t001'), r('t002')], baseline: 'B0' });
    expect(searchFromHistory({ results: [r('t002')] }).trials).toEqual({ results: [r('t002')] });
  });

  it('keeps a completed search child\'s results when the baseline beside it failed or was interrupted', () => {
    const h = searchFromHistory({ search: 'S', earlier: { results: [r('t001')] }, results: [r('t002'), r('t003')] });
    expect(h.search).toBeUndefined();
    expect(h.trials).toEqual({ results: [r('t001'), r('t002'), r('t003')] });
  });
});

describe('firstExecutedStep', () => {
  it('is the step after the last reused one, the ensemble only when the config builds one', () => {
    expect(firstExecutedStep([], true)).toBe('ingest');
    expect(firstExecutedStep(['ingest', 'clean'], true)).toBe('split');
    expect(firstExecutedStep(['ingest', 'clean', 'split', 'search'], true)).toBe('final');
    expect(firstExecutedStep(['ingest', 'clean', 'split', 'search', 'final'], true)).toBe('ensemble');
    expect(firstExecutedStep(['ingest', 'clean', 'split', 'search', 'final'], false)).toBe('evaluate');
    expect(firstExecutedStep(['ingest', 'clean', 'split', 'search', 'ensemble'], true)).toBe('evaluate');
  });
});

describe('upstreamChanges', () => {
  it('names each changed section a reused step read, with the first such step; later sections may change', () => {
    const changed = changedSections({ training: { seeds: 1 }, gate: { a: 1 }, source: { k: 1 } }, { training: { seeds: 3 }, gate: { a: 2 }, source: { k: 1 } });
    expect(changed).toEqual(['gate', 'training']);
    expect(upstreamChanges(['ingest', 'clean', 'split'], changed)).toEqual([]);
    expect(upstreamChanges(['ingest', 'clean', 'split', 'search', 'ensemble'], changed)).toEqual([{ section: 'training', step: 'search' }]);
  });
});

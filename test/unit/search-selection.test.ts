import { describe, expect, it } from 'vitest';
import type { TrainTrialOutput } from '../../activities/train.js';
import { searchLine } from '../../cli/follow.js';
import { parsePipelineConfig } from '../../pipeline/config.js';
import { formatSelection, selectionRule } from '../../ml/search.js';
import { better, type SearchProgress } from '../../workflows/search.js';

const trial = (trialId: string, classWeight: 'balanced' | 'none', valAuc: number, valLogLoss: number): TrainTrialOutput => ({
  trialId, status: 'completed', params: { classWeight } as TrainTrialOutput['params'], seed: 1, valAuc, valPrAuc: 0.3, valLogLoss,
  bestEpoch: 5, epochs: 5, resumedFromEpoch: 0, seconds: 1, backend: 'wasm',
});

describe('one selection rule from search to gate', () => {
  // balanced class weights inflate probabilities by design: their log loss is worse even when they rank better
  const trials = [trial('t001', 'none', 0.851, 0.201), trial('t002', 'balanced', 0.862, 0.452), trial('t003', 'none', 0.848, 0.199)];

  it('ranks by validation ROC-AUC by default, so a balanced trial can win', () => {
    const config = parsePipelineConfig({});
    expect(config.search.metric).toBe('valAuc');
    const ranked = [...trials].sort(better(config.search.metric));
    expect(ranked[0].trialId).toBe('t002');
    expect(ranked[0].params.classWeight).toBe('balanced');
    // under log loss the same trial would have been ranked last: the reason the default changed
    expect([...trials].sort(better('valLogLoss')).at(-1)!.trialId).toBe('t002');
  });

  it('failed trials rank last whatever the metric', () => {
    const failed = { ...trial('t004', 'none', 0, 0), status: 'failed' as const, valAuc: null, valLogLoss: null };
    expect([failed, ...trials].sort(better('valAuc')).at(-1)!.trialId).toBe('t004');
  });

  it('states the rule the same way in the config, the progress line and the summary', () => {
    expect(selectionRule('valAuc')).toBe('trials ranked by validation ROC-AUC (higher is better) (search.metric valAuc)');
    const progress: SearchProgress = {
      total: 16, rung: 1, rungs: [5, 15, 30], rungTrials: 6, rungDone: 2, running: ['t004', 't009'], done: 16, failed: 0,
      metric: 'valAuc', best: { trialId: 't002', value: 0.862, valAuc: 0.862 }, bestValAuc: 0.862,
    };
    expect(searchLine(progress)).toBe('search rung 2/3 (15 epochs): 2/6 trials done, running t004,t009; best t002 val ROC-AUC 0.8620');
    expect(formatSelection('valLogLoss', 0.2011)).toBe('val log loss 0.2011');
  });
});

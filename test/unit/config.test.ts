import { describe, expect, it } from 'vitest';
import { configHash, isSingleSelect, parsePipelineConfig } from '../../pipeline/config.js';

const problem = (input: unknown): string => {
  try {
    parsePipelineConfig(input);
  } catch (err) {
    expect(err).toMatchObject({ type: 'InvalidConfig' });
    return (err as Error).message;
  }
  throw new Error('expected the config to be rejected');
};

describe('pipeline config', () => {
  it('fills every default from an empty object', () => {
    const c = parsePipelineConfig({});
    expect(c.modelName).toBe('propensity');
    expect(c.source).toEqual({ kind: 'events', horizonDays: 14 });
    expect(c.search).toMatchObject({ trials: 16, halving: { eta: 3, minEpochs: 5 } });
    expect(c.gate.versusChampion).toEqual({ enabled: true, alpha: 0.05, minRows: 200, minPositives: 20 });
    // non-inferiority against the baseline by default: a tie within noise is not a rejection
    expect(c.gate.versusBaseline).toEqual({ enabled: true, alpha: 0.05, requireHigherAuc: false, margin: 0 });
  });

  it('model families: encodings, the final model and ensembles default as documented; sequence trials need sequence columns', () => {
    const c = parsePipelineConfig({});
    expect(c.search.space).toMatchObject({ numericEncoding: ['standard', 'ple'], pleBins: [8, 16] });
    expect(c.training).toMatchObject({ final: 'reuse', ensemble: { maxMembers: 5, minGain: 0.0001, seeds: 8, replicaBudgetSeconds: 120 } });
    expect(problem({ search: { space: { numericEncoding: ['log'] } } })).toMatch(/search\.space\.numericEncoding\.0/);
    expect(problem({ search: { space: { pleBins: [1] } } })).toMatch(/search\.space\.pleBins\.0/);
    expect(problem({ training: { final: 'refit' } })).toMatch(/training\.final/);
    expect(problem({ training: { ensemble: { seeds: 0 } } })).toMatch(/training\.ensemble\.seeds/);
    expect(problem({ training: { ensemble: { seeds: 2.5 } } })).toMatch(/training\.ensemble\.seeds/);
    // null: every replica the seeds ask for, whatever they cost
    expect(parsePipelineConfig({ training: { ensemble: { replicaBudgetSeconds: null } } }).training.ensemble.replicaBudgetSeconds).toBeNull();
    expect(parsePipelineConfig({ training: { ensemble: { seeds: 8, replicaBudgetSeconds: 120 } } }).training.ensemble).toMatchObject({ seeds: 8, replicaBudgetSeconds: 120 });
    expect(problem({ training: { ensemble: { replicaBudgetSeconds: 0 } } })).toMatch(/training\.ensemble\.replicaBudgetSeconds/);
    expect(problem({ search: { space: { sequenceUnits: [0, 16] } } })).toMatch(/search\.space\.sequenceUnits: .*source\.sequenceLength \(0 or absent\) does not ask for/);
    expect(parsePipelineConfig({ source: { kind: 'events', sequenceLength: 8 }, search: { space: { sequenceUnits: [0, 16] } } }).search.space.sequenceUnits).toEqual([0, 16]);
    // 0 alone means no sequence tower: nothing to refuse
    expect(parsePipelineConfig({ search: { space: { sequenceUnits: [0] } } }).search.space.sequenceUnits).toEqual([0]);
  });

  it('names a misspelled key, at any depth', () => {
    expect(problem({ modelNmae: 'x' })).toMatch(/unknown key "modelNmae"/);
    expect(problem({ search: { trails: 3 } })).toMatch(/unknown key "search\.trails"/);
  });

  it('rejects the bad search settings of the modeling issue, naming each key', () => {
    expect(problem({ search: { space: { dropout: [0.5, 0.1] } } })).toMatch(/search\.space\.dropout: range must be \[low, high\]/);
    expect(problem({ search: { space: { units: [] } } })).toMatch(/search\.space\.units: needs at least one choice/);
    expect(problem({ search: { space: { learningRate: [-0.1, 0.01] } } })).toMatch(/search\.space\.learningRate\.0/);
    expect(problem({ search: { trials: 0 } })).toMatch(/search\.trials/);
    expect(problem({ training: { backend: 'tpu' } })).toMatch(/training\.backend/);
    expect(problem({ gate: { thresholds: [{ metric: 'accuracy', op: '>=', value: 0.5 }] } })).toMatch(/gate\.thresholds\.0\.metric/);
    expect(problem({ source: { kind: 'csv' } })).toMatch(/source\.kind/);
    // the sampler's own rule, checked before any workflow code samples from it
    expect(problem({ search: { space: { l2: [0, 0.001] } } })).toMatch(/search\.space\.l2: expected a log range/);
    expect(problem({ search: { space: { learningRate: [0.01, 2] } } })).toMatch(/search\.space\.learningRate/);
  });

  it('accepts a table-mode source and refuses anything but one SELECT', () => {
    const c = parsePipelineConfig({ source: { kind: 'table', query: 'select * from t', entityKey: 'id', label: 'y' } });
    expect(c.source.kind).toBe('table');
    expect(problem({ source: { kind: 'table', query: 'select 1; drop table t', entityKey: 'id', label: 'y' } })).toMatch(/source\.query/);
    expect(problem({ source: { kind: 'table', query: 'select 1', entityKey: 'id; drop', label: 'y' } })).toMatch(/source\.entityKey/);
    expect(isSingleSelect("select ';' as x -- ; drop")).toBe(true);
    expect(isSingleSelect('with d as (delete from t returning *) select * from d')).toBe(false);
    expect(isSingleSelect('update t set x = 1')).toBe(false);
  });

  it('hashes the normalized config, whatever the key order', () => {
    const a = parsePipelineConfig({ modelName: 'm', split: { seed: 1, train: 0.8, val: 0.1, test: 0.1 } });
    const b = parsePipelineConfig({ split: { test: 0.1, val: 0.1, train: 0.8, seed: 1 }, modelName: 'm' });
    expect(configHash(a)).toBe(configHash(b));
    expect(configHash(a)).not.toBe(configHash(parsePipelineConfig({ modelName: 'n' })));
  });
});

describe('defaults are written once', () => {
  it("the config's search space is ml/'s default space, and scoring defaults are the workflows' (no second copy)", async () => {
    const { DEFAULT_SEARCH_SPACE } = await import('../../ml/types.js');
    const { SCORING_DEFAULTS } = await import('../../workflows/score.js');
    const c = parsePipelineConfig({});
    const { embeddingDim: _none, ...space } = c.search.space;
    expect(space).toEqual({ ...Object.fromEntries(Object.entries(DEFAULT_SEARCH_SPACE).filter(([k]) => k !== 'epochs' && k !== 'patience')) });
    expect(c.search.epochs).toBe(DEFAULT_SEARCH_SPACE.epochs);
    expect(c.scoring.activeDays).toBe(SCORING_DEFAULTS.activeDays);
    expect(c.scoring.chunkRows).toBe(SCORING_DEFAULTS.chunkRows);
    // a partly given section keeps the defaults of the keys it leaves out
    expect(parsePipelineConfig({ gate: { versusBaseline: { margin: 0.01 } } }).gate.versusBaseline).toEqual({ enabled: true, alpha: 0.05, requireHigherAuc: false, margin: 0.01 });
  });
});

import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parsePipelineConfig } from '../../pipeline/config.js';
import { historyFilePath, historyKey } from '../../audit/history.js';
import { assertKeySegment, checkId, ID_RULES, idProblem, InvalidIdError, type IdKind } from '../../pipeline/ids.js';
import { parseModelRef } from '../../registry/refs.js';
import { keys } from '../../store/artifacts.js';
import { runCliOffline } from '../support/cli.js';

const failure = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e as InvalidIdError & { type: string };
  }
  return undefined;
};

const RUN_ID = '0195f3a2-6c1e-7d4b-9a51-2f8e4c1d7b90';
const TRAVERSAL = '../../../../../tmp/x';

describe('id patterns', () => {
  it('accept every id the system builds itself', () => {
    const valid: [IdKind, string][] = [
      ['modelName', 'propensity'], ['modelName', 'shop_a'], ['modelName', 'bench-train'], ['modelName', 'a'.repeat(63)],
      ['alias', 'champion'], ['alias', 'prod'], ['alias', 'v3a'],
      ['workflowId', 'train-propensity-2026-11-29'], ['workflowId', 'train-propensity-2026-11-29-093000/search'],
      ['workflowId', 'train-propensity-2026-11-29-093000/score'], ['workflowId', 'nightly-propensity-2026-11-24T02:00:00Z'],
      ['workflowId', `train-e2e-${randomUUID()}`], ['workflowId', 'score-propensity-2026-11-29'], ['workflowId', RUN_ID],
      ['runId', RUN_ID], ['runId', 'run-m-3'], ['runRef', RUN_ID], ['runRef', 'train-p-1/score'],
      ['scheduleId', 'nightly-propensity'], ['scheduleId', 'n1.v2_x'],
    ];
    for (const [kind, value] of valid) expect(idProblem(kind, value), `${kind} ${value}`).toBeNull();
  });

  it('refuse anything else, saying what was wrong', () => {
    const invalid: [IdKind, string, string | RegExp][] = [
      ['workflowId', TRAVERSAL, 'it contains ".." (a path that climbs out of its directory)'],
      ['workflowId', 'a/../b', /contains "\.\."/],
      ['workflowId', 'a..b', /contains "\.\."/],
      ['workflowId', '/etc/passwd', 'it starts with "/"'],
      ['workflowId', 'a\\b', 'it contains a backslash'],
      ['workflowId', 'a\u0000b', 'it contains the control character U+0000 at position 2'],
      ['workflowId', 'line\nbreak', 'it contains the control character U+000A at position 5'],
      ['workflowId', '', 'it is empty'],
      ['workflowId', 'a//b', /empty segment/],
      ['workflowId', 'a/', /empty segment/],
      ['workflowId', 'a b', 'it contains " " at position 2'],
      ['workflowId', 'a/.hidden', /does not start with a letter or digit/],
      ['workflowId', 'x'.repeat(256), 'it is 256 characters long, at most 255 are allowed'],
      ['runId', 'a/b', 'it contains "/" at position 2'],
      ['runRef', '../x', /contains "\.\."/],
      ['modelName', 'Propensity', 'it does not start with a lowercase letter'],
      ['modelName', 'bank-2.x_y', 'it contains "." at position 7'],
      ['modelName', 'a'.repeat(64), 'it is 64 characters long, at most 63 are allowed'],
      ['alias', 'v3', '"v3" names a version, not an alias'],
      ['alias', 'bad alias', 'it contains " " at position 4'],
      ['scheduleId', 'nightly:1', 'it contains ":" at position 8'],
      ['scheduleId', '-x', /does not start with a letter or digit/],
    ];
    for (const [kind, value, problem] of invalid) {
      const p = idProblem(kind, value);
      if (typeof problem === 'string') expect(p, `${kind} ${JSON.stringify(value)}`).toBe(problem);
      else expect(p, `${kind} ${JSON.stringify(value)}`).toMatch(problem);
    }
  });

  it('throw a typed InvalidId error naming the kind, the value, the problem, the pattern and an example', () => {
    const e = failure(() => checkId('workflowId', TRAVERSAL))!;
    expect(e).toBeInstanceOf(InvalidIdError);
    expect(e).toMatchObject({ type: 'InvalidId', kind: 'workflowId', value: TRAVERSAL, problem: expect.stringContaining('..') });
    expect(e.message).toBe(
      `invalid workflow id "${TRAVERSAL}": it contains ".." (a path that climbs out of its directory); a workflow id is ` +
        `${ID_RULES.workflowId.rule} (pattern ${ID_RULES.workflowId.pattern.source}), e.g. train-propensity-2026-11-29`,
    );
    // control characters never reach a terminal or a log as they are
    expect(failure(() => checkId('runId', 'a\u001b[2Jb'))!.message).toContain('"a\\u001b[2Jb"');
    expect(checkId('modelName', 'propensity')).toBe('propensity');
  });

  it('is the pattern of model names in the pipeline config and in model references', () => {
    expect(() => parsePipelineConfig({ modelName: '../x' })).toThrow(/modelName.*a lowercase letter, then up to 62/s);
    expect(parsePipelineConfig({ modelName: 'shop_a' }).modelName).toBe('shop_a');
    for (const text of ['../../x', '../../x@champion', 'Propensity:3', 'p@../x', 'p@v3x/..']) {
      const e = failure(() => parseModelRef(text))!;
      expect(e?.type, text).toBe('InvalidModelRef');
      expect(e.message, text).toMatch(/invalid (model name|alias) ".*": .*e\.g\. (propensity|champion)/);
    }
    expect(parseModelRef('p@staging')).toEqual({ modelName: 'p', alias: 'staging' });
  });
});

describe('storage keys and history files', () => {
  it('keep every key under its prefix: key parts from ids are asserted', () => {
    expect(keys.raw(RUN_ID, 3)).toBe(`runs/${RUN_ID}/raw/part-00003.arrow`);
    expect(keys.trialModel(RUN_ID, 't001', 'model.json')).toBe(`runs/${RUN_ID}/trials/t001/model/model.json`);
    expect(keys.modelFile('propensity', 2, 'model-card.html')).toBe('models/propensity/v2/model-card.html');
    const refused = [
      () => keys.raw('../../etc', 0), () => keys.raw('a/b', 0), () => keys.evalReport(''), () => keys.preprocessing('a\\b'),
      () => keys.trialModel(RUN_ID, '../t', 'model.json'), () => keys.trialModel(RUN_ID, 't001', '../../x'),
      () => keys.trialModel(RUN_ID, 't001', '/abs'), () => keys.modelFile('..', 1, 'model.json'), () => keys.modelFile('m\u0000', 1, 'x'),
    ];
    for (const fn of refused) expect(failure(fn)?.type, String(fn)).toBe('InvalidId');
    expect(keys.trialModel(RUN_ID, 't001', 'weights/group1.bin')).toBe(`runs/${RUN_ID}/trials/t001/model/weights/group1.bin`);
    // a search trial's model at each rung has its own key, so a rung's result is never overwritten by the next
    expect(keys.trialModel(RUN_ID, 't001', 'model.json', 0)).toBe(`runs/${RUN_ID}/trials/t001/rung-0/model/model.json`);
    expect(keys.trialModel(RUN_ID, 't001', 'model.json', 2)).toBe(`runs/${RUN_ID}/trials/t001/rung-2/model/model.json`);
    expect(() => keys.trialModel(RUN_ID, 't001', 'model.json', -1)).toThrow(RangeError);
    expect(() => keys.trialModel(RUN_ID, 't001', 'model.json', 1.5)).toThrow(RangeError);
    expect(failure(() => assertKeySegment('..', 'run id'))!.message).toMatch(/^invalid run id "\.\." for a storage key or file name: it contains "\.\."/);
  });

  it('write histories under histories/ only', () => {
    expect(historyKey('train-p-1/search', RUN_ID)).toBe(`histories/train-p-1/search/${RUN_ID}.json`);
    expect(failure(() => historyKey(TRAVERSAL, RUN_ID))?.type).toBe('InvalidId');
    expect(failure(() => historyKey('train-p-1', '../x'))?.type).toBe('InvalidId');
    const dir = path.join(os.tmpdir(), 'histories-test');
    expect(historyFilePath('train-p-1/search', RUN_ID, dir)).toBe(path.join(dir, `train-p-1_search-${RUN_ID}.json`));
    expect(failure(() => historyFilePath(TRAVERSAL, RUN_ID, dir))?.type).toBe('InvalidId');
  });
});

describe('the CLI refuses a malformed id before it opens any service', () => {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'ids-cli-'));
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));
  const target = `ids-cli-${randomUUID()}`;
  const traversal = `../../../../../../../../tmp/${target}`;

  it.each([
    ['run --id', ['run', '--id', traversal, '--detach'], 'workflow id'],
    ['history export', ['history', 'export', traversal], 'workflow id'],
    ['history export --run-id', ['history', 'export', 'train-p-1', '--run-id', '../x'], 'run id'],
    ['replay', ['replay', traversal], 'workflow id'],
    ['run show', ['run', 'show', traversal], 'run id or workflow id'],
    ['cancel', ['cancel', traversal], 'run id or workflow id'],
    ['approve', ['approve', traversal], 'run id or workflow id'],
    ['promote', ['promote', '../m', '1'], 'model name'],
    ['promote --alias', ['promote', 'm', '1', '--alias', '../a'], 'alias'],
    ['rollback', ['rollback', 'M'], 'model name'],
    ['score --id', ['score', '--model', 'm', '--id', traversal], 'workflow id'],
    ['schedule describe', ['schedule', 'describe', '../s'], 'schedule id'],
  ])('%s: exit code 2, the problem on stderr, nothing written', async (_name, args, label) => {
    const r = await runCliOffline(args, { cwd });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^propensity: InvalidId: invalid ${label} "`));
    expect(r.stderr).toMatch(/pattern .*, e\.g\. /);
    expect(existsSync(path.join('/tmp', target))).toBe(false);
    expect(readdirSync(cwd).filter((f) => f !== '.data')).toEqual([]);
  });

  it('models show and score --model refuse a malformed reference the same way (InvalidModelRef, exit code 2)', async () => {
    for (const args of [['models', 'show', '../m'], ['score', '--model', '../../m']]) {
      const r = await runCliOffline(args, { cwd });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^propensity: InvalidModelRef: .*invalid model name/);
    }
  });
});

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePipelineConfig } from '../../pipeline/config.js';
import { loadConfigFile } from '../../cli/config-file.js';

const dir = mkdtempSync(path.join(tmpdir(), 'propensity-config-'));
const file = (name: string, text: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
};
const failure = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err as Error & { exitCode?: number; type?: string };
  }
  throw new Error('expected a failure');
};

describe('config files', () => {
  it('reads YAML and JSON to the same validated config', () => {
    const yaml = file('a.yaml', 'modelName: shop_a\nsource:\n  kind: events\n  horizonDays: 7\nsearch:\n  trials: 4\n');
    const json = file('a.json', JSON.stringify({ modelName: 'shop_a', source: { kind: 'events', horizonDays: 7 }, search: { trials: 4 } }));
    const a = loadConfigFile(yaml);
    expect(a.config).toEqual(loadConfigFile(json).config);
    expect(a.config.source).toMatchObject({ kind: 'events', horizonDays: 7 });
    expect(a.raw).toEqual({ modelName: 'shop_a', source: { kind: 'events', horizonDays: 7 }, search: { trials: 4 } });
  });

  it('names the line of a YAML syntax error, and the file', () => {
    const p = file('bad.yml', 'modelName: x\nsource:\n  kind: events\n  horizonDays: [\n');
    const err = failure(() => loadConfigFile(p));
    expect(err.message).toContain(p);
    expect(err.message).toMatch(/not valid YAML at line \d/);
    expect(err.exitCode).toBe(2);
  });

  it('rejects a file that is not an object, and a missing file', () => {
    expect(failure(() => loadConfigFile(file('list.json', '[1, 2]'))).message).toMatch(/an object of keys/);
    expect(failure(() => loadConfigFile(path.join(dir, 'nope.json'))).message).toMatch(/cannot read config file/);
  });

  it('lists the allowed keys where an unknown key sits, for the source kind given', () => {
    const msg = (input: unknown) => failure(() => parsePipelineConfig(input)).message;
    expect(msg({ trainig: {} })).toMatch(/unknown key "trainig".*allowed at the top level: .*search, source, split, training/);
    expect(msg({ source: { kind: 'events', cutof: 'x' } })).toMatch(/allowed in source: cutoff, horizonDays, kind, openedAt, sequenceLength\)/);
    expect(msg({ source: { kind: 'table', query: 'select 1', entityKey: 'a', label: 'b', extra: 1 } })).toMatch(
      /allowed in source: entityKey, features, kind, label, query\)/,
    );
    expect(msg({ gate: { thresholds: [{ metric: 'rocAuc', op: '>=', value: 1, x: 1 }] } })).toMatch(/allowed in gate\.thresholds\.0: metric, op, value/);
    // enum values are listed by zod itself
    expect(msg({ training: { backend: 'gpu' } })).toMatch(/training\.backend: .*"auto"\|"tensorflow"\|"wasm"\|"cpu"/);
    expect(failure(() => loadConfigFile(file('typo.yaml', 'modelName: x\ntrainig: {}\n'))).message).toMatch(/typo\.yaml: invalid pipeline config: unknown key "trainig"/);
  });
});

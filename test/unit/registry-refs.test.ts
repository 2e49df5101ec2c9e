import { describe, expect, it } from 'vitest';
import { formatModelRef, parseModelRef, RegistryError } from '../../registry/refs.js';
import { positions } from '../../registry/registry.js';

const refError = (text: string) => {
  try {
    parseModelRef(text);
  } catch (e) {
    return e instanceof RegistryError ? { type: e.type, message: e.message } : { type: 'not a RegistryError', message: String(e) };
  }
  return undefined;
};

describe('parseModelRef', () => {
  it('reads a bare name as its champion, name@alias as that alias, name:N and name@vN as a version', () => {
    expect(parseModelRef('propensity')).toEqual({ modelName: 'propensity', alias: 'champion' });
    expect(parseModelRef('propensity', 'challenger')).toEqual({ modelName: 'propensity', alias: 'challenger' });
    expect(parseModelRef('propensity@challenger')).toEqual({ modelName: 'propensity', alias: 'challenger' });
    expect(parseModelRef('propensity:3')).toEqual({ modelName: 'propensity', version: 3 });
    expect(parseModelRef('propensity@v12')).toEqual({ modelName: 'propensity', version: 12 });
    expect(parseModelRef('  bank-2_x_y:1 ')).toEqual({ modelName: 'bank-2_x_y', version: 1 });
  });

  it('formats back to the same reference', () => {
    for (const text of ['propensity@champion', 'propensity@challenger', 'propensity:7']) expect(formatModelRef(parseModelRef(text))).toBe(text);
    expect(formatModelRef({ modelName: 'm' })).toBe('m@champion');
  });

  it('rejects malformed references with InvalidModelRef, naming the text and the accepted forms', () => {
    for (const text of ['', '@champion', ':3', 'a@b@c', 'a:1:2', 'a@', 'a:', '-a', 'a b']) {
      const e = refError(text);
      expect(e?.type, text).toBe('InvalidModelRef');
      expect(e?.message, text).toContain(`"${text}"`);
    }
    expect(refError('a@b@c')?.message).toMatch(/use <name>, <name>@<alias> or <name>:<version>/);
  });

  it('rejects versions that are not positive integers', () => {
    for (const text of ['m:0', 'm:-1', 'm:1.5', 'm:x', 'm:v3']) {
      const e = refError(text);
      expect(e?.type, text).toBe('InvalidModelRef');
    }
    expect(refError('m:0')?.message).toBe('"m:0": a version is a positive integer, got "0"');
  });
});

describe('alias positions for rollback', () => {
  const move = (toVersion: number) => ({ toVersion, action: 'move' as const });
  const back = (toVersion: number) => ({ toVersion, action: 'rollback' as const });

  it('stacks forward moves; a rollback pops back to its target, so a second rollback goes further back', () => {
    expect(positions([move(1), move(2), move(3)])).toEqual([1, 2, 3]);
    expect(positions([move(1), move(2), move(3), back(2)])).toEqual([1, 2]);
    expect(positions([move(1), move(2), move(3), back(2), back(1)])).toEqual([1]);
    // a rollback that skipped a version (no longer approved) pops it too
    expect(positions([move(1), move(2), move(3), back(1)])).toEqual([1]);
    // moving forward again after a rollback starts a new branch
    expect(positions([move(1), move(2), back(1), move(4)])).toEqual([1, 4]);
  });

  it('keeps a rollback to a version not on the stack as a plain move and ignores repeats', () => {
    expect(positions([move(2), back(1)])).toEqual([2, 1]);
    expect(positions([move(1), move(1), move(2)])).toEqual([1, 2]);
    expect(positions([])).toEqual([]);
  });
});

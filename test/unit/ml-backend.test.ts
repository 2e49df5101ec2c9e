import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MlError } from '../../ml/errors.js';
import { backendPlan, initBackend, nativeBackendPrefix, selectBackend, type BackendCandidate, type LoadOutcome } from '../../ml/backend.js';

/** A fake loader: which candidates are importable on an imagined machine, and which were tried. */
function machine(available: Partial<Record<BackendCandidate, boolean>>) {
  const tried: BackendCandidate[] = [];
  const load = async (c: BackendCandidate): Promise<LoadOutcome> => {
    tried.push(c);
    return available[c] ? true : `Cannot find module '@tensorflow/${c}'`;
  };
  return { tried, load };
}

describe('selectBackend (pure choice logic)', () => {
  it('auto prefers GPU, then native CPU, then wasm, then cpu', async () => {
    const gpu = machine({ 'tfjs-node-gpu': true, 'tfjs-node': true, wasm: true, cpu: true });
    expect(await selectBackend('auto', gpu.load)).toMatchObject({ name: 'tensorflow', device: 'gpu' });
    expect(gpu.tried).toEqual(['tfjs-node-gpu']);

    const native = machine({ 'tfjs-node': true, wasm: true, cpu: true });
    expect(await selectBackend('auto', native.load)).toMatchObject({ name: 'tensorflow', device: 'cpu' });

    const plain = machine({ wasm: true, cpu: true });
    const info = await selectBackend('auto', plain.load);
    expect(info).toMatchObject({ name: 'wasm', device: 'cpu' });
    expect(info.detail).toContain("tfjs-node-gpu: Cannot find module");
    expect(plain.tried).toEqual(['tfjs-node-gpu', 'tfjs-node', 'wasm']);

    expect(await selectBackend('auto', machine({ cpu: true }).load)).toMatchObject({ name: 'cpu' });
  });

  it('a forced backend never falls back; failure is InvalidConfig naming it and why', async () => {
    const m = machine({ wasm: true, cpu: true });
    const err = await selectBackend('tensorflow', m.load).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MlError);
    expect((err as MlError).type).toBe('InvalidConfig');
    expect((err as MlError).message).toMatch(/backend 'tensorflow' cannot be loaded: tfjs-node-gpu: Cannot find module.*tfjs-node: Cannot find module/);
    expect(m.tried).toEqual(['tfjs-node-gpu', 'tfjs-node']);
    expect(await selectBackend('tensorflow', machine({ 'tfjs-node': true }).load)).toMatchObject({ name: 'tensorflow', device: 'cpu' });
    expect(backendPlan('wasm')).toEqual(['wasm']);
    expect(() => backendPlan('webgl' as 'cpu')).toThrow(/unknown training backend 'webgl'/);
  });

  it('the chosen backend says what was loaded: where the native package came from and its libtensorflow', async () => {
    // what tryBackend returns for the build of `propensity setup tensorflow`
    const load = async (c: BackendCandidate): Promise<LoadOutcome> =>
      c === 'tfjs-node' ? { detail: 'tfjs-node from .tools/tensorflow/cpu/node, libtensorflow 2.21.0' } : `not installed (run \`propensity setup tensorflow --gpu\`)`;
    const info = await selectBackend('auto', load);
    expect(info).toEqual({
      name: 'tensorflow',
      device: 'cpu',
      detail: 'tfjs-node from .tools/tensorflow/cpu/node, libtensorflow 2.21.0 (skipped: tfjs-node-gpu: not installed (run `propensity setup tensorflow --gpu`))',
    });
  });

  it('the GPU build on a machine whose TensorFlow sees no GPU is reported as running on the cpu', async () => {
    const load = async (c: BackendCandidate): Promise<LoadOutcome> =>
      c === 'tfjs-node-gpu' ? { detail: 'tfjs-node-gpu from .tools/tensorflow/gpu/node, libtensorflow 2.21.0, no GPU visible: ops run on the CPU', device: 'cpu' } : true;
    expect(await selectBackend('auto', load)).toMatchObject({ name: 'tensorflow', device: 'cpu', detail: expect.stringContaining('no GPU visible') });
  });

  it('the native packages are looked for under .tools/tensorflow/<cpu|gpu>/node, or PROPENSITY_TENSORFLOW_DIR', () => {
    expect(nativeBackendPrefix('cpu', {})).toBe(path.join(process.cwd(), '.tools', 'tensorflow', 'cpu', 'node'));
    expect(nativeBackendPrefix('gpu', { PROPENSITY_TENSORFLOW_DIR: '/opt/tf' })).toBe(path.join('/opt/tf', 'gpu', 'node'));
  });
});

describe('initBackend (real)', () => {
  it('really runs on wasm, idempotently', async () => {
    const info = await initBackend('wasm');
    expect(info).toEqual({ name: 'wasm', device: 'cpu', detail: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
    expect(await initBackend('wasm')).toBe(info);
    const r = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync()[0]);
    expect(r).toBe(11);
  });

  it('switches to cpu when asked, and a missing native backend is a clear InvalidConfig', async () => {
    expect(await initBackend('cpu')).toMatchObject({ name: 'cpu' });
    expect(tf.getBackend()).toBe('cpu');
    // a machine where `propensity setup tensorflow` never ran (an empty PROPENSITY_TENSORFLOW_DIR) and npm installed no tfjs-node
    const empty = mkdtempSync(path.join(os.tmpdir(), 'propensity-no-tf-'));
    const saved = process.env.PROPENSITY_TENSORFLOW_DIR;
    process.env.PROPENSITY_TENSORFLOW_DIR = empty;
    try {
      await expect(initBackend('tensorflow')).rejects.toThrow(/backend 'tensorflow' cannot be loaded: tfjs-node-gpu: not installed .*tfjs-node: not installed \(run `propensity setup tensorflow`\)/);
    } finally {
      if (saved === undefined) delete process.env.PROPENSITY_TENSORFLOW_DIR;
      else process.env.PROPENSITY_TENSORFLOW_DIR = saved;
      rmSync(empty, { recursive: true, force: true });
    }
    expect(await initBackend('wasm')).toMatchObject({ name: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
  });
});

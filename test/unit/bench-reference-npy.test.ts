import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeNpy, encodeNpy, readMatrix, writeMatrices } from '../../bench/reference/python.js';

// The benchmarks hand the Python references (numpy.load) the exact matrices our model trains on as .npy files.
describe('bench reference .npy exchange', () => {
  it('writes a NumPy 1.0 header numpy accepts: magic, 64-byte aligned data, dtype and shape', () => {
    const bytes = encodeNpy(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    const headerLen = new DataView(bytes.buffer).getUint16(8, true);
    expect(Buffer.from(bytes.subarray(0, 8))).toEqual(Buffer.from([0x93, ...Buffer.from('NUMPY'), 1, 0]));
    expect((10 + headerLen) % 64).toBe(0);
    const header = Buffer.from(bytes.subarray(10, 10 + headerLen)).toString('latin1');
    expect(header).toMatch(/^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \} *\n$/);
    expect(bytes.byteLength).toBe(10 + headerLen + 6 * 4);
  });

  it('round-trips float32 matrices and uint8 labels bit for bit, also from a file read into a pooled Buffer', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'npy-test-'));
    try {
      const x = Float32Array.from({ length: 5 * 7 }, (_, i) => Math.fround(Math.sin(i) * 1e3) / 7);
      const y = Uint8Array.from([0, 1, 1, 0, 1]);
      writeMatrices(dir, { train: { x, rows: 5, cols: 7, y } });
      const m = readMatrix(dir, 'train');
      expect([m.rows, m.cols]).toEqual([5, 7]);
      expect(m.x).toEqual(x);
      expect(m.y).toEqual(y);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads 1-D float64 predictions and refuses what it cannot read', () => {
    const p = decodeNpy(encodeNpy(new Float64Array([0.25, 0.5]), [2]));
    expect(p.shape).toEqual([2]);
    expect(Array.from(p.data)).toEqual([0.25, 0.5]);
    expect(() => decodeNpy(new Uint8Array(16))).toThrow('not a .npy file');
    expect(() => encodeNpy(new Float32Array(5), [2, 3])).toThrow('do not fill shape');
  });
});

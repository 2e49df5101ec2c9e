/**
 * The Python reference implementations (Keras, LightGBM) next to this file: their virtual environment, created on
 * first use and again only when requirements.txt changes, and the exchange format with them — the exact matrices
 * our model trains on, written as .npy files, and their predictions read back the same way.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, runChild, type Log } from '../common.js';

export const REFERENCE_DIR = path.join(ROOT, 'bench', 'reference');
const VENV = path.join(REFERENCE_DIR, '.venv');
const REQUIREMENTS = path.join(REFERENCE_DIR, 'requirements.txt');
/** sha256 of the requirements.txt the venv was installed from */
const STAMP = path.join(VENV, '.requirements.sha256');

/**
 * The venv's python, creating bench/reference/.venv with `python3 -m venv` + `pip install -r requirements.txt` when
 * it is missing or was installed from other requirements (a hash stamp). `PYTHON` names another interpreter.
 */
export async function ensureReferenceEnv(log: Log): Promise<string> {
  const python = path.join(VENV, 'bin', 'python');
  const wanted = createHash('sha256').update(readFileSync(REQUIREMENTS)).digest('hex');
  const stamp = existsSync(STAMP) ? readFileSync(STAMP, 'utf8').trim() : null;
  if (stamp === wanted && existsSync(python)) return python;
  log(`  ${stamp ? 'requirements.txt changed: reinstalling' : 'creating'} the reference venv ${path.relative(ROOT, VENV)} (tensorflow-cpu, lightgbm: a few minutes, once)`);
  rmSync(VENV, { recursive: true, force: true });
  const base = process.env.PYTHON || 'python3';
  try {
    await runChild(base, ['-m', 'venv', VENV]);
  } catch (err) {
    throw new Error(`cannot create the reference venv with '${base} -m venv' (Python 3 with venv is required; set PYTHON to another interpreter): ${(err as Error).message}`);
  }
  const quiet: Log = (l) => {
    if (/^\s*(Successfully installed|ERROR)/.test(l)) log(l);
  };
  await runChild(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-r', REQUIREMENTS], quiet);
  writeFileSync(STAMP, `${wanted}\n`);
  return python;
}

/** Runs bench/reference/<script> and returns the JSON object it emitted (a file: stdout is only kept in part). */
export async function runReference<T>(python: string, script: string, args: string[], log?: Log): Promise<T> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'propensity-reference-'));
  const result = path.join(dir, 'result.json');
  try {
    await runChild(python, [path.join(REFERENCE_DIR, script), ...args], log, {
      ...process.env,
      TF_CPP_MIN_LOG_LEVEL: '2', // TensorFlow's C++ start-up chatter
      PYTHONUNBUFFERED: '1',
      PYTHONDONTWRITEBYTECODE: '1', // no __pycache__ beside the scripts in the working tree
      PROPENSITY_BENCH_RESULT: result,
    });
    if (!existsSync(result)) throw new Error(`${script} exited without writing its result`);
    return JSON.parse(readFileSync(result, 'utf8')) as T;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// .npy (NumPy format 1.0): little-endian, C order

type NpyArray = Float32Array | Float64Array | Uint8Array;
const DESCR: Record<string, string> = { Float32Array: '<f4', Float64Array: '<f8', Uint8Array: '|u1' };

export function encodeNpy(data: NpyArray, shape: number[]): Uint8Array {
  if (shape.reduce((a, b) => a * b, 1) !== data.length) throw new Error(`npy: ${data.length} values do not fill shape (${shape})`);
  const descr = DESCR[data.constructor.name];
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in \n
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  const out = new Uint8Array(total + data.byteLength);
  out.set([0x93, ...Buffer.from('NUMPY'), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(Buffer.from(header, 'latin1'), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

export function decodeNpy(bytes: Uint8Array): { data: Float32Array | Float64Array | Uint8Array; shape: number[] } {
  if (bytes[0] !== 0x93 || Buffer.from(bytes.subarray(1, 6)).toString('latin1') !== 'NUMPY') throw new Error('not a .npy file');
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [len, start] = major === 1 ? [view.getUint16(8, true), 10] : [view.getUint32(8, true), 12];
  const header = Buffer.from(bytes.subarray(start, start + len)).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error('npy: Fortran order is not supported');
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  // a copy (Buffer#slice would be a view into Node's pool), aligned for the typed array
  const body = new Uint8Array(bytes.subarray(start + len));
  switch (descr) {
    case '<f4':
      return { data: new Float32Array(body.buffer), shape };
    case '<f8':
      return { data: new Float64Array(body.buffer), shape };
    case '|u1':
      return { data: new Uint8Array(body.buffer), shape };
    default:
      throw new Error(`npy: unsupported dtype ${descr}`);
  }
}

export interface LabeledMatrix {
  x: Float32Array;
  rows: number;
  cols: number;
  y: Uint8Array;
}
export type Part = 'train' | 'val' | 'test';

/** Writes x_<part>.npy (float32 rows × cols) and y_<part>.npy (uint8) for each part, plus meta.json. */
export function writeMatrices(dir: string, parts: Partial<Record<Part, LabeledMatrix>>, meta: object = {}): void {
  for (const [part, m] of Object.entries(parts)) {
    writeFileSync(path.join(dir, `x_${part}.npy`), encodeNpy(m.x, [m.rows, m.cols]));
    writeFileSync(path.join(dir, `y_${part}.npy`), encodeNpy(m.y, [m.rows]));
  }
  writeFileSync(path.join(dir, 'meta.json'), JSON.stringify(meta, null, 2));
}

/** Reads what writeMatrices wrote for one part. */
export function readMatrix(dir: string, part: Part): LabeledMatrix {
  const x = decodeNpy(readFileSync(path.join(dir, `x_${part}.npy`)));
  const y = decodeNpy(readFileSync(path.join(dir, `y_${part}.npy`)));
  if (!(x.data instanceof Float32Array) || !(y.data instanceof Uint8Array) || x.shape.length !== 2 || y.shape[0] !== x.shape[0]) {
    throw new Error(`${dir}: x_${part}.npy must be float32 rows × cols and y_${part}.npy uint8 of the same rows`);
  }
  return { x: x.data, rows: x.shape[0], cols: x.shape[1], y: y.data };
}

/** A 1-D prediction vector written by a reference script (float32 or float64). */
export function readPredictions(file: string): Float64Array {
  const { data, shape } = decodeNpy(readFileSync(file));
  if (shape.length !== 1) throw new Error(`${file}: predictions must be a 1-D array, got shape (${shape})`);
  return Float64Array.from(data);
}

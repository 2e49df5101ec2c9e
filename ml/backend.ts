/** TensorFlow.js backend selection: GPU (tfjs-node-gpu) > native CPU (tfjs-node) > wasm > plain JS cpu. */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { MlError, ML_ERROR } from './errors.js';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
export type BackendPreference = 'auto' | BackendName;
export interface BackendInfo {
  name: BackendName;
  device: 'gpu' | 'cpu';
  detail: string;
}

/** One way to get a backend; two candidates provide 'tensorflow' (the GPU and the CPU build of tfjs-node). */
export type BackendCandidate = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';
const CANDIDATE_INFO: Record<BackendCandidate, Omit<BackendInfo, 'detail'>> = {
  'tfjs-node-gpu': { name: 'tensorflow', device: 'gpu' },
  'tfjs-node': { name: 'tensorflow', device: 'cpu' },
  wasm: { name: 'wasm', device: 'cpu' },
  cpu: { name: 'cpu', device: 'cpu' },
};

/** Candidates to try, in order, for a preference. */
export function backendPlan(preferred: BackendPreference): BackendCandidate[] {
  switch (preferred) {
    case 'auto':
      return ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];
    case 'tensorflow':
      return ['tfjs-node-gpu', 'tfjs-node'];
    case 'wasm':
      return ['wasm'];
    case 'cpu':
      return ['cpu'];
    default:
      throw new MlError(
        ML_ERROR.InvalidConfig,
        `unknown training backend '${String(preferred)}'; use 'auto', 'tensorflow', 'wasm' or 'cpu'`,
      );
  }
}

/** true when loaded, else why not. */
export type LoadOutcome = true | string;

/**
 * The selection logic, separate from the actual loading so it can be tested without GPUs: try the plan in order,
 * stop at the first candidate that loads; if none does, fail with every reason.
 */
export async function selectBackend(
  preferred: BackendPreference,
  tryLoad: (c: BackendCandidate) => Promise<LoadOutcome>,
): Promise<BackendInfo> {
  const failures: string[] = [];
  for (const c of backendPlan(preferred)) {
    const outcome = await tryLoad(c);
    if (outcome === true) {
      const skipped = failures.length > 0 ? ` (skipped: ${failures.join('; ')})` : '';
      return { ...CANDIDATE_INFO[c], detail: `${c}${skipped}` };
    }
    failures.push(`${c}: ${outcome}`);
  }
  throw new MlError(
    ML_ERROR.InvalidConfig,
    `training backend '${preferred}' cannot be loaded: ${failures.join('; ')}. ` +
      (preferred === 'tensorflow'
        ? 'Install @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node (same version as @tensorflow/tfjs), or choose wasm.'
        : "Choose another backend or 'auto'."),
    { backend: preferred, failures },
  );
}

const require = createRequire(import.meta.url);
const message = (e: unknown): string => (e instanceof Error ? e.message.split('\n')[0] : String(e));

async function activate(name: BackendName): Promise<LoadOutcome> {
  if (tf.findBackendFactory(name) == null) {
    return `backend '${name}' was not registered with this @tensorflow/tfjs-core (duplicate tfjs-core copy or version mismatch?)`;
  }
  try {
    if (!(await tf.setBackend(name))) return `tf.setBackend('${name}') failed to initialize`;
    await tf.ready();
    return tf.getBackend() === name ? true : `tf.getBackend() is '${tf.getBackend()}' after setBackend('${name}')`;
  } catch (e) {
    return message(e);
  }
}

async function load(c: BackendCandidate): Promise<LoadOutcome> {
  try {
    switch (c) {
      case 'tfjs-node-gpu':
      case 'tfjs-node': {
        // A non-literal specifier keeps tsc and bundlers from requiring these optional packages.
        const spec: string = `@tensorflow/${c}`;
        await import(spec);
        return activate('tensorflow');
      }
      case 'wasm': {
        const wasm = await import('@tensorflow/tfjs-backend-wasm');
        // In Node the .wasm binaries are read from disk; without an explicit directory the loader looks relative to
        // the process cwd and fails. Resolve the package's own dist/ directory instead.
        const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
        wasm.setWasmPaths(dir + path.sep);
        return activate('wasm');
      }
      case 'cpu':
        return activate('cpu');
    }
  } catch (e) {
    return message(e);
  }
}

let current: { preferred: BackendPreference; info: Promise<BackendInfo> } | undefined;

/** Select and activate a backend once per process; repeated calls with the same preference return the same result. */
export function initBackend(preferred: BackendPreference = 'auto'): Promise<BackendInfo> {
  if (current?.preferred === preferred) return current.info;
  const info = selectBackend(preferred, load);
  current = { preferred, info };
  info.catch(() => {
    if (current?.info === info) current = undefined; // let a later call retry after a failure
  });
  return info;
}

/** TensorFlow.js backend selection: GPU (tfjs-node-gpu) > native CPU (tfjs-node) > wasm > plain JS cpu. */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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

/** Candidates to try, in order, for a preference: `auto` prefers the native TensorFlow backend when it loads. */
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

/** true (or what was loaded, and the device it found when that differs from the candidate's) when loaded, else why not. */
export type LoadOutcome = true | { detail: string; device?: BackendInfo['device'] } | string;

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
    if (typeof outcome !== 'string') {
      const skipped = failures.length > 0 ? ` (skipped: ${failures.join('; ')})` : '';
      const device = outcome === true ? CANDIDATE_INFO[c].device : (outcome.device ?? CANDIDATE_INFO[c].device);
      return { ...CANDIDATE_INFO[c], device, detail: `${outcome === true ? c : outcome.detail}${skipped}` };
    }
    failures.push(`${c}: ${outcome}`);
  }
  throw new MlError(
    ML_ERROR.InvalidConfig,
    `training backend '${preferred}' cannot be loaded: ${failures.join('; ')}. ` +
      (preferred === 'tensorflow'
        ? 'Run `propensity setup tensorflow` (or `--gpu`), or install @tensorflow/tfjs-node(-gpu) of the same version as @tensorflow/tfjs, or choose wasm.'
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

/**
 * Where `propensity setup tensorflow [--gpu]` installs @tensorflow/tfjs-node(-gpu), built against PyPI's libtensorflow:
 * `<repo>/.tools/tensorflow/<cpu|gpu>/node`, outside the project's node_modules so that no `npm install` or `npm ci`
 * prunes it (PROPENSITY_TENSORFLOW_DIR replaces `<repo>/.tools/tensorflow`).
 */
export function nativeBackendPrefix(variant: 'cpu' | 'gpu', env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.PROPENSITY_TENSORFLOW_DIR ? path.resolve(env.PROPENSITY_TENSORFLOW_DIR) : path.join(repoRoot(), '.tools', 'tensorflow'), variant, 'node');
}

function repoRoot(): string {
  // ml/backend.ts under tsx, dist/ml/backend.js compiled: the first folder above with a package.json is the project's
  const from = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return from;
  }
}

/**
 * Loads a native package: the copy `propensity setup tensorflow` built (preferred: it was built and verified against
 * a current libtensorflow), else one installed into the project's own node_modules (the stock `npm install
 * @tensorflow/tfjs-node`, where its prebuilt libtensorflow can be downloaded). Returns where it came from.
 */
async function importNative(c: 'tfjs-node' | 'tfjs-node-gpu'): Promise<string> {
  const spec = `@tensorflow/${c}`;
  const prefix = nativeBackendPrefix(c === 'tfjs-node-gpu' ? 'gpu' : 'cpu');
  if (existsSync(path.join(prefix, 'node_modules', spec, 'package.json'))) {
    // the prefix links @tensorflow/tfjs* to the project's copies, so the backend registers with this tfjs-core
    createRequire(path.join(prefix, 'package.json'))(spec);
    const rel = path.relative(repoRoot(), prefix);
    return rel.startsWith('..') ? prefix : rel;
  }
  try {
    require.resolve(spec);
  } catch {
    throw new Error(`not installed (run \`propensity setup tensorflow${c === 'tfjs-node-gpu' ? ' --gpu' : ''}\`)`);
  }
  // A non-literal specifier keeps tsc and bundlers from requiring these optional packages.
  await import(spec);
  return 'node_modules';
}

/** libtensorflow's version as the active native backend reports it. */
function libtensorflowVersion(): string | undefined {
  const binding = (tf.backend() as unknown as { binding?: { TF_Version?: string } }).binding;
  return binding?.TF_Version;
}

/** Loads and activates one candidate (what selectBackend tries); `propensity setup tensorflow` verifies with it. */
export async function tryBackend(c: BackendCandidate): Promise<LoadOutcome> {
  try {
    switch (c) {
      case 'tfjs-node-gpu':
      case 'tfjs-node': {
        // TensorFlow's C++ INFO lines (CPU features, oneDNN) on every start are noise; warnings and errors still show
        process.env.TF_CPP_MIN_LOG_LEVEL ??= '1';
        const from = await importNative(c);
        const ok = await activate('tensorflow');
        if (ok !== true) return ok;
        const detail = `${c} from ${from}, libtensorflow ${libtensorflowVersion() ?? 'unknown'}`;
        // the GPU build runs on the CPU where TensorFlow sees no GPU (no driver, CUDA_VISIBLE_DEVICES=''): say so
        const onGpu = (tf.backend() as unknown as { isUsingGpuDevice?: boolean }).isUsingGpuDevice === true;
        return c === 'tfjs-node-gpu' && !onGpu ? { detail: `${detail}, no GPU visible: ops run on the CPU`, device: 'cpu' } : { detail };
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
  const info = selectBackend(preferred, tryBackend);
  current = { preferred, info };
  info.catch(() => {
    if (current?.info === info) current = undefined; // let a later call retry after a failure
  });
  return info;
}

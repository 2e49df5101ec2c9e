/**
 * `propensity setup tensorflow [--gpu]`: the native TensorFlow backend, built here instead of downloaded.
 *
 * @tensorflow/tfjs-node(-gpu) 4.x downloads libtensorflow 2.9.1 (CUDA 11.2) from Google's bucket, which offline
 * machines cannot reach and current GPUs run only through PTX JIT. Its addon uses only TensorFlow's C API, so it is
 * built from source (node-gyp) against the libtensorflow that PyPI's `tensorflow-cpu` (or, for --gpu, `tensorflow`
 * with its CUDA 12 `nvidia-*` wheels) ships:
 *
 *   .tools/tensorflow/venv                   the Python that runs pip
 *   .tools/tensorflow/wheels/                pip's downloads, reused offline
 *   .tools/tensorflow/<cpu|gpu>/libtensorflow  lib/ (the wheel's .so files and the names the addon links), include/
 *   .tools/tensorflow/<cpu|gpu>/node         an npm prefix holding the package, its deps/ linked to libtensorflow,
 *                                            its @tensorflow/tfjs* linked to the project's copies (one tfjs-core)
 *   .tools/tensorflow/<cpu|gpu>/install.json what was installed, checked by the next run
 *
 * The prefix lives outside the project's node_modules and package.json: the backend is opt-in, a clean `npm install`
 * never tries to build it, and no `npm install`/`npm ci` prunes it. ml/backend.ts loads it from there.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findRepoRoot } from './env.js';
import { ConfigError } from './errors.js';

/** The libtensorflow version built against: the one bench/reference's Keras runs on, so that the bench compares like with like. */
export const TENSORFLOW_VERSION = '2.21.0';

export type NativeVariant = 'cpu' | 'gpu';

export interface SetupTensorflowOptions {
  gpu?: boolean;
  /** rebuild even when the installed backend checks out */
  force?: boolean;
  /** the PyPI tensorflow version whose libtensorflow to build against */
  tensorflowVersion?: string;
  /** default PROPENSITY_TENSORFLOW_DIR, else <repo>/.tools/tensorflow */
  dir?: string;
  log?: (line: string) => void;
}

export interface NativeCheck {
  /** what the project's loader reported (ml/backend.ts tryBackend) */
  detail: string;
  /** libtensorflow's own TF_Version() */
  libtensorflow: string;
  /** whether TensorFlow placed ops on a GPU */
  gpuDevice: boolean;
  /** [[1,2],[3,4]] × [[5],[6]] */
  matmul: number[];
  /** binary cross-entropy of a 2-epoch fit of one dense unit */
  loss: number[];
}

export interface SetupTensorflowResult {
  status: 'installed' | 'already-installed';
  variant: NativeVariant;
  package: string;
  packageVersion: string;
  tensorflowVersion: string;
  wheels: string[];
  prefix: string;
  libDir: string;
  check: NativeCheck;
  steps: { step: string; seconds: number; note: string }[];
  seconds: number;
}

interface Stamp {
  package: string;
  packageVersion: string;
  tensorflowVersion: string;
  wheels: string[];
  nodeAbi: string;
  installedAt: string;
}

/** A path as the user reads it: relative inside the project, absolute outside it. */
const shown = (root: string, p: string) => (path.relative(root, p).startsWith('..') ? p : path.relative(root, p) || '.');
const seconds = (since: number) => Math.round((Date.now() - since) / 100) / 10;

/** Installs (or checks) the native backend; see the module comment for what goes where. */
export async function setupTensorflow(opts: SetupTensorflowOptions = {}): Promise<SetupTensorflowResult> {
  const started = Date.now();
  const log = opts.log ?? ((l: string) => console.log(l));
  const root = findRepoRoot();
  const variant: NativeVariant = opts.gpu ? 'gpu' : 'cpu';
  const tfVersion = opts.tensorflowVersion ?? TENSORFLOW_VERSION;
  const base = path.resolve(opts.dir ?? process.env.PROPENSITY_TENSORFLOW_DIR ?? path.join(root, '.tools', 'tensorflow'));
  const home = path.join(base, variant);
  const libtf = path.join(home, 'libtensorflow');
  const prefix = path.join(home, 'node');
  const pkg = variant === 'gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
  const pkgDir = path.join(prefix, 'node_modules', pkg);
  const projectRequire = createRequire(path.join(root, 'package.json'));
  // the addon's JavaScript requires @tensorflow/tfjs of its own version: the project's
  const pkgVersion = (JSON.parse(readFileSync(projectRequire.resolve('@tensorflow/tfjs-core/package.json'), 'utf8')) as { version: string }).version;
  const stampFile = path.join(home, 'install.json');
  const steps: SetupTensorflowResult['steps'] = [];
  const step = async <T>(name: string, fn: () => Promise<{ value: T; note: string }>): Promise<T> => {
    const t = Date.now();
    const { value, note } = await fn();
    steps.push({ step: name, seconds: seconds(t), note });
    log(`  ${name.padEnd(14)} ${note} (${seconds(t)} s)`);
    return value;
  };
  const result = (status: SetupTensorflowResult['status'], wheels: string[], check: NativeCheck): SetupTensorflowResult => ({
    status, variant, package: pkg, packageVersion: pkgVersion, tensorflowVersion: tfVersion, wheels, prefix, libDir: path.join(libtf, 'lib'), check, steps, seconds: seconds(started),
  });

  const wanted = { package: pkg, packageVersion: pkgVersion, tensorflowVersion: tfVersion, nodeAbi: process.versions.modules };
  const stamp = readStamp(stampFile);
  if (!opts.force && stamp && (Object.keys(wanted) as (keyof typeof wanted)[]).every((k) => stamp[k] === wanted[k])) {
    const check = await verify(root, variant, prefix).catch((err: Error) => err);
    if (!(check instanceof Error)) {
      log(`${pkg} ${pkgVersion} on libtensorflow ${check.libtensorflow} is already installed in ${shown(root, prefix)} (checked: ${check.detail}; use --force to rebuild)`);
      return result('already-installed', stamp.wheels, check);
    }
    log(`the installed ${pkg} fails its check (${check.message.split('\n')[0]}): rebuilding`);
  }
  rmSync(stampFile, { force: true });
  log(`setting up ${pkg} ${pkgVersion} against libtensorflow ${tfVersion} from PyPI (${variant === 'gpu' ? `tensorflow[and-cuda]==${tfVersion}` : `tensorflow-cpu==${tfVersion}`}) in ${shown(root, home)}`);

  const python = await step('python', () => ensureVenv(path.join(base, 'venv')));
  const wheelsDir = path.join(base, 'wheels');
  const wheels = await step('wheels', () => ensureWheels(python, wheelsDir, variant, tfVersion));
  await step('libtensorflow', () => layOutLibtensorflow(python, wheelsDir, wheels, libtf));
  await step('npm', () => installPackage(root, prefix, pkg, pkgVersion, projectRequire, opts.force === true));
  await step('addon', () => buildAddon(pkgDir, libtf, wheels, opts.force === true));
  const check = await step('check', async () => {
    const c = await verify(root, variant, prefix);
    return { value: c, note: `${c.detail}; matmul ${JSON.stringify(c.matmul)}, fit loss ${c.loss.map((l) => l.toFixed(4)).join(' → ')}${variant === 'gpu' ? `, GPU device: ${c.gpuDevice ? 'yes' : 'no (none visible: ops ran on the CPU)'}` : ''}` };
  });
  const newStamp: Stamp = { ...wanted, wheels, installedAt: new Date().toISOString() };
  writeFileSync(stampFile, `${JSON.stringify(newStamp, null, 2)}\n`);
  const done = result('installed', wheels, check);
  log(`installed ${pkg} ${pkgVersion} on libtensorflow ${check.libtensorflow} in ${done.seconds} s; PROPENSITY_BACKEND=auto now selects it`);
  return done;
}

function readStamp(file: string): Stamp | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Stamp;
  } catch {
    return undefined;
  }
}

/** A venv for pip (PEP 668 systems refuse pip on the system Python); PYTHON names another interpreter. */
async function ensureVenv(venv: string): Promise<{ value: string; note: string }> {
  const python = path.join(venv, 'bin', 'python');
  if (existsSync(python)) return { value: python, note: `reused ${venv}` };
  const base = process.env.PYTHON || 'python3';
  try {
    await run(base, ['-m', 'venv', venv]);
  } catch (err) {
    throw new ConfigError('PYTHON_MISSING', `cannot create a venv with '${base} -m venv' (${firstLine(err)}): install Python 3 with venv and pip, or set PYTHON`);
  }
  const version = (await run(python, ['--version'])).trim();
  return { value: python, note: `created ${venv} (${version})` };
}

/**
 * The wheels, from the cache when they are there (pip --no-index: works offline), else from the index. Only the
 * shared libraries and headers are used, so any CPython tag of the right platform serves.
 */
async function ensureWheels(python: string, dir: string, variant: NativeVariant, version: string): Promise<{ value: string[]; note: string }> {
  mkdirSync(dir, { recursive: true });
  const fetched: string[] = [];
  const get = async (requirement: string): Promise<string> => {
    const name = requirement.split(/[<>=!~ ;[]/)[0];
    const before = new Set(readdirSync(dir));
    const pip = ['-m', 'pip', 'download', '--disable-pip-version-check', '--no-input', '--no-deps', '--only-binary=:all:', '--dest', dir];
    try {
      await run(python, [...pip, '--no-index', '--find-links', dir, requirement]);
    } catch {
      try {
        await run(python, [...pip, requirement]);
      } catch (err) {
        throw new ConfigError('TENSORFLOW_WHEEL_MISSING', `pip cannot download ${requirement} and ${dir} has no matching wheel (${firstLine(err)}): connect to PyPI once (or copy the wheel there) and rerun`);
      }
      fetched.push(requirement);
    }
    const wheel = findWheel(dir, name, requirement, before);
    if (!wheel) throw new ConfigError('TENSORFLOW_WHEEL_MISSING', `pip downloaded ${requirement} but no ${normalise(name)}-*.whl is in ${dir}`);
    return wheel;
  };
  const tfWheel = await get(variant === 'gpu' ? `tensorflow==${version}` : `tensorflow-cpu==${version}`);
  const wheels = [tfWheel];
  if (variant === 'gpu') {
    // the CUDA 12 libraries TensorFlow loads at run time: its `and-cuda` extra, each wheel without its own deps
    const requires = JSON.parse(await run(python, ['-c', PY_HELPER, 'requires', path.join(dir, tfWheel)])) as string[];
    const cuda = requires.filter((r) => /extra\s*==\s*["']and-cuda["']/.test(r)).map((r) => r.split(';')[0].trim());
    if (!cuda.length) throw new ConfigError('TENSORFLOW_WHEEL_INVALID', `${tfWheel} declares no and-cuda extra: pick a tensorflow version with CUDA wheels on PyPI`);
    for (const r of cuda) wheels.push(await get(r));
  }
  const mb = wheels.reduce((s, w) => s + statSync(path.join(dir, w)).size, 0) / 2 ** 20;
  return { value: wheels, note: `${wheels.length === 1 ? wheels[0] : `${wheels.length} wheels`} (${Math.round(mb)} MB, ${fetched.length ? `downloaded ${fetched.length}` : 'all from the cache'}) in ${dir}` };
}

const normalise = (name: string) => name.toLowerCase().replace(/[-_.]+/g, '_');

/** The wheel pip just named: the newest file for the distribution (pip keeps an existing file as it is). */
function findWheel(dir: string, name: string, requirement: string, before: Set<string>): string | undefined {
  const exact = /==\s*([^\s,;]+)/.exec(requirement)?.[1];
  const candidates = readdirSync(dir).filter((f) => f.endsWith('.whl') && normalise(f.split('-')[0]) === normalise(name) && (!exact || f.split('-')[1] === exact));
  const fresh = candidates.filter((f) => !before.has(f));
  const pool = fresh.length ? fresh : candidates;
  return pool.sort((a, b) => statSync(path.join(dir, b)).mtimeMs - statSync(path.join(dir, a)).mtimeMs)[0];
}

/**
 * lib/ and include/ as tfjs-node's binding.gyp expects (`-ltensorflow -ltensorflow_framework`, headers
 * tensorflow/c/c_api.h and tensorflow/c/eager/c_api.h), from the wheel: PyPI ships the C API in libtensorflow_cc.so.2,
 * so libtensorflow.so names it. The CUDA wheels' nvidia/ tree goes beside lib/, where the GPU libraries' RUNPATH
 * ($ORIGIN/../nvidia/…) looks for it.
 */
async function layOutLibtensorflow(python: string, wheelsDir: string, wheels: string[], dir: string): Promise<{ value: void; note: string }> {
  const marker = path.join(dir, '.wheels');
  const lib = path.join(dir, 'lib');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === wheels.join('\n')) return { value: undefined, note: `reused ${dir}` };
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(lib, { recursive: true });
  const [tfWheel, ...cuda] = wheels;
  const extract = (wheel: string, dest: string, strip: string, ...prefixes: string[]) =>
    run(python, ['-c', PY_HELPER, 'extract', path.join(wheelsDir, wheel), dest, strip, ...prefixes]);
  const libs = JSON.parse(await extract(tfWheel, lib, 'tensorflow/', 'tensorflow/libtensorflow_cc.so', 'tensorflow/libtensorflow_framework.so')) as string[];
  // the C API's headers and what they include (ctstring from tensorflow/core/platform and tsl, tsl_status from xla)
  const headers = JSON.parse(
    await extract(tfWheel, path.join(dir, 'include'), 'tensorflow/include/', 'tensorflow/include/tensorflow/c/', 'tensorflow/include/tensorflow/core/platform/', 'tensorflow/include/tsl/platform/', 'tensorflow/include/xla/tsl/c/'),
  ) as string[];
  const cc = libs.find((f) => /^libtensorflow_cc\.so\.\d+$/.test(f));
  const fw = libs.find((f) => /^libtensorflow_framework\.so\.\d+$/.test(f));
  if (!cc || !fw || !headers.includes('tensorflow/c/eager/c_api.h')) {
    throw new ConfigError('TENSORFLOW_WHEEL_INVALID', `${tfWheel} lacks libtensorflow_cc.so.N, libtensorflow_framework.so.N or tensorflow/c/eager/c_api.h (found ${libs.join(', ') || 'no libraries'})`);
  }
  for (const [link, target] of [['libtensorflow.so', cc], [cc.replace('_cc', ''), cc], ['libtensorflow_framework.so', fw]]) symlinkSync(target, path.join(lib, link));
  for (const w of cuda) await extract(w, dir, '', 'nvidia/');
  writeFileSync(marker, wheels.join('\n'));
  const mb = libs.reduce((s, f) => s + statSync(path.join(lib, f)).size, 0) / 2 ** 20;
  return { value: undefined, note: `${libs.join(', ')} (${Math.round(mb)} MB) + ${headers.length} headers${cuda.length ? ` + ${cuda.length} CUDA wheels' nvidia/` : ''} in ${dir}` };
}

/**
 * The package and its dependencies into the prefix, without its install script (which would download libtensorflow
 * 2.9.1); then its @tensorflow/tfjs* replaced by links to the project's copies, so that the backend registers with
 * the tfjs-core the project trains with.
 */
async function installPackage(
  root: string, prefix: string, pkg: string, version: string, projectRequire: NodeJS.Require, force: boolean,
): Promise<{ value: void; note: string }> {
  const pkgJson = path.join(prefix, 'node_modules', pkg, 'package.json');
  const installed = existsSync(pkgJson) ? (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string }).version : undefined;
  if (!force && installed === version) {
    return { value: undefined, note: `reused ${pkg}@${version} in ${prefix}` + linkProjectTfjs(prefix, pkg, projectRequire) };
  }
  rmSync(path.join(prefix, 'node_modules'), { recursive: true, force: true });
  mkdirSync(prefix, { recursive: true });
  writeFileSync(
    path.join(prefix, 'package.json'),
    `${JSON.stringify({ name: 'propensity-native-tensorflow', private: true, description: 'written by propensity setup tensorflow', dependencies: { [pkg]: version } }, null, 2)}\n`,
  );
  // --prefer-offline: npm's cache answers a rerun without the registry
  await run(npmCommand(), ['install', '--prefix', prefix, '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
    cwd: prefix,
    env: withoutNpmContext(),
  });
  return { value: undefined, note: `${pkg}@${version} and its dependencies in ${prefix} (install script skipped)` + linkProjectTfjs(prefix, pkg, projectRequire) };
}

function linkProjectTfjs(prefix: string, pkg: string, projectRequire: NodeJS.Require): string {
  const scope = path.join(prefix, 'node_modules', '@tensorflow');
  const linked: string[] = [];
  for (const name of readdirSync(scope)) {
    const full = `@tensorflow/${name}`;
    if (full === pkg) continue;
    let target: string;
    try {
      target = path.dirname(projectRequire.resolve(`${full}/package.json`));
    } catch {
      continue; // not one of the project's: the prefix's own copy stays
    }
    rmSync(path.join(scope, name), { recursive: true, force: true });
    symlinkSync(target, path.join(scope, name), 'dir');
    linked.push(name);
  }
  return linked.length ? `; linked ${linked.join(', ')} to the project's` : '';
}

/** node-gyp through the package's node-pre-gyp, offline: the running Node's headers and npm's own node-gyp. */
async function buildAddon(pkgDir: string, libtf: string, wheels: string[], force: boolean): Promise<{ value: void; note: string }> {
  // beside lib/, which node-pre-gyp keeps (it may clean build/)
  const marker = path.join(pkgDir, 'lib', '.propensity-built');
  const want = [process.versions.modules, ...wheels].join('\n');
  const addon = () => findAddon(pkgDir);
  if (!force && addon() && existsSync(marker) && readFileSync(marker, 'utf8') === want) return { value: undefined, note: `reused ${addon()}` };
  const deps = path.join(pkgDir, 'deps');
  rmSync(deps, { recursive: true, force: true });
  symlinkSync(path.relative(pkgDir, libtf), deps, 'dir');
  const preGyp = createRequire(path.join(pkgDir, 'package.json')).resolve('@mapbox/node-pre-gyp/bin/node-pre-gyp');
  // `install --build-from-source` compiles the one N-API version this Node loads (`rebuild` would compile all six)
  for (const d of readdirSync(pkgDir)) if (d === 'lib' || d.startsWith('build')) rmSync(path.join(pkgDir, d), { recursive: true, force: true });
  const args = [preGyp, 'install', '--build-from-source'];
  const nodeDir = path.resolve(path.dirname(process.execPath), '..');
  // the headers of the running Node, when it has them (else node-gyp fetches them, which needs the internet once)
  if (existsSync(path.join(nodeDir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodeDir}`);
  const gyp = nodeGyp();
  await run(process.execPath, args, { cwd: pkgDir, env: { ...withoutNpmContext(), ...(gyp ? { npm_config_node_gyp: gyp } : {}) }, nice: true });
  const built = addon();
  if (!built) throw new Error(`node-pre-gyp finished but no tfjs_binding.node is under ${path.join(pkgDir, 'lib')}`);
  writeFileSync(marker, want);
  return { value: undefined, note: `compiled ${path.relative(pkgDir, built)} against ${path.join(libtf, 'lib')} (Node ${process.version}${gyp ? ', npm\'s node-gyp' : ''})` };
}

function findAddon(pkgDir: string): string | undefined {
  const lib = path.join(pkgDir, 'lib');
  if (!existsSync(lib)) return undefined;
  for (const d of readdirSync(lib)) {
    const f = path.join(lib, d, 'tfjs_binding.node');
    if (existsSync(f)) return f;
  }
  return undefined;
}

/** npm's bundled node-gyp: from npm_execpath when run through npm/npx, else beside the running Node. */
function nodeGyp(): string | undefined {
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c): c is string => !!c && existsSync(c));
}

function npmCommand(): string {
  return process.platform === 'win32' ? 'npm.cmd' : 'npm';
}

/** The environment without what `npm run`/`npx` put there (a prefix, a global flag) that would redirect a nested npm. */
function withoutNpmContext(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_(config_(prefix|global|location|save.*)|package_|lifecycle_)/i.test(k)));
}

/**
 * Loads the variant through the project's own loader (ml/backend.ts tryBackend) in a fresh process, then a matmul and a
 * two-epoch fit: the addon loads, links libtensorflow and computes.
 */
async function verify(root: string, variant: NativeVariant, prefix: string): Promise<NativeCheck> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const compiled = path.join(here, '..', 'ml', 'backend.js');
  const module = existsSync(compiled) ? compiled : path.join(here, '..', 'ml', 'backend.ts');
  const script = `
    const { tryBackend } = await import(${JSON.stringify(pathToUrl(module))});
    const outcome = await tryBackend(${JSON.stringify(variant === 'gpu' ? 'tfjs-node-gpu' : 'tfjs-node')});
    if (typeof outcome === 'string') { console.error(outcome); process.exit(3); }
    const tf = await import('@tensorflow/tfjs');
    const be = tf.backend();
    const matmul = Array.from(tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]])).dataSync());
    const model = tf.sequential({ layers: [tf.layers.dense({ units: 1, inputShape: [2], activation: 'sigmoid' })] });
    model.compile({ optimizer: tf.train.adam(0.1), loss: 'binaryCrossentropy' });
    const h = await model.fit(tf.tensor2d([[0, 1], [1, 0], [1, 1], [0, 0]]), tf.tensor2d([[1], [0], [1], [0]]), { epochs: 2, verbose: 0 });
    console.log(JSON.stringify({ detail: outcome === true ? 'loaded' : outcome.detail, libtensorflow: be.binding?.TF_Version ?? 'unknown', gpuDevice: !!be.isUsingGpuDevice, matmul, loss: h.history.loss }));
  `;
  const env = { ...process.env, PROPENSITY_TENSORFLOW_DIR: path.dirname(path.dirname(prefix)), TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? '2' };
  const args = [...(module.endsWith('.ts') ? ['--import', 'tsx'] : []), '--input-type=module', '-e', script];
  const out = await run(process.execPath, args, { cwd: root, env });
  const check = JSON.parse(out.trim().split('\n').at(-1)!) as NativeCheck;
  if (check.matmul[0] !== 17 || check.matmul[1] !== 39) throw new Error(`the native backend computed ${JSON.stringify(check.matmul)} for a matmul whose answer is [17,39]`);
  return check;
}

const pathToUrl = (p: string) => new URL(`file://${path.resolve(p)}`).href;
const firstLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).trim().split('\n')[0];

/** Runs a command to its end; its stdout, or an error carrying the last lines of its output. */
function run(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; nice?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    // a compile shares the machine: it yields to interactive work
    if (o.nice && child.pid) {
      try {
        os.setPriority(child.pid, 10);
      } catch {
        /* not permitted: build at normal priority */
      }
    }
    let out = '';
    let all = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      all = (all + d).slice(-8000);
    });
    child.stderr.on('data', (d: Buffer) => {
      all = (all + d).slice(-8000);
    });
    child.on('error', (err) => reject(new Error(`${cmd}: ${err.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${path.basename(cmd)} ${args.filter((a) => !a.includes('\n')).slice(0, 4).join(' ')} exited ${code}:\n${all.trim().split('\n').slice(-15).join('\n')}`));
    });
  });
}

/** Reads a wheel with Python's zipfile (no unzip needed): its Requires-Dist, or members extracted under prefixes. */
const PY_HELPER = `
import json, os, shutil, sys, zipfile
cmd, wheel = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(wheel)
if cmd == 'requires':
    meta = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
    lines = z.read(meta).decode('utf-8').splitlines()
    print(json.dumps([l.split(':', 1)[1].strip() for l in lines if l.startswith('Requires-Dist:')]))
elif cmd == 'extract':
    dest, strip, prefixes = sys.argv[3], sys.argv[4], sys.argv[5:]
    done = []
    for info in z.infolist():
        n = info.filename
        if n.endswith('/') or not any(n.startswith(p) for p in prefixes):
            continue
        rel = n[len(strip):] if strip and n.startswith(strip) else n
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(target, mode)
        done.append(rel)
    print(json.dumps(done))
`;

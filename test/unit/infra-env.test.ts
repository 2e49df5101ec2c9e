import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, resolveConnections } from '../../infra/connections.js';
import { findRepoRoot, loadEnv } from '../../infra/env.js';

describe('loadEnv', () => {
  it('applies the documented defaults to an empty environment', () => {
    const env = loadEnv({});
    expect(env).toMatchObject({
      TEMPORAL_NAMESPACE: 'default',
      S3_BUCKET: 'propensity',
      S3_REGION: 'us-east-1',
      PROPENSITY_TEMPORAL_PORT: 7233,
      PROPENSITY_TEMPORAL_UI_PORT: 8233,
      PROPENSITY_PG_PORT: 54329,
      PROPENSITY_S3_PORT: 4569,
      PROPENSITY_DATA_DIR: path.join(findRepoRoot(), '.data'),
    });
    expect(env.TEMPORAL_ADDRESS).toBeUndefined();
    expect(env.S3_FORCE_PATH_STYLE).toBeUndefined();
    expect(Object.isFrozen(env)).toBe(true);
  });

  it('finds the repo root as the folder with package.json', () => {
    expect(findRepoRoot()).toBe(path.resolve(import.meta.dirname, '../..'));
  });

  it('parses ports and booleans, and defaults path-style addressing on when S3_ENDPOINT is set', () => {
    expect(loadEnv({ PROPENSITY_PG_PORT: '5433', S3_ENDPOINT: 'http://127.0.0.1:9000' })).toMatchObject({ PROPENSITY_PG_PORT: 5433, S3_FORCE_PATH_STYLE: true });
    expect(loadEnv({ S3_ENDPOINT: 'http://127.0.0.1:9000', S3_FORCE_PATH_STYLE: 'false' }).S3_FORCE_PATH_STYLE).toBe(false);
  });

  it('treats an empty variable as unset', () => {
    const env = loadEnv({ PROPENSITY_PG_PORT: '', TEMPORAL_ADDRESS: ' ' });
    expect(env.PROPENSITY_PG_PORT).toBe(54329);
    expect(env.TEMPORAL_ADDRESS).toBeUndefined();
  });

  it.each([['abc'], ['0'], ['70000'], ['54.5']])('rejects PROPENSITY_PG_PORT=%s naming the variable', (value) => {
    expect(() => loadEnv({ PROPENSITY_PG_PORT: value })).toThrow(/PROPENSITY_PG_PORT/);
    expect(() => loadEnv({ PROPENSITY_PG_PORT: value })).toThrow(expect.objectContaining({ code: 'ENV_INVALID' }));
  });

  it('reads the worker settings: heartbeat throttle (default 10 s), train slots, shutdown grace', () => {
    expect(loadEnv({})).toMatchObject({ PROPENSITY_HEARTBEAT_THROTTLE_SECONDS: 10, PROPENSITY_SHUTDOWN_GRACE_SECONDS: 0 });
    expect(loadEnv({}).PROPENSITY_TRAIN_SLOTS).toBeUndefined();
    expect(loadEnv({ PROPENSITY_HEARTBEAT_THROTTLE_SECONDS: '2.5', PROPENSITY_TRAIN_SLOTS: '4', PROPENSITY_SHUTDOWN_GRACE_SECONDS: '300' })).toMatchObject({
      PROPENSITY_HEARTBEAT_THROTTLE_SECONDS: 2.5,
      PROPENSITY_TRAIN_SLOTS: 4,
      PROPENSITY_SHUTDOWN_GRACE_SECONDS: 300,
    });
    expect(() => loadEnv({ PROPENSITY_HEARTBEAT_THROTTLE_SECONDS: '0' })).toThrow(/PROPENSITY_HEARTBEAT_THROTTLE_SECONDS="0"/);
    expect(() => loadEnv({ PROPENSITY_TRAIN_SLOTS: 'two' })).toThrow(/PROPENSITY_TRAIN_SLOTS="two"/);
  });

  it('names every bad variable at once and never echoes a secret', () => {
    const attempt = () => loadEnv({ DATABASE_URL: 'mysql://root:hunter2@db/x', S3_FORCE_PATH_STYLE: 'maybe' });
    expect(attempt).toThrow(/DATABASE_URL.*S3_FORCE_PATH_STYLE|S3_FORCE_PATH_STYLE.*DATABASE_URL/);
    expect(attempt).not.toThrow(/hunter2/);
  });
});

describe('resolveConnections', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'propensity-env-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  const writeStack = () =>
    writeFileSync(
      path.join(dataDir, 'stack.json'),
      JSON.stringify({
        temporal: { address: '127.0.0.1:7233', uiUrl: 'http://127.0.0.1:8233' },
        databaseUrl: 'postgres://postgres:postgres@127.0.0.1:54329/propensity',
        s3: { endpoint: 'http://127.0.0.1:4569', region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } },
      }),
    );

  it('reads what `dev up` recorded in stack.json', () => {
    writeStack();
    expect(resolveConnections(loadEnv({ PROPENSITY_DATA_DIR: dataDir }))).toEqual({
      temporal: { address: '127.0.0.1:7233', namespace: 'default', uiUrl: 'http://127.0.0.1:8233' },
      databaseUrl: 'postgres://postgres:postgres@127.0.0.1:54329/propensity',
      s3: { endpoint: 'http://127.0.0.1:4569', bucket: 'propensity', region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } },
    });
  });

  it('lets each environment variable win over stack.json, without mixing s3rver credentials into another endpoint', () => {
    writeStack();
    const c = resolveConnections(
      loadEnv({
        PROPENSITY_DATA_DIR: dataDir,
        TEMPORAL_ADDRESS: 'temporal.prod:7233',
        TEMPORAL_NAMESPACE: 'ml',
        DATABASE_URL: 'postgres://ml@db.prod:5432/ml',
        S3_ENDPOINT: 'https://minio.prod',
        S3_BUCKET: 'models',
      }),
    );
    expect(c.temporal).toEqual({ address: 'temporal.prod:7233', namespace: 'ml' });
    expect(c.databaseUrl).toBe('postgres://ml@db.prod:5432/ml');
    expect(c.s3).toEqual({ endpoint: 'https://minio.prod', bucket: 'models', region: 'us-east-1', forcePathStyle: true });
  });

  it('throws a ConfigError naming the variable when neither env nor stack.json knows a service', () => {
    const env = loadEnv({ PROPENSITY_DATA_DIR: dataDir });
    expect(() => resolveConnections(env)).toThrow(ConfigError);
    expect(() => resolveConnections(env)).toThrow('Temporal address unknown: set TEMPORAL_ADDRESS or run `npx propensity dev up`');
    const withTemporal = loadEnv({ PROPENSITY_DATA_DIR: dataDir, TEMPORAL_ADDRESS: 'localhost:7233' });
    expect(() => resolveConnections(withTemporal)).toThrow(expect.objectContaining({ code: 'DATABASE_URL_UNKNOWN' }));
    const withDb = loadEnv({ PROPENSITY_DATA_DIR: dataDir, TEMPORAL_ADDRESS: 'localhost:7233', DATABASE_URL: 'postgres://localhost/x' });
    expect(() => resolveConnections(withDb)).toThrow(expect.objectContaining({ code: 'S3_ENDPOINT_UNKNOWN' }));
  });

  it('uses AWS S3 itself when only AWS keys are given', () => {
    const env = loadEnv({ PROPENSITY_DATA_DIR: dataDir, TEMPORAL_ADDRESS: 't:7233', DATABASE_URL: 'postgres://h/d', AWS_ACCESS_KEY_ID: 'AK', AWS_SECRET_ACCESS_KEY: 'SK', S3_REGION: 'eu-west-1' });
    expect(resolveConnections(env).s3).toEqual({ bucket: 'propensity', region: 'eu-west-1', forcePathStyle: false, credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' } });
  });

  it('loads mTLS files for Temporal and rejects half a pair', () => {
    writeFileSync(path.join(dataDir, 'c.pem'), 'CERT');
    writeFileSync(path.join(dataDir, 'k.pem'), 'KEY');
    const base = { PROPENSITY_DATA_DIR: dataDir, TEMPORAL_ADDRESS: 'ns.tmprl.cloud:7233', DATABASE_URL: 'postgres://h/d', S3_ENDPOINT: 'http://s3:1' };
    const tls = resolveConnections(loadEnv({ ...base, TEMPORAL_TLS_CERT_PATH: path.join(dataDir, 'c.pem'), TEMPORAL_TLS_KEY_PATH: path.join(dataDir, 'k.pem') })).temporal.tls;
    expect(tls?.clientCertPair?.crt.toString()).toBe('CERT');
    expect(tls?.clientCertPair?.key.toString()).toBe('KEY');
    expect(() => resolveConnections(loadEnv({ ...base, TEMPORAL_TLS_CERT_PATH: path.join(dataDir, 'c.pem') }))).toThrow(/TEMPORAL_TLS_KEY_PATH/);
  });
});

import { connections } from './services.js';

/**
 * What a worker process started by a test needs to reach this test's services, as a pod's environment would carry
 * it: its database (and the least-privilege source role on that database), Temporal, and the S3 bucket.
 */
export function workerServiceEnv(databaseUrl: string): Record<string, string> {
  const c = connections();
  const source = c.sourceDatabaseUrl ? new URL(c.sourceDatabaseUrl) : null;
  if (source) source.pathname = new URL(databaseUrl).pathname;
  return {
    DATABASE_URL: databaseUrl,
    ...(source && { DATABASE_URL_SOURCE: source.toString() }),
    TEMPORAL_ADDRESS: c.temporal.address,
    TEMPORAL_NAMESPACE: c.temporal.namespace,
    S3_BUCKET: c.s3.bucket,
    S3_REGION: c.s3.region,
    S3_FORCE_PATH_STYLE: String(c.s3.forcePathStyle),
    ...(c.s3.endpoint && { S3_ENDPOINT: c.s3.endpoint }),
    ...(c.s3.credentials && { AWS_ACCESS_KEY_ID: c.s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: c.s3.credentials.secretAccessKey }),
  };
}

import { createHash } from 'node:crypto';
import {
  CopyObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { assertKeySegment } from '../pipeline/ids.js';
import { frameToIpc, ipcToFrame, textTableToIpc, type Frame } from './arrow.js';

/** A claim check: what workflows pass around instead of data. */
export interface ArtifactRef {
  bucket: string;
  key: string;
  sha256: string;
  bytes: number;
  rows?: number;
}

export class ArtifactIntegrityError extends Error {
  readonly type = 'ArtifactIntegrity';
}

/** A claim check whose object is gone: no retry brings it back. */
export class ArtifactMissingError extends Error {
  readonly type = 'ArtifactMissing';
  override readonly name = 'ArtifactMissingError';
}

/** The object is not there (a missing bucket is a configuration error, not a missing object). */
const isNotFound = (err: unknown) =>
  (err as Error)?.name !== 'NoSuchBucket' &&
  (err instanceof NotFound || err instanceof NoSuchKey || (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404);

export const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

export const s3Uri = (bucket: string, key: string): string => `s3://${bucket}/${key}`;

export type ArtifactStore = ReturnType<typeof createArtifactStore>;

export function createArtifactStore({ client, bucket }: { client: S3Client; bucket: string }) {
  async function put(key: string, body: Uint8Array, contentType = 'application/octet-stream'): Promise<ArtifactRef> {
    const digest = sha256(body);
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentLength: body.byteLength,
        ContentType: contentType,
        Metadata: { sha256: digest },
      }),
    );
    return { bucket, key, sha256: digest, bytes: body.byteLength };
  }

  async function getKey(key: string, fromBucket = bucket): Promise<Uint8Array> {
    const res = await client.send(new GetObjectCommand({ Bucket: fromBucket, Key: key }));
    return res.Body!.transformToByteArray();
  }

  /** Reads a claim check and verifies its content hash, so a corrupted or replaced object never feeds a model. */
  async function get(ref: ArtifactRef): Promise<Uint8Array> {
    const bytes = await getKey(ref.key, ref.bucket).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
      throw new ArtifactMissingError(
        `artifact ${s3Uri(ref.bucket, ref.key)} does not exist: it was deleted after it was written (an S3 lifecycle rule, or by hand); ` +
          'the step that reads it cannot go on: start a new run',
      );
    });
    const digest = sha256(bytes);
    if (digest !== ref.sha256) {
      throw new ArtifactIntegrityError(
        `artifact ${s3Uri(ref.bucket, ref.key)} has sha256 ${digest}, expected ${ref.sha256}: it was changed after it was written`,
      );
    }
    return bytes;
  }

  /**
   * Copies an artifact server-side (S3 CopyObject): no bytes pass through this process. The copy keeps the content
   * hash the original was written with, so its claim check is the original's with the new key.
   */
  async function copy(ref: ArtifactRef, key: string, contentType?: string): Promise<ArtifactRef> {
    const source = `${ref.bucket}/${ref.key.split('/').map(encodeURIComponent).join('/')}`;
    await client.send(
      new CopyObjectCommand({
        Bucket: bucket,
        Key: key,
        CopySource: source,
        MetadataDirective: 'REPLACE',
        Metadata: { sha256: ref.sha256 },
        ...(contentType && { ContentType: contentType }),
      }),
    );
    return { ...ref, bucket, key };
  }

  async function exists(key: string, inBucket = bucket): Promise<boolean> {
    try {
      await client.send(new HeadObjectCommand({ Bucket: inBucket, Key: key }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  return {
    bucket,
    put,
    get,
    getKey,
    copy,
    exists,
    uri: (key: string) => s3Uri(bucket, key),
    putJson: (key: string, value: unknown) =>
      put(key, new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n'), 'application/json'),
    getJson: async <T>(ref: ArtifactRef): Promise<T> => JSON.parse(new TextDecoder().decode(await get(ref))) as T,
    putFrame: async (key: string, frame: Frame): Promise<ArtifactRef> => ({
      ...(await put(key, frameToIpc(frame), 'application/vnd.apache.arrow.file')),
      rows: frame.ids.length,
    }),
    getFrame: async (ref: ArtifactRef): Promise<Frame> => ipcToFrame(await get(ref)),
    putTextTable: async (key: string, columns: Record<string, (string | null)[]>): Promise<ArtifactRef> => ({
      ...(await put(key, textTableToIpc(columns), 'application/vnd.apache.arrow.file')),
      rows: Object.values(columns)[0]?.length ?? 0,
    }),
  };
}

/** A sharded data set: Arrow files of at most a fixed number of rows each, so no step holds a whole table twice. */
export interface DatasetRef {
  shards: ArtifactRef[];
  rows: number;
  /** sha256 over the shards' own hashes, in order: one fingerprint of the whole data set */
  sha256: string;
}

export const datasetRef = (shards: ArtifactRef[]): DatasetRef => ({
  shards,
  rows: shards.reduce((a, s) => a + (s.rows ?? 0), 0),
  sha256: sha256(shards.map((s) => s.sha256).join('\n')),
});

const run = (runId: string) => assertKeySegment(runId, 'run id');
const shardNo = (shard: number) => {
  if (!Number.isSafeInteger(shard) || shard < 0) throw new RangeError(`a shard number is a non-negative integer, got ${shard}`);
  return String(shard).padStart(5, '0');
};
const rungNo = (rung: number) => {
  if (!Number.isSafeInteger(rung) || rung < 0) throw new RangeError(`a rung is a non-negative integer, got ${rung}`);
  return String(rung);
};
// A file inside a model directory may sit in a subfolder (`a/b.bin`), never above it.
const file = (name: string) => assertKeySegment(name, 'file name', { allowSlash: true });

/**
 * Deterministic keys make every activity idempotent on (runId, step, trialId). Every part that comes from an id is
 * asserted (pipeline/ids.ts): no "..", leading "/", backslash or control character ever reaches a key.
 */
export const keys = {
  raw: (runId: string, shard: number) => `runs/${run(runId)}/raw/part-${shardNo(shard)}.arrow`,
  rawQuarantine: (runId: string, shard: number) => `runs/${run(runId)}/raw/quarantine-${shardNo(shard)}.arrow`,
  clean: (runId: string, shard: number) => `runs/${run(runId)}/clean/part-${shardNo(shard)}.arrow`,
  quarantine: (runId: string, shard: number) => `runs/${run(runId)}/clean/quarantine-${shardNo(shard)}.arrow`,
  split: (runId: string, part: 'train' | 'val' | 'test') => `runs/${run(runId)}/split/${assertKeySegment(part, 'split name')}.arrow`,
  preprocessing: (runId: string) => `runs/${run(runId)}/split/preprocessing.json`,
  /**
   * a trial's model; a search trial's at each rung under its own key (rung-K/model/), so the result a rung returned
   * keeps its recorded sha256 after the trial trains the next rung (what `run resume` and an audit check)
   */
  trialModel: (runId: string, trialId: string, name: string, rung?: number) =>
    `runs/${run(runId)}/trials/${assertKeySegment(trialId, 'trial id')}/${rung === undefined ? '' : `rung-${rungNo(rung)}/`}model/${file(name)}`,
  /** the preprocessing a trial's (or the final step's: trialId 'final') model reads, with its numeric encoding */
  modelPreprocessing: (runId: string, trialId: string) =>
    trialId === 'final' ? `runs/${run(runId)}/final/preprocessing.json` : `runs/${run(runId)}/trials/${assertKeySegment(trialId, 'trial id')}/preprocessing.json`,
  trialCheckpoint: (runId: string, trialId: string, epoch: number, name: string) =>
    `runs/${run(runId)}/trials/${assertKeySegment(trialId, 'trial id')}/checkpoints/epoch-${String(epoch).padStart(4, '0')}/${file(name)}`,
  evalReport: (runId: string) => `runs/${run(runId)}/eval/report.json`,
  modelFile: (name: string, version: number, fileName: string) => {
    if (!Number.isSafeInteger(version) || version < 1) throw new RangeError(`a model version is a positive integer, got ${version}`);
    return `models/${assertKeySegment(name, 'model name')}/v${version}/${file(fileName)}`;
  },
};

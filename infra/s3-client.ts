import { CreateBucketCommand, HeadBucketCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { S3Connection } from './connections.js';

/** An S3 client for a resolved connection, safe for s3rver as well as AWS. */
export function createS3Client(conn: S3Connection): S3Client {
  // Node 20 is this project's chosen runtime; the SDK's multi-line "upgrade Node" notice would bury every command's output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    region: conn.region,
    forcePathStyle: conn.forcePathStyle,
    ...(conn.endpoint && { endpoint: conn.endpoint }),
    // A copy: the SDK annotates the credentials object it is given, which would leak into stack.json.
    ...(conn.credentials && { credentials: { ...conn.credentials } }),
    // The SDK's default CRC32 trailer uses aws-chunked encoding, which s3rver stores verbatim, corrupting the object.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Creates the bucket unless it exists already (owned by us). */
export async function ensureBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    return;
  } catch (err) {
    if (!(err instanceof S3ServiceException) || err.$metadata.httpStatusCode !== 404) throw err;
  }
  try {
    const region = await client.config.region();
    // AWS rejects an explicit us-east-1 constraint and requires one everywhere else.
    const location = region === 'us-east-1' ? {} : { CreateBucketConfiguration: { LocationConstraint: region as never } };
    await client.send(new CreateBucketCommand({ Bucket: bucket, ...location }));
  } catch (err) {
    // Another process may have created it between the two calls.
    if (!(err instanceof S3ServiceException) || err.name !== 'BucketAlreadyOwnedByYou') throw err;
  }
}

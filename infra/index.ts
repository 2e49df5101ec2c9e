export { ConfigError } from './errors.js';
export { type Env, findRepoRoot, loadEnv } from './env.js';
export { type Connections, type S3Connection, type StackFile, readStackFile, resolveConnections, stackFilePath } from './connections.js';
export { createS3Client, ensureBucket } from './s3-client.js';
export { findTemporalCli, type ServiceName, type ServiceStatus, type StackInfo, type StackOptions, stackDown, stackStatus, stackUp, stackWorkersStatus } from './stack.js';
export { type StackWorkersOptions, type WorkersStatus, type WorkerStatus, workerQueues } from './workers.js';

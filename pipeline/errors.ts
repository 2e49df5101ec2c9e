/** Stable failure types: scripts and tests match on these, messages are for people. */
export const ErrorType = {
  InvalidConfig: 'InvalidConfig',
  InvalidData: 'InvalidData',
  EmptyDataset: 'EmptyDataset',
  SingleClassLabel: 'SingleClassLabel',
  SourceSchema: 'SourceSchema',
  NonFiniteLoss: 'NonFiniteLoss',
  ArtifactIntegrity: 'ArtifactIntegrity',
  /** a claim-checked object is gone from S3: deleted after it was written */
  ArtifactMissing: 'ArtifactMissing',
  NotBlessed: 'NotBlessed',
  DataQuality: 'DataQuality',
  /** a trial that must train on a GPU (training.pool 'gpu') reached a worker without one */
  GpuUnavailable: 'GpuUnavailable',
} as const;
export type ErrorTypeName = (typeof ErrorType)[keyof typeof ErrorType];

/** Bad input or configuration: retrying cannot help. */
export class PipelineError extends Error {
  constructor(
    readonly type: ErrorTypeName,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

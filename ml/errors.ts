/**
 * Stable error types of the ML layer. The Temporal layer maps MlError to a non-retryable ApplicationFailure with
 * `type = err.type`: every one of these is deterministic in its inputs, so a retry would fail the same way.
 */
export const ML_ERROR = {
  InvalidConfig: 'InvalidConfig',
  InvalidData: 'InvalidData',
  EmptyDataset: 'EmptyDataset',
  SingleClassLabel: 'SingleClassLabel',
  NonFiniteLoss: 'NonFiniteLoss',
} as const;

export type MlErrorType = (typeof ML_ERROR)[keyof typeof ML_ERROR];

export class MlError extends Error {
  override readonly name = 'MlError';
  constructor(
    readonly type: MlErrorType,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export const isMlError = (e: unknown): e is MlError => e instanceof MlError;

import { ApplicationFailure } from '@temporalio/common';

/** Stable failure types: scripts and tests match on these, messages are for people. */
export const ErrorType = {
  InvalidConfig: 'InvalidConfig',
  InvalidData: 'InvalidData',
  EmptyDataset: 'EmptyDataset',
  SingleClassLabel: 'SingleClassLabel',
  SourceSchema: 'SourceSchema',
  NonFiniteLoss: 'NonFiniteLoss',
  ArtifactIntegrity: 'ArtifactIntegrity',
  NotBlessed: 'NotBlessed',
  DataQuality: 'DataQuality',
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

const PERMANENT_TYPES = new Set<string>(Object.values(ErrorType));
// Postgres SQLSTATE classes that describe the query or schema, not a passing fault.
const PG_PERMANENT: Record<string, string> = {
  '42P01': 'a source table does not exist',
  '42703': 'a source column does not exist',
  '3F000': 'a source schema does not exist',
  '42601': 'the source query has a syntax error',
  '22P02': 'a source value has the wrong type',
};

/**
 * Turns a permanent error into a non-retryable ApplicationFailure with a stable type; transient faults
 * (network, Postgres restart, S3 5xx) are returned unchanged so Temporal retries them.
 */
export function toFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  const e = err as { type?: unknown; code?: unknown; message?: string };
  if (err instanceof Error && typeof e.type === 'string' && PERMANENT_TYPES.has(e.type)) {
    return ApplicationFailure.create({ message: err.message, type: e.type, nonRetryable: true, cause: err });
  }
  if (typeof e.code === 'string' && PG_PERMANENT[e.code]) {
    return ApplicationFailure.create({
      message: `${PG_PERMANENT[e.code]}: ${e.message} (SQLSTATE ${e.code})`,
      type: ErrorType.SourceSchema,
      nonRetryable: true,
    });
  }
  return err;
}

export function errorType(err: unknown): string {
  if (err instanceof ApplicationFailure) return err.type ?? 'ApplicationFailure';
  const t = (err as { type?: unknown }).type;
  return typeof t === 'string' ? t : err instanceof Error ? err.name : 'Error';
}

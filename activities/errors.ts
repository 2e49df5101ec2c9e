import { ApplicationFailure } from '@temporalio/common';
import { RegistryErrorType } from '../registry/refs.js';
import { describePgError } from '../db/pg-errors.js';
import { ErrorType } from '../pipeline/errors.js';

// The error types themselves are pure (pipeline/errors.ts); this file maps errors to Temporal failures.
export { ErrorType, PipelineError, type ErrorTypeName } from '../pipeline/errors.js';

// Every typed domain error: ours, ml/'s (same names), the registry's, and a superseded scoring attempt.
const PERMANENT_TYPES = new Set<string>([...Object.values(ErrorType), ...Object.values(RegistryErrorType), 'ScoreRunSuperseded', 'InvalidId']);
/**
 * Turns a permanent error into a non-retryable ApplicationFailure with a stable type; transient faults
 * (network, Postgres restart, S3 5xx) are returned unchanged so Temporal retries them.
 */
export function toFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  const e = err as { type?: unknown };
  if (err instanceof Error && typeof e.type === 'string' && PERMANENT_TYPES.has(e.type)) {
    return ApplicationFailure.create({ message: err.message, type: e.type, nonRetryable: true, cause: err });
  }
  // A Postgres error of the query or its data: rebuilt from its structured fields, never quoting a cell value
  // (no `cause: err` either: pg's own message may hold one).
  const pg = describePgError(err);
  if (pg && !pg.retryable) {
    return ApplicationFailure.create({ message: pg.message, type: pg.type, nonRetryable: true, details: [{ sqlstate: pg.sqlstate }] });
  }
  return err;
}

// Node socket errors of a dependency that is down, restarting or unreachable.
const TRANSIENT_ERRNO = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN',
  'EAI_AGAIN', 'ENOTFOUND', 'EADDRNOTAVAIL', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT',
]);
// SQLSTATE: connection exceptions (08xxx), shutdown/restart (57P01-57P03), too many connections, and the
// concurrency failures Postgres itself says to retry.
const TRANSIENT_PG = /^(08...|57P0[123]|53300|40001|40P01)$/;
// pg reports a dropped socket with a plain Error and no code.
const TRANSIENT_MESSAGE =
  /Connection terminated|terminating connection due to administrator command|the database system is (starting up|shutting down|in recovery mode)|Client has encountered a connection error|timeout exceeded when trying to connect|socket hang up|read ECONNRESET/i;
const TRANSIENT_S3_NAMES = new Set(['InternalError', 'ServiceUnavailable', 'SlowDown', 'RequestTimeout', 'RequestTimeoutException', 'TimeoutError', 'ThrottlingException']);

/**
 * A fault of the infrastructure, not of the input: connection refused or reset, Postgres restarting, S3 5xx or
 * unreachable. Looks through `cause` chains and AggregateErrors (a refused dual-stack connect). These are retried
 * in-process by the activity interceptor (see pipeline/retry.ts) instead of spending Temporal attempts.
 */
export function isTransient(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 6) return false;
  if (err instanceof ApplicationFailure) return false; // already typed by us
  const e = err as {
    code?: unknown; name?: unknown; message?: unknown; cause?: unknown; errors?: unknown;
    $metadata?: { httpStatusCode?: number }; $retryable?: unknown;
  };
  if (typeof e.code === 'string' && (TRANSIENT_ERRNO.has(e.code) || TRANSIENT_PG.test(e.code))) return true;
  const status = e.$metadata?.httpStatusCode;
  if (typeof status === 'number' && (status >= 500 || status === 429)) return true;
  if (e.$retryable) return true;
  if (typeof e.name === 'string' && TRANSIENT_S3_NAMES.has(e.name)) return true;
  // an S3 request that never got an HTTP answer: the SDK's error carries no status at all
  if (e.$metadata && status === undefined && typeof e.message === 'string' && /ECONN|socket|EPIPE|ETIMEDOUT/.test(e.message)) return true;
  if (typeof e.message === 'string' && TRANSIENT_MESSAGE.test(e.message)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isTransient(x, depth + 1))) return true;
  return isTransient(e.cause, depth + 1);
}

export function errorType(err: unknown): string {
  if (err instanceof ApplicationFailure) return err.type ?? 'ApplicationFailure';
  const t = (err as { type?: unknown }).type;
  return typeof t === 'string' ? t : err instanceof Error ? err.name : 'Error';
}

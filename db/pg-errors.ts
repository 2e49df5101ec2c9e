import { ErrorType, type ErrorTypeName } from '../pipeline/errors.js';

/**
 * A Postgres error as a message safe for ml.* tables and workflow histories. Postgres puts cell values into
 * some messages (`invalid input syntax for type double precision: "x@y.z"`, `value "…" is out of range`, the
 * DETAIL of a unique violation), so the message is rebuilt from the error's structured fields instead: SQLSTATE,
 * schema, table, column, data type, constraint and routine names; never a value.
 */
export interface PgErrorDescription {
  /** a stable failure type (ErrorType) */
  type: ErrorTypeName;
  message: string;
  /** true for faults that may pass (connection lost, server restarting, serialization, cancelled by an admin) */
  retryable: boolean;
  sqlstate: string;
}

/** The fields of pg's DatabaseError we read (all optional: errors may also come from pg-copy-streams or a proxy). */
interface PgErrorFields {
  code?: unknown;
  message?: unknown;
  schema?: unknown;
  table?: unknown;
  column?: unknown;
  dataType?: unknown;
  constraint?: unknown;
  routine?: unknown;
}

const str = (v: unknown) => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** A Postgres type name from a message like `invalid input syntax for type double precision: "…"`: the type only. */
function typeFromMessage(message: string): string | undefined {
  return /\bfor type ([a-z][a-z0-9_ ]*?)(?:\[\])?:/i.exec(message)?.[1] ?? /\bfor type ([a-z][a-z0-9_ ]*)\b/i.exec(message)?.[1];
}

function where(e: PgErrorFields): string {
  const parts: string[] = [];
  const table = str(e.table) && (str(e.schema) ? `${e.schema}.${e.table}` : (e.table as string));
  if (str(e.column)) parts.push(`column "${e.column}"${table ? ` of ${table}` : ''}`);
  else if (table) parts.push(`table ${table}`);
  if (str(e.constraint)) parts.push(`constraint "${e.constraint}"`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

// Classes whose server messages name only objects (tables, columns, functions, roles, settings) and query text,
// never row values: their message can be shown as it is.
const VALUE_FREE_CLASSES = new Set(['08', '0A', '25', '28', '3D', '3F', '40', '42', '53', '54', '55', '57', '58']);

/**
 * Describes a Postgres error (anything with a 5-character SQLSTATE `code`) without any cell value, or returns
 * null when `err` is not one. Permanent problems of the query or its data get a non-retryable type; passing
 * faults (class 08, 40, 53, 57P0x, a cancel by an admin) keep retryable: true.
 */
export function describePgError(err: unknown): PgErrorDescription | null {
  if (!err || typeof err !== 'object') return null;
  const e = err as PgErrorFields;
  const code = str(e.code);
  // SQLSTATEs start with a digit or one of these classes; Node's own codes (EPIPE, ECONNRESET) are not SQLSTATEs.
  if (!code || !/^(?:[0-9][0-9A-Z]|HV|P0|XX|F0)[0-9A-Z]{3}$/.test(code)) return null;
  const cls = code.slice(0, 2);
  const raw = typeof e.message === 'string' ? e.message : '';
  const at = where(e);
  const tail = ` (SQLSTATE ${code})`;
  const describe = (type: ErrorTypeName, message: string, retryable = false): PgErrorDescription => ({ type, message: `${message}${tail}`, retryable, sqlstate: code });

  switch (code) {
    case '22P02':
    case '22007':
    case '22008':
    case '22003': {
      const type = str(e.dataType) ?? typeFromMessage(raw);
      const what = code === '22003' ? 'is out of range for' : 'is not a valid';
      return describe(
        ErrorType.InvalidData,
        `a source value has the wrong type: a value${at} ${what} ${type ?? 'the declared type'}; ` +
          'convert or filter it in source.query, or declare the column categorical (the value itself is not shown)',
      );
    }
    case '22012':
      return describe(ErrorType.InvalidData, `a source query divides by zero${at}; guard the divisor in source.query (e.g. nullif(x, 0))`);
    case '42P01':
      return describe(ErrorType.SourceSchema, `a source table does not exist: ${raw}`);
    case '42703':
      return describe(ErrorType.SourceSchema, `a source column does not exist: ${raw}`);
    case '3F000':
      return describe(ErrorType.SourceSchema, `a source schema does not exist: ${raw}`);
    case '42601':
      return describe(ErrorType.SourceSchema, `the source query has a syntax error: ${raw}`);
    case '42883':
      return describe(ErrorType.SourceSchema, `the source query calls a function that does not exist for these argument types: ${raw}`);
    case '42501':
      return describe(
        ErrorType.InvalidConfig,
        `the source role may not do this: ${raw}; source queries run as a read-only role with SELECT on the granted schemas only ` +
          '(README: Source-query security)',
      );
    case '25006':
      return describe(ErrorType.InvalidConfig, `the source query tried to write: ${raw}; source queries run in a READ ONLY transaction`);
    case '57014':
      return /statement timeout/i.test(raw)
        ? describe(
            ErrorType.InvalidConfig,
            'the source query ran longer than the statement timeout and was cancelled; make it cheaper (fewer rows, an index) ' +
              'or raise PROPENSITY_SOURCE_STATEMENT_TIMEOUT_S',
          )
        : describe(ErrorType.SourceSchema, 'the source query was cancelled by an administrator', true);
  }
  if (cls === '08' || cls === '40' || cls === '53' || code.startsWith('57P') || code === '55P03' || code === '58000' || code === '58030') {
    return describe(ErrorType.SourceSchema, `a passing database fault: ${VALUE_FREE_CLASSES.has(cls) ? raw : 'see the server log'}`, true);
  }
  if (cls === '22' || cls === '23' || cls === '2F' || cls === '38' || cls === '39' || cls === 'P0' || cls === 'XX') {
    // data exceptions and errors raised by functions: their messages may quote values
    const routine = str(e.routine) ? `, in ${e.routine}` : '';
    const type = str(e.dataType) ? `, type ${e.dataType}` : '';
    return describe(ErrorType.InvalidData, `the source query failed on a value${at}${type}${routine} (the value itself is not shown)`);
  }
  if (VALUE_FREE_CLASSES.has(cls)) return describe(ErrorType.SourceSchema, `the source query failed: ${raw}${at}`);
  return describe(ErrorType.SourceSchema, `the source query failed${at} (the server's message is not shown: it may quote values)`);
}

import { loadModule, parseSync } from 'libpg-query';
import { ErrorType, PipelineError } from '../pipeline/errors.js';

// PostgreSQL's own grammar (libpg_query, compiled to WASM): parsing is synchronous once the module is loaded,
// so config validation (a zod refine) can use it. Loading takes ~50 ms, once per process.
await loadModule();

/** The rule a rejected source query broke; stable, for tests and scripts. */
export type SourceQueryRule =
  | 'syntax'
  | 'single-statement'
  | 'select-only'
  | 'no-data-modifying'
  | 'no-select-into'
  | 'no-locking'
  | 'denied-function';

export interface SourceQueryProblem {
  rule: SourceQueryRule;
  message: string;
}

/**
 * Functions a source query may not call: they touch the server (files, other sessions, settings, large objects,
 * locks, sequences) or run SQL given as a string, which would bypass this check. Names are compared after the
 * parser has folded case and stripped the schema (pg_catalog.pg_read_file is pg_read_file).
 */
const DENIED_FUNCTIONS = new Set([
  'pg_stat_file', 'pg_current_logfile', 'pg_logdir_ls',
  'pg_terminate_backend', 'pg_cancel_backend', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_promote',
  'pg_log_backend_memory_contexts', 'pg_switch_wal', 'pg_import_system_collations', 'pg_notify',
  'set_config', 'nextval', 'setval',
  'pg_sleep', 'pg_sleep_for', 'pg_sleep_until',
  'loread', 'lowrite',
  'ts_stat', 'ts_rewrite',
]);
const DENIED_PREFIXES = [
  'pg_read_', 'pg_ls_', 'pg_file_', // server files
  'lo_', // large objects (lo_import/lo_export read and write server files)
  'dblink', // other connections, other servers
  'pg_advisory', 'pg_try_advisory', // locks that outlive the statement
  'query_to_xml', 'cursor_to_xml', 'table_to_xml', 'schema_to_xml', 'database_to_xml', // run SQL from a string
  'pg_create_', 'pg_drop_replication', 'pg_replication_', 'pg_logical_', 'pg_copy_', 'pg_backup_', 'pg_wal_replay_',
  'pg_stat_reset', 'pg_sync_replication',
];

/** Whether a source query may not call the function `name` (unqualified). */
export function deniedFunction(name: string): boolean {
  const n = name.toLowerCase();
  return DENIED_FUNCTIONS.has(n) || DENIED_PREFIXES.some((p) => n.startsWith(p));
}

const STATEMENT_KIND: Record<string, string> = {
  SelectStmt: 'SELECT', InsertStmt: 'INSERT', UpdateStmt: 'UPDATE', DeleteStmt: 'DELETE', MergeStmt: 'MERGE', CopyStmt: 'COPY',
  TransactionStmt: 'a transaction command (BEGIN/COMMIT/ROLLBACK)', VariableSetStmt: 'SET', DropStmt: 'DROP',
  CreateStmt: 'CREATE TABLE', CreateTableAsStmt: 'CREATE TABLE AS', ExplainStmt: 'EXPLAIN', CallStmt: 'CALL',
  DoStmt: 'DO', TruncateStmt: 'TRUNCATE', GrantStmt: 'GRANT/REVOKE', GrantRoleStmt: 'GRANT/REVOKE role',
  LockStmt: 'LOCK', VacuumStmt: 'VACUUM/ANALYZE', AlterTableStmt: 'ALTER TABLE', ExecuteStmt: 'EXECUTE',
  PrepareStmt: 'PREPARE', DeclareCursorStmt: 'DECLARE CURSOR', NotifyStmt: 'NOTIFY', ListenStmt: 'LISTEN',
};
const kindOf = (node: Record<string, unknown>) => {
  const name = Object.keys(node)[0] ?? 'an empty statement';
  return STATEMENT_KIND[name] ?? name.replace(/Stmt$/, '');
};

interface RawStmt {
  stmt?: Record<string, unknown>;
  stmt_location?: number;
  stmt_len?: number;
}

function parseStatements(sql: string): { stmts: RawStmt[] } | { error: string; position?: number } {
  try {
    return { stmts: (parseSync(sql) as { stmts?: RawStmt[] }).stmts ?? [] };
  } catch (err) {
    const e = err as { message?: string; sqlDetails?: { cursorPosition?: number } };
    return { error: e.message ?? String(err), position: e.sqlDetails?.cursorPosition };
  }
}

/** Depth-first walk over every node of a parse tree: `visit(type, fields)` for each `{ Type: fields }`. */
function walk(node: unknown, visit: (type: string, fields: Record<string, unknown>) => void): void {
  if (Array.isArray(node)) {
    for (const item of node) walk(item, visit);
    return;
  }
  if (!node || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node)) {
    if (/^[A-Z]/.test(key) && value && typeof value === 'object' && !Array.isArray(value)) visit(key, value as Record<string, unknown>);
    walk(value, visit);
  }
}

const funcName = (fields: Record<string, unknown>): string => {
  const parts = (fields.funcname as { String?: { sval?: string } }[] | undefined) ?? [];
  return parts.map((p) => p.String?.sval ?? '').filter(Boolean).join('.');
};

/** Problems inside one SELECT's tree: writes, SELECT INTO, row locks, denied functions. */
function selectTreeProblem(select: unknown, where: string): SourceQueryProblem | null {
  let problem: SourceQueryProblem | null = null;
  walk(select, (type, fields) => {
    if (problem) return;
    if (type === 'InsertStmt' || type === 'UpdateStmt' || type === 'DeleteStmt' || type === 'MergeStmt') {
      problem = {
        rule: 'no-data-modifying',
        message: `${where} contains ${STATEMENT_KIND[type]} (a data-modifying WITH clause): a source query may only read`,
      };
    } else if (type === 'SelectStmt' && fields.intoClause) {
      problem = { rule: 'no-select-into', message: `${where} uses SELECT … INTO, which creates a table: a source query may only read` };
    } else if (type === 'SelectStmt' && Array.isArray(fields.lockingClause) && fields.lockingClause.length) {
      problem = { rule: 'no-locking', message: `${where} has a FOR UPDATE/SHARE locking clause: a source query may not lock rows` };
    } else if (type === 'FuncCall') {
      const full = funcName(fields);
      const name = full.split('.').pop() ?? full;
      if (deniedFunction(name)) {
        problem = {
          rule: 'denied-function',
          message: `${where} calls ${full}(), which touches the database server (files, sessions, settings, locks or SQL in a string): source queries may not call it`,
        };
      }
    }
  });
  return problem;
}

/**
 * Checks a table-mode source query with PostgreSQL's grammar: exactly one SELECT (WITH, VALUES and TABLE
 * included), no data-modifying WITH, no SELECT INTO, no FOR UPDATE/SHARE, no server-touching functions.
 * Returns the first rule broken, or null.
 */
export function sourceQueryProblem(query: string, where = 'source.query'): SourceQueryProblem | null {
  const parsed = query.trim() ? parseStatements(query) : { stmts: [] };
  if ('error' in parsed) {
    const at = parsed.position !== undefined && parsed.position >= 0 ? ` at character ${parsed.position + 1}` : '';
    return { rule: 'syntax', message: `${where} is not valid PostgreSQL: ${parsed.error}${at}` };
  }
  if (parsed.stmts.length !== 1) {
    return {
      rule: 'single-statement',
      message:
        parsed.stmts.length === 0
          ? `${where} is empty: it must be exactly one SELECT statement`
          : `${where} holds ${parsed.stmts.length} statements (${parsed.stmts.map((s) => kindOf(s.stmt ?? {})).join(', ')}): it must be exactly one SELECT statement`,
    };
  }
  const stmt = parsed.stmts[0].stmt ?? {};
  if (!('SelectStmt' in stmt)) {
    return { rule: 'select-only', message: `${where} is ${kindOf(stmt)}, not a SELECT: it must be exactly one SELECT (or WITH … SELECT, VALUES) statement` };
  }
  return selectTreeProblem(stmt, where);
}

/**
 * The query as the one SELECT statement it holds (no trailing semicolon or comment), ready to be nested as a
 * subquery; throws an InvalidConfig PipelineError naming the rule broken.
 */
export function checkedSourceQuery(query: string, where = 'source.query'): string {
  const problem = sourceQueryProblem(query, where);
  if (problem) throw new PipelineError(ErrorType.InvalidConfig, problem.message, { rule: problem.rule });
  const [stmt] = (parseSync(query) as { stmts: RawStmt[] }).stmts;
  const start = stmt.stmt_location ?? 0;
  const body = stmt.stmt_len ? query.slice(start, start + stmt.stmt_len) : query.slice(start);
  // The newline keeps a trailing `-- comment` from swallowing whatever follows the subquery.
  return `${body.replace(/;\s*$/, '')}\n`;
}

/**
 * A statement we built around a source query is sent only if it parses as exactly one statement of the kind we
 * meant: a SELECT (describe), or `COPY (SELECT …) TO STDOUT` (no file, no PROGRAM). Anything else is a bug or an
 * injection, and nothing is sent.
 */
export function assertBuiltStatement(sql: string, kind: 'select' | 'copy-out'): void {
  const parsed = parseStatements(sql);
  const fail = (why: string): never => {
    throw new PipelineError(ErrorType.InvalidConfig, `refusing to run a source statement: ${why}`, { rule: 'single-statement' });
  };
  if ('error' in parsed) fail(`it does not parse (${parsed.error})`);
  const stmts = (parsed as { stmts: RawStmt[] }).stmts;
  if (stmts.length !== 1) fail(`it holds ${stmts.length} statements, not one`);
  const stmt = stmts[0].stmt ?? {};
  let select: unknown;
  if (kind === 'select') {
    if (!('SelectStmt' in stmt)) fail(`it is ${kindOf(stmt)}, not a SELECT`);
    select = stmt;
  } else {
    const copy = stmt.CopyStmt as { query?: Record<string, unknown>; is_from?: boolean; is_program?: boolean; filename?: string } | undefined;
    if (!copy) fail(`it is ${kindOf(stmt)}, not COPY … TO STDOUT`);
    if (copy!.is_from || copy!.is_program || copy!.filename || !copy!.query || !('SelectStmt' in copy!.query)) {
      fail('it is not COPY (SELECT …) TO STDOUT');
    }
    select = copy!.query;
  }
  const problem = selectTreeProblem(select, 'the statement');
  if (problem) fail(problem.message);
}

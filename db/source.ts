import { StringDecoder } from 'node:string_decoder';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { Db } from './client.js';
import { devSourceUrl, SOURCE_ROLE } from '../infra/connections.js';
import type { FeatureSpec, Frame } from '../ml/types.js';
import { datasetRef, type ArtifactRef, type ArtifactStore, type DatasetRef } from '../store/artifacts.js';
import { ErrorType, PipelineError } from '../pipeline/errors.js';
import { describePgError } from './pg-errors.js';
import { assertBuiltStatement, checkedSourceQuery } from './source-query.js';

/** Rows per Arrow shard: bounds the memory of every streaming step, whatever the table size. */
export const SHARD_ROWS = 100_000;

/** Label values: 0/1, or these markers that the clean step turns into quarantine reasons. */
export { LABEL_MISSING } from '../ml/clean.js';
import { LABEL_MISSING } from '../ml/clean.js';

/** COPY takes no bind parameters: our own generated SQL gets its $n replaced by quoted literals. */
export function inlineParams(sql: string, params: unknown[]): string {
  return sql.replace(/\$(\d+)/g, (_, n: string) => literal(params[Number(n) - 1], n));
}

function literal(v: unknown, n: string): string {
  if (v === null || v === undefined) return 'NULL';
  if (v instanceof Date) return `'${v.toISOString()}'`;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`parameter $${n} is not a finite number`);
    return String(v);
  }
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return `'${String(v).replace(/'/g, "''")}'`;
}

/** Quotes an identifier that config validation already restricted to [A-Za-z_][A-Za-z0-9_]*. */
export const ident = (name: string): string => `"${name.replace(/"/g, '""')}"`;

const BOOL_TRUE = new Set(['1', '1.0', 't', 'true', 'y', 'yes']);
const BOOL_FALSE = new Set(['0', '0.0', 'f', 'false', 'n', 'no']);

/** Rows whose value could not be used: a count and the first row numbers (1-based, in query order), never values. */
export interface LabelProblem {
  rows: number;
  firstRows: number[];
}

const FIRST_ROWS = 5;
const noteRow = (p: LabelProblem, row: number) => {
  p.rows++;
  if (p.firstRows.length < FIRST_ROWS) p.firstRows.push(row);
};
/** `3 values (rows 2, 7, 9)` / `12 values (first rows 2, 7, 9, 10, 11)`: where to look, without the values. */
export const describeRows = (p: LabelProblem) =>
  `${p.rows} value${p.rows === 1 ? '' : 's'} (${p.rows > p.firstRows.length ? 'first rows' : p.rows === 1 ? 'row' : 'rows'} ${p.firstRows.join(', ')})`;

// PostgreSQL's float8 input syntax (float8in): decimal or exponent form, NaN, [+-]Infinity, blanks around.
const FLOAT8 = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?\s*$/i;
const FLOAT8_SPECIAL: Record<string, number> = { nan: NaN, infinity: Infinity, '+infinity': Infinity, '-infinity': -Infinity, inf: Infinity, '+inf': Infinity, '-inf': -Infinity };
/** A text value as float8 the way Postgres would read it, or undefined when it is not a number. */
export function parseFloat8(text: string): number | undefined {
  if (FLOAT8.test(text)) return Number(text);
  const key = text.trim().toLowerCase();
  return Object.hasOwn(FLOAT8_SPECIAL, key) ? FLOAT8_SPECIAL[key] : undefined;
}

export interface CopyResult {
  dataset: DatasetRef;
  positives: number;
  /** table mode: label values that are not boolean-like */
  badLabels: LabelProblem;
}

/**
 * Streams `COPY (select) TO STDOUT` (text format) into Arrow shards of SHARD_ROWS rows. The select's columns
 * are: entity key, label, then `specs` in order. Memory stays at about one shard, whatever the result size.
 * A numeric column whose text is not a number (`textNumeric`: text columns declared numeric, read as text and
 * parsed here) fails the copy with InvalidData naming the column, the count and the first rows, never the value.
 */
export async function copyToShards(opts: {
  client: pg.PoolClient;
  select: string;
  specs: FeatureSpec[];
  store: ArtifactStore;
  keyOf: (shard: number) => string;
  /** numeric features that arrive as text (see TableSourcePlan.textNumeric) */
  textNumeric?: readonly string[];
}): Promise<CopyResult> {
  const { client, select, specs, store, keyOf } = opts;
  const numeric = specs.filter((s) => s.kind === 'numeric').map((s) => s.name);
  const categorical = specs.filter((s) => s.kind === 'categorical').map((s) => s.name);
  const kinds = specs.map((s) => s.kind);
  const strict = specs.map((s) => opts.textNumeric?.includes(s.name) ?? false);
  const badNumbers = specs.map((): LabelProblem => ({ rows: 0, firstRows: [] }));
  const shards: ArtifactRef[] = [];
  const badLabels: LabelProblem = { rows: 0, firstRows: [] };
  let positives = 0;
  let rowNumber = 0;

  let frame = newFrame(numeric, categorical, SHARD_ROWS);
  let numCols = specs.map((s) => (s.kind === 'numeric' ? frame.numeric[s.name] : null));
  let catCols = specs.map((s) => (s.kind === 'categorical' ? frame.categorical[s.name] : null));
  let n = 0;

  const flush = async () => {
    if (n === 0) return;
    shards.push(await store.putFrame(keyOf(shards.length), n === SHARD_ROWS ? frame : truncate(frame, n)));
    frame = newFrame(numeric, categorical, SHARD_ROWS);
    numCols = specs.map((s) => (s.kind === 'numeric' ? frame.numeric[s.name] : null));
    catCols = specs.map((s) => (s.kind === 'categorical' ? frame.categorical[s.name] : null));
    n = 0;
  };

  const addRow = (line: string) => {
    rowNumber++;
    const fields = line.split('\t');
    if (fields.length !== specs.length + 2) {
      throw new PipelineError(ErrorType.InvalidData, `source row ${rowNumber} has ${fields.length} columns, expected ${specs.length + 2}`);
    }
    const id = text(fields[0]);
    frame.ids[n] = id ?? '';
    const raw = text(fields[1]);
    let label: number;
    if (raw === null) label = LABEL_MISSING;
    else {
      const v = raw.trim().toLowerCase();
      if (BOOL_TRUE.has(v)) label = 1;
      else if (BOOL_FALSE.has(v)) label = 0;
      else {
        label = LABEL_MISSING;
        noteRow(badLabels, rowNumber);
      }
    }
    frame.label[n] = label;
    if (label === 1) positives++;
    for (let j = 0; j < kinds.length; j++) {
      const f = fields[j + 2];
      if (kinds[j] === 'numeric') {
        let v: number | undefined;
        if (f === '\\N') v = NaN;
        else if (strict[j]) v = parseFloat8(text(f)!);
        else {
          // float8 output of Postgres: Number() reads it exactly; only garbage (or 'NaN' itself) gives NaN
          v = Number(f);
          if (Number.isNaN(v) && f !== 'NaN') v = undefined;
        }
        if (v === undefined) {
          noteRow(badNumbers[j], rowNumber);
          v = NaN;
        }
        numCols[j]![n] = v;
      } else catCols[j]![n] = text(f);
    }
    n++;
  };

  for await (const lines of copyLines(client, select)) {
    for (const line of lines) {
      addRow(line);
      if (n === SHARD_ROWS) await flush();
    }
  }
  const bad = specs.flatMap((spec, j) => (badNumbers[j].rows ? [`column "${spec.name}" holds ${describeRows(badNumbers[j])} that are not numbers`] : []));
  if (bad.length) {
    throw new PipelineError(
      ErrorType.InvalidData,
      `source.query returns text where a numeric feature is declared: ${bad.join('; ')}; ` +
        'declare those columns categorical in source.features or convert them in source.query (the values are not shown)',
      { columns: specs.filter((_, j) => badNumbers[j].rows).map((s) => s.name) },
    );
  }
  await flush();
  return { dataset: datasetRef(shards), positives, badLabels };
}

/** Streams `COPY (select) TO STDOUT` in text format as batches of lines (one batch per network chunk). */
export async function* copyLines(client: pg.PoolClient, select: string): AsyncGenerator<string[]> {
  // COPY has no extended-protocol form: the statement is sent only once it parses as exactly one COPY … TO STDOUT
  const copy = `COPY (${select}\n) TO STDOUT`;
  assertBuiltStatement(copy, 'copy-out');
  const stream = client.query(copyTo(copy));
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of stream) {
    const lines = (rest + decoder.write(chunk as Buffer)).split('\n');
    rest = lines.pop()!;
    yield lines;
  }
  rest += decoder.end();
  if (rest.length) yield [rest];
}

/**
 * Streams a query's rows as text columns into Arrow shards (for quarantined source rows: kept as they were,
 * every value as text, NULL as null).
 */
export async function copyTextShards(opts: {
  client: pg.PoolClient;
  select: string;
  columns: string[];
  /** a column whose values are counted (e.g. the quarantine reason) */
  countBy?: string;
  store: ArtifactStore;
  keyOf: (shard: number) => string;
}): Promise<{ refs: ArtifactRef[]; counts: Record<string, number> }> {
  const refs: ArtifactRef[] = [];
  const counts: Record<string, number> = {};
  const countAt = opts.countBy ? opts.columns.indexOf(opts.countBy) : -1;
  let cols = opts.columns.map(() => [] as (string | null)[]);
  const flush = async () => {
    if (!cols[0]?.length) return;
    refs.push(await opts.store.putTextTable(opts.keyOf(refs.length), Object.fromEntries(opts.columns.map((c, i) => [c, cols[i]]))));
    cols = opts.columns.map(() => []);
  };
  for await (const lines of copyLines(opts.client, opts.select)) {
    for (const line of lines) {
      const fields = line.split('\t');
      for (let i = 0; i < cols.length; i++) cols[i].push(text(fields[i] ?? '\\N'));
      if (countAt >= 0) {
        const key = text(fields[countAt] ?? '\\N') ?? '(null)';
        counts[key] = (counts[key] ?? 0) + 1;
      }
      if (cols[0].length === SHARD_ROWS) await flush();
    }
  }
  await flush();
  return { refs, counts };
}

/** COPY text format: \N is NULL; backslash escapes only where a backslash occurs. */
function text(field: string): string | null {
  if (field === '\\N') return null;
  if (!field.includes('\\')) return field;
  return field.replace(/\\(.)/g, (_, c: string) =>
    c === 't' ? '\t' : c === 'n' ? '\n' : c === 'r' ? '\r' : c === 'b' ? '\b' : c === 'f' ? '\f' : c === 'v' ? '\v' : c,
  );
}

function newFrame(numeric: string[], categorical: string[], rows: number): Frame {
  return {
    ids: new Array(rows),
    label: new Uint8Array(rows),
    numeric: Object.fromEntries(numeric.map((c) => [c, new Float64Array(rows)])),
    categorical: Object.fromEntries(categorical.map((c) => [c, new Array<string | null>(rows)])),
  };
}

function truncate(f: Frame, n: number): Frame {
  return {
    ids: f.ids.slice(0, n),
    label: f.label.slice(0, n),
    numeric: Object.fromEntries(Object.entries(f.numeric).map(([k, v]) => [k, v.slice(0, n)])),
    categorical: Object.fromEntries(Object.entries(f.categorical).map(([k, v]) => [k, v.slice(0, n)])),
  };
}

// Postgres type OIDs: numbers train as numeric, text and booleans as categorical.
const NUMERIC_OIDS = new Set([20, 21, 23, 26, 700, 701, 1700]);
const BOOL_OID = 16;
const CATEGORICAL_OIDS = new Set([BOOL_OID, 18, 25, 1042, 1043, 19]);
const TYPE_NAMES: Record<number, string> = { 1082: 'date', 1114: 'timestamp', 1184: 'timestamptz', 114: 'json', 3802: 'jsonb', 17: 'bytea', 2950: 'uuid', 1186: 'interval' };

export interface TableSourcePlan {
  select: string;
  features: FeatureSpec[];
  /** numeric features read as text (text columns declared numeric): pass to copyToShards, which parses them */
  textNumeric: string[];
}

/** Result columns of a SELECT, asked over the extended protocol (one statement only, whatever the text holds). */
export async function describeColumns(client: pg.PoolClient, select: string): Promise<pg.FieldDef[]> {
  const text = `SELECT * FROM (${select}\n) AS src LIMIT 0`;
  assertBuiltStatement(text, 'select');
  const described = await client.query({ text, rowMode: 'array', queryMode: 'extended' } as pg.QueryConfig);
  return described.fields;
}

/**
 * Table mode: checks source.query with PostgreSQL's grammar (exactly one SELECT, nothing that writes, locks or
 * touches the server: see source-query.ts), looks at its result columns (LIMIT 0) and builds the COPY select with
 * the entity key and label first. Unknown columns, unusable types and a missing key or label are config errors.
 */
export async function planTableSource(
  client: pg.PoolClient,
  source: { query: string; entityKey: string; label: string; features?: string[] | Record<string, 'numeric' | 'categorical'> },
): Promise<TableSourcePlan> {
  const query = checkedSourceQuery(source.query);
  const fields = await describeColumns(client, query);
  const columns = new Map(fields.map((f) => [f.name, f.dataTypeID]));
  const available = [...columns.keys()].join(', ');
  for (const [what, name] of [['source.entityKey', source.entityKey], ['source.label', source.label]] as const) {
    if (!columns.has(name)) {
      throw new PipelineError(ErrorType.InvalidConfig, `${what} "${name}" is not a column of source.query (columns: ${available})`);
    }
  }
  const declared: Record<string, 'numeric' | 'categorical' | undefined> = Array.isArray(source.features)
    ? Object.fromEntries(source.features.map((f) => [f, undefined]))
    : source.features ?? Object.fromEntries([...columns.keys()].filter((c) => c !== source.entityKey && c !== source.label).map((c) => [c, undefined]));
  const features: FeatureSpec[] = [];
  const textNumeric: string[] = [];
  for (const [name, kind] of Object.entries(declared)) {
    const oid = columns.get(name);
    if (oid === undefined) {
      throw new PipelineError(ErrorType.InvalidConfig, `source.features names "${name}", which is not a column of source.query (columns: ${available})`);
    }
    if (name === source.entityKey || name === source.label) {
      throw new PipelineError(ErrorType.InvalidConfig, `source.features must not include the ${name === source.label ? 'label' : 'entity key'} column "${name}"`);
    }
    const inferred = NUMERIC_OIDS.has(oid) ? 'numeric' : CATEGORICAL_OIDS.has(oid) ? 'categorical' : undefined;
    const chosen = kind ?? inferred;
    if (!chosen || (chosen === 'numeric' && !NUMERIC_OIDS.has(oid) && !CATEGORICAL_OIDS.has(oid))) {
      throw new PipelineError(
        ErrorType.InvalidConfig,
        `column "${name}" has type ${TYPE_NAMES[oid] ?? `oid ${oid}`}, which cannot be used as a feature: convert it in source.query ` +
          `(e.g. extract(epoch from ...) for times) or leave it out of source.features`,
      );
    }
    // Text declared numeric is parsed here rather than cast in SQL: Postgres' cast error would quote the value.
    if (chosen === 'numeric' && CATEGORICAL_OIDS.has(oid) && oid !== BOOL_OID) textNumeric.push(name);
    features.push({ name, kind: chosen });
  }
  if (features.length === 0) throw new PipelineError(ErrorType.InvalidConfig, 'source.query returns no feature columns besides the key and label');
  const cast = (f: FeatureSpec) => {
    const col = `src.${ident(f.name)}`;
    if (f.kind === 'categorical' || textNumeric.includes(f.name)) return `(${col})::text`;
    return columns.get(f.name) === BOOL_OID ? `(${col})::int::float8` : `(${col})::float8`;
  };
  const select =
    `SELECT (src.${ident(source.entityKey)})::text, (src.${ident(source.label)})::text, ` +
    `${features.map(cast).join(', ')} FROM (${query}\n) AS src`;
  return { select, features, textNumeric };
}

/** Runs fn in one transaction on a client of its own (`begin` can ask for READ ONLY, an isolation level, …). */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(begin);
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}


/** The pool source queries run on: a least-privilege role (README: Source-query security), never a superuser. */
export interface SourceDb {
  /** null when no source connection is configured; `missing` then says what to set */
  pool: pg.Pool | null;
  missing?: string;
  close(): Promise<void>;
}

export const DEFAULT_SOURCE_STATEMENT_TIMEOUT_MS = 10 * 60_000;

/** A pool for source queries: every statement is cancelled after `statementTimeoutMs`. */
export function createSourceDb(url: string, opts: { statementTimeoutMs?: number; max?: number; allowExitOnIdle?: boolean } = {}): SourceDb {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 4,
    application_name: 'propensity-source',
    statement_timeout: opts.statementTimeoutMs ?? DEFAULT_SOURCE_STATEMENT_TIMEOUT_MS,
    idle_in_transaction_session_timeout: opts.statementTimeoutMs ?? DEFAULT_SOURCE_STATEMENT_TIMEOUT_MS,
    allowExitOnIdle: opts.allowExitOnIdle ?? false,
  });
  // as db/client.ts: a socket error must reach the query that owns the client, never crash the process
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  let closed: Promise<void> | undefined;
  return { pool, close: () => (closed ??= pool.end()) };
}

/** A source that refuses to run anything, saying why (no DATABASE_URL_SOURCE next to a DATABASE_URL). */
export function missingSource(why: string): SourceDb {
  return { pool: null, missing: why, close: async () => {} };
}

const bound = new WeakMap<Db, SourceDb>();

/** Ties a source pool to the main Db it sits beside, for activities built from `{ db, store }` alone. */
export function bindSource(db: Db, source: SourceDb): void {
  bound.set(db, source);
}

/**
 * The source pool of these deps: `deps.source`, else the one bound to `deps.db` (openServices binds it), else the
 * dev stack's source role on the same database as `deps.db` (tests and scripts that build deps by hand). Never
 * `deps.db` itself: that connection may be a superuser.
 */
export function sourceFor(deps: { db: Db; source?: SourceDb }): SourceDb {
  if (deps.source) return deps.source;
  let source = bound.get(deps.db);
  if (!source) {
    const url = (deps.db.pool as unknown as { options?: { connectionString?: string } }).options?.connectionString;
    source = url
      ? createSourceDb(devSourceUrl(url), { max: 3, allowExitOnIdle: true })
      : missingSource('no source connection: set DATABASE_URL_SOURCE (README, "Source-query security")');
    bound.set(deps.db, source);
  }
  return source;
}

// The predefined roles that reach past SELECT: server files and programs, other backends, all data.
const POWERFUL_ROLES = ['pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program', 'pg_signal_backend', 'pg_read_all_data', 'pg_write_all_data'];
const verified = new WeakSet<pg.PoolClient>();

/**
 * Fails (InvalidConfig) unless the connection's role is least-privilege: no superuser, no BYPASSRLS, no member of
 * the predefined roles above, no access to schema ml. Checked once per pooled connection.
 */
async function assertLeastPrivilege(client: pg.PoolClient): Promise<void> {
  if (verified.has(client)) return;
  const { rows } = await client.query({
    text: `select r.rolname, r.rolsuper, r.rolbypassrls,
                  array(select b.rolname::text from pg_roles b
                         where b.rolname = any($1::text[]) and pg_has_role(r.oid, b.oid, 'MEMBER')) as powerful,
                  exists (select 1 from pg_namespace n where n.nspname = 'ml' and has_schema_privilege(r.oid, n.oid, 'USAGE')) as reads_ml
             from pg_roles r where r.rolname = current_user`,
    values: [POWERFUL_ROLES],
  });
  const r = rows[0] as { rolname: string; rolsuper: boolean; rolbypassrls: boolean; powerful: string[]; reads_ml: boolean };
  const why = r.rolsuper
    ? 'is a superuser'
    : r.rolbypassrls
      ? 'bypasses row-level security'
      : r.powerful.length
        ? `is a member of ${r.powerful.join(', ')}`
        : r.reads_ml
          ? 'can read schema ml'
          : null;
  if (why) {
    throw new PipelineError(
      ErrorType.InvalidConfig,
      `the source connection's role "${r.rolname}" ${why}: source queries run only as a least-privilege read-only role; ` +
        `point DATABASE_URL_SOURCE at role ${SOURCE_ROLE} (README, "Source-query security")`,
    );
  }
  verified.add(client);
}

/**
 * Runs fn on the source pool in one READ ONLY transaction, after checking the role is least-privilege. Postgres
 * errors leave as value-free PipelineErrors (pg-errors.ts); passing faults (connection lost, …) as they are.
 */
export async function withSource<T>(
  source: SourceDb,
  fn: (client: pg.PoolClient) => Promise<T>,
  begin = 'BEGIN TRANSACTION READ ONLY',
): Promise<T> {
  if (!source.pool) throw new PipelineError(ErrorType.InvalidConfig, source.missing ?? 'no source connection');
  try {
    return await withTransaction(
      source.pool,
      async (client) => {
        await assertLeastPrivilege(client);
        return fn(client);
      },
      begin,
    );
  } catch (err) {
    throw sanitizeSourceError(err);
  }
}

/** A Postgres error of a source query without the values its server message may quote. */
export function sanitizeSourceError(err: unknown): unknown {
  if (err instanceof PipelineError) return err;
  const d = describePgError(err);
  if (!d) return err;
  if (d.retryable) return err; // classes 08, 40, 53, 57P: messages without values, and Temporal must retry them
  return new PipelineError(d.type, d.message, { sqlstate: d.sqlstate });
}

/**
 * The statements that let the source role read one more schema (table mode over tables outside shop): USAGE,
 * SELECT on its tables, and on the tables created in it later by the user who runs them.
 */
export function sourceGrantSql(schema: string, role = SOURCE_ROLE): string[] {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) throw new PipelineError(ErrorType.InvalidConfig, `schema name "${schema}" must be a plain identifier`);
  const s = ident(schema);
  const r = ident(role);
  return [
    `GRANT USAGE ON SCHEMA ${s} TO ${r}`,
    `GRANT SELECT ON ALL TABLES IN SCHEMA ${s} TO ${r}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} GRANT SELECT ON TABLES TO ${r}`,
  ];
}

/** Runs sourceGrantSql on `pool` (a connection that owns the schema, or may grant on it). */
export async function grantSourceRead(pool: pg.Pool, schema: string, role = SOURCE_ROLE): Promise<void> {
  for (const statement of sourceGrantSql(schema, role)) await pool.query(statement);
}

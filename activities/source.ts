import { StringDecoder } from 'node:string_decoder';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { FeatureSpec, Frame } from '../ml/types.js';
import { datasetRef, type ArtifactRef, type ArtifactStore, type DatasetRef } from '../store/artifacts.js';
import { ErrorType, PipelineError } from './errors.js';

/** Rows per Arrow shard: bounds the memory of every streaming step, whatever the table size. */
export const SHARD_ROWS = 100_000;

/** Label values: 0/1, or these markers that the clean step turns into quarantine reasons. */
export const LABEL_MISSING = 255;

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

export interface LabelProblem {
  rows: number;
  examples: string[];
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
 */
export async function copyToShards(opts: {
  client: pg.PoolClient;
  select: string;
  specs: FeatureSpec[];
  store: ArtifactStore;
  keyOf: (shard: number) => string;
}): Promise<CopyResult> {
  const { client, select, specs, store, keyOf } = opts;
  const numeric = specs.filter((s) => s.kind === 'numeric').map((s) => s.name);
  const categorical = specs.filter((s) => s.kind === 'categorical').map((s) => s.name);
  const kinds = specs.map((s) => s.kind);
  const shards: ArtifactRef[] = [];
  const badLabels: LabelProblem = { rows: 0, examples: [] };
  let positives = 0;

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
    const fields = line.split('\t');
    if (fields.length !== specs.length + 2) {
      throw new PipelineError(ErrorType.InvalidData, `source row has ${fields.length} columns, expected ${specs.length + 2}`);
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
        badLabels.rows++;
        if (badLabels.examples.length < 5 && !badLabels.examples.includes(raw)) badLabels.examples.push(raw);
      }
    }
    frame.label[n] = label;
    if (label === 1) positives++;
    for (let j = 0; j < kinds.length; j++) {
      const f = fields[j + 2];
      if (kinds[j] === 'numeric') numCols[j]![n] = f === '\\N' ? NaN : Number(f);
      else catCols[j]![n] = text(f);
    }
    n++;
  };

  for await (const lines of copyLines(client, select)) {
    for (const line of lines) {
      addRow(line);
      if (n === SHARD_ROWS) await flush();
    }
  }
  await flush();
  return { dataset: datasetRef(shards), positives, badLabels };
}

/** Streams `COPY (select) TO STDOUT` in text format as batches of lines (one batch per network chunk). */
export async function* copyLines(client: pg.PoolClient, select: string): AsyncGenerator<string[]> {
  const stream = client.query(copyTo(`COPY (${select}) TO STDOUT`));
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
const CATEGORICAL_OIDS = new Set([16, 18, 25, 1042, 1043, 19]);
const TYPE_NAMES: Record<number, string> = { 1082: 'date', 1114: 'timestamp', 1184: 'timestamptz', 114: 'json', 3802: 'jsonb', 17: 'bytea', 2950: 'uuid', 1186: 'interval' };

export interface TableSourcePlan {
  select: string;
  features: FeatureSpec[];
}

/**
 * Table mode: looks at the query's result columns (LIMIT 0, read only) and builds the COPY select with the
 * entity key and label first. Unknown columns, unusable types and a missing key or label are config errors.
 */
export async function planTableSource(
  client: pg.PoolClient,
  source: { query: string; entityKey: string; label: string; features?: string[] | Record<string, 'numeric' | 'categorical'> },
): Promise<TableSourcePlan> {
  const query = source.query.trim().replace(/;\s*$/, '');
  const described = await client.query({ text: `SELECT * FROM (${query}) AS src LIMIT 0`, rowMode: 'array' });
  const columns = new Map(described.fields.map((f) => [f.name, f.dataTypeID]));
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
    features.push({ name, kind: chosen });
  }
  if (features.length === 0) throw new PipelineError(ErrorType.InvalidConfig, 'source.query returns no feature columns besides the key and label');
  const cast = (f: FeatureSpec) =>
    f.kind === 'numeric' ? `(src.${ident(f.name)})::float8` : `(src.${ident(f.name)})::text`;
  const select =
    `SELECT (src.${ident(source.entityKey)})::text, (src.${ident(source.label)})::text, ` +
    `${features.map(cast).join(', ')} FROM (${query}) AS src`;
  return { select, features };
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

/** Runs fn in a READ ONLY transaction: table-mode queries can read, never write. */
export const readOnly = <T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> =>
  withTransaction(pool, fn, 'BEGIN TRANSACTION READ ONLY');

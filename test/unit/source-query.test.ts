import { describe, expect, it } from 'vitest';
import { isSingleSelect, parsePipelineConfig } from '../../pipeline/config.js';
import { describePgError } from '../../db/pg-errors.js';
import { describeRows, parseFloat8, sourceGrantSql } from '../../db/source.js';
import { assertBuiltStatement, checkedSourceQuery, sourceQueryProblem } from '../../db/source-query.js';

const rule = (q: string) => sourceQueryProblem(q)?.rule ?? null;

describe('source query guard (PostgreSQL grammar)', () => {
  it('accepts one SELECT in its usual forms, with comments, literals and a trailing semicolon', () => {
    for (const q of [
      'select * from shop.users',
      'SELECT a, b FROM t WHERE x = 1;',
      "select ';' as x -- ; drop table t",
      "select 'drop table t; commit' as s, \"select;\" from t /* ; delete from t */",
      'with recent as (select * from t where ts > now() - interval \'7 days\') select * from recent',
      'values (1, true), (2, false)',
      'table shop.users',
      'select a from t union all select b from u order by 1 limit 10',
      'select count(*) filter (where y) over (partition by g), coalesce(x, 0)::float8 from t',
    ]) {
      expect(sourceQueryProblem(q), q).toBeNull();
      expect(isSingleSelect(q)).toBe(true);
    }
  });

  it('rejects the reported wrapper escape: the query alone must parse, so a closing parenthesis cannot end the wrapper', () => {
    const q = 'select 1 as id, true as y, 2 as x from t) as s; commit; drop table victim; select * from (select 1 as id, true as y, 2 as x from t';
    expect(sourceQueryProblem(q)).toMatchObject({ rule: 'syntax', message: expect.stringMatching(/source\.query is not valid PostgreSQL: syntax error at or near "\)"/) });
  });

  it('names the rule each forbidden form breaks', () => {
    expect(rule('select 1; drop table victim')).toBe('single-statement');
    expect(sourceQueryProblem('select 1; drop table victim')?.message).toMatch(/holds 2 statements \(SELECT, DROP\)/);
    expect(rule('  ')).toBe('single-statement');
    expect(rule('-- only a comment')).toBe('single-statement');
    expect(rule('drop table victim')).toBe('select-only');
    expect(rule("copy (select current_user) to program 'id'")).toBe('select-only');
    expect(rule('update t set x = 1')).toBe('select-only');
    expect(rule('set role postgres')).toBe('select-only');
    expect(rule('explain analyze select 1')).toBe('select-only');
    expect(rule('with d as (delete from t returning *) select * from d')).toBe('no-data-modifying');
    expect(rule('select * from (select 1) s where exists (with i as (insert into t values (1) returning 1) select 1 from i)')).not.toBeNull();
    expect(rule('select * into stolen from t')).toBe('no-select-into');
    expect(rule('select * from t for update')).toBe('no-locking');
    expect(rule('select * from (select * from t for share) s')).toBe('no-locking');
  });

  it('rejects server-touching functions however they are spelled or nested', () => {
    for (const q of [
      "select pg_read_file('/etc/hostname') as x",
      "select PG_CATALOG.PG_READ_FILE('/etc/hostname')",
      "select \"pg_read_binary_file\"('/etc/hostname')",
      "select * from pg_ls_dir('.') as d",
      "select pg_stat_file('postgresql.conf')",
      "select lo_import('/etc/hostname')",
      'select pg_terminate_backend(pid) from pg_stat_activity',
      'select pg_cancel_backend(1)',
      'select pg_reload_conf()',
      "select set_config('role', 'postgres', true)",
      "select * from dblink('host=x', 'select 1') as t(a int)",
      'select pg_sleep(10)',
      'select pg_advisory_lock(1)',
      "select query_to_xml('select pg_read_file(''/etc/hostname'')', true, true, '')",
      "select nextval('s')",
      "select 1 from t where x in (select length(pg_read_file('/etc/passwd')))",
    ]) {
      expect(rule(q), q).toBe('denied-function');
    }
    expect(sourceQueryProblem("select pg_read_file('/etc/hostname')")?.message).toMatch(/calls pg_read_file\(\)/);
  });

  it('checkedSourceQuery returns the one statement, safe to nest (no trailing semicolon, comment closed by a newline)', () => {
    expect(checkedSourceQuery('select 1 as a;  ')).toBe('select 1 as a\n');
    const nested = `SELECT * FROM (${checkedSourceQuery('select 1 as a -- trailing comment')}) AS src`;
    expect(() => assertBuiltStatement(nested, 'select')).not.toThrow();
    expect(() => checkedSourceQuery('select 1; select 2')).toThrow(expect.objectContaining({ type: 'InvalidConfig', details: { rule: 'single-statement' } }));
  });

  it('built statements must be exactly one SELECT, or one COPY (SELECT …) TO STDOUT', () => {
    expect(() => assertBuiltStatement('COPY (select 1) TO STDOUT', 'copy-out')).not.toThrow();
    expect(() => assertBuiltStatement("COPY (select 1) TO PROGRAM 'id'", 'copy-out')).toThrow(/not COPY \(SELECT …\) TO STDOUT/);
    expect(() => assertBuiltStatement("COPY (select 1) TO '/tmp/x'", 'copy-out')).toThrow(/not COPY \(SELECT …\) TO STDOUT/);
    expect(() => assertBuiltStatement('COPY (select 1) TO STDOUT; drop table victim', 'copy-out')).toThrow(/2 statements/);
    expect(() => assertBuiltStatement('select 1; select 2', 'select')).toThrow(/2 statements/);
    expect(() => assertBuiltStatement('COPY t FROM STDIN', 'copy-out')).toThrow();
  });

  it('the config names the rule broken under source.query', () => {
    const problem = (query: string) => {
      try {
        parsePipelineConfig({ source: { kind: 'table', query, entityKey: 'id', label: 'y' } });
        return null;
      } catch (err) {
        return err as Error & { type: string };
      }
    };
    expect(problem('select * from t')).toBeNull();
    const err = problem("select pg_read_file('/etc/hostname') as id, true as y");
    expect(err?.type).toBe('InvalidConfig');
    expect(err?.message).toMatch(/source\.query: the query calls pg_read_file\(\).*\(rule denied-function\)/);
    expect(problem('select 1; drop table victim')?.message).toMatch(/source\.query: the query holds 2 statements .*\(rule single-statement\)/);
  });
});

describe('value-free Postgres errors', () => {
  const pgError = (fields: Record<string, unknown>) => Object.assign(new Error(String(fields.message)), fields);

  it('keeps the SQLSTATE and type of a bad cast, never the value', () => {
    const d = describePgError(pgError({ code: '22P02', message: 'invalid input syntax for type double precision: "leak.me@example.com"', routine: 'float8in_internal' }));
    expect(d).toMatchObject({ type: 'InvalidData', retryable: false, sqlstate: '22P02' });
    expect(d!.message).toMatch(/a source value has the wrong type: a value is not a valid double precision.*\(SQLSTATE 22P02\)/);
    expect(d!.message).not.toContain('leak.me');
    const range = describePgError(pgError({ code: '22003', message: 'value "99999999999" is out of range for type integer' }));
    expect(range!.message).not.toContain('99999999999');
    const unique = describePgError(pgError({ code: '23505', message: 'duplicate key value violates unique constraint "u"', detail: 'Key (email)=(leak.me@example.com) already exists.', table: 'users', schema: 'shop', constraint: 'u' }));
    expect(unique!.message).toMatch(/table shop\.users, constraint "u"/);
    expect(unique!.message).not.toContain('leak.me');
    const raised = describePgError(pgError({ code: 'P0001', message: 'custom leak.me@example.com' }));
    expect(raised!.message).not.toContain('leak.me');
  });

  it('names objects for schema and privilege errors, types timeouts, and keeps passing faults retryable', () => {
    expect(describePgError(pgError({ code: '42501', message: 'permission denied for schema ml' }))).toMatchObject({ type: 'InvalidConfig', message: expect.stringMatching(/permission denied for schema ml/) });
    expect(describePgError(pgError({ code: '42P01', message: 'relation "shop.nope" does not exist' }))).toMatchObject({ type: 'SourceSchema' });
    expect(describePgError(pgError({ code: '57014', message: 'canceling statement due to statement timeout' }))).toMatchObject({ type: 'InvalidConfig', retryable: false, message: expect.stringMatching(/statement timeout/) });
    expect(describePgError(pgError({ code: '57P01', message: 'terminating connection due to administrator command' }))).toMatchObject({ retryable: true });
    expect(describePgError(pgError({ code: '08006', message: 'connection failure' }))).toMatchObject({ retryable: true });
    expect(describePgError(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).toBeNull();
    expect(describePgError(new Error('plain'))).toBeNull();
  });

  it('row problems are counts and row numbers', () => {
    expect(describeRows({ rows: 1, firstRows: [4] })).toBe('1 value (row 4)');
    expect(describeRows({ rows: 3, firstRows: [1, 2, 9] })).toBe('3 values (rows 1, 2, 9)');
    expect(describeRows({ rows: 12, firstRows: [1, 2, 3, 4, 5] })).toBe('12 values (first rows 1, 2, 3, 4, 5)');
  });

  it('parses text as float8 the way Postgres does', () => {
    expect(parseFloat8(' 12.5 ')).toBe(12.5);
    expect(parseFloat8('-1e3')).toBe(-1000);
    expect(parseFloat8('.5')).toBe(0.5);
    expect(parseFloat8('Infinity')).toBe(Infinity);
    expect(parseFloat8('-inf')).toBe(-Infinity);
    expect(parseFloat8('NaN')).toBeNaN();
    for (const bad of ['', ' ', '0x1F', 'leak.me@example.com', '1,5', 'constructor', '12abc']) expect(parseFloat8(bad), bad).toBeUndefined();
  });

  it('grant statements for another schema quote it and refuse expressions', () => {
    expect(sourceGrantSql('public_data')).toEqual([
      'GRANT USAGE ON SCHEMA "public_data" TO "propensity_source"',
      'GRANT SELECT ON ALL TABLES IN SCHEMA "public_data" TO "propensity_source"',
      'ALTER DEFAULT PRIVILEGES IN SCHEMA "public_data" GRANT SELECT ON TABLES TO "propensity_source"',
    ]);
    expect(() => sourceGrantSql('x; drop table t')).toThrow(/plain identifier/);
  });
});

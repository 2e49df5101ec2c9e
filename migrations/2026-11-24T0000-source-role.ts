import { sql, type Kysely } from 'kysely';

// Source queries (event features over shop.*, table-mode SQL) run as this role: SELECT on schema shop and
// nothing else, never a superuser. Roles belong to the server, grants to each database, so the role is created
// once (NOLOGIN: a DBA gives it a password, or grants it to a login role) and every database grants it shop.
// An existing role is left as it is (its LOGIN and password are the DBA's, or the dev stack's).
// Frozen in time: the role name is written out, not imported.
export async function up(db: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ exists: boolean; can_create: boolean; superuser: boolean }>`
    select exists (select 1 from pg_roles where rolname = 'propensity_source') as exists,
           (select rolcreaterole or rolsuper from pg_roles where rolname = current_user) as can_create,
           coalesce((select rolsuper from pg_roles where rolname = 'propensity_source'), false) as superuser`.execute(db);
  const role = rows[0];
  if (!role.exists && !role.can_create) {
    console.warn(
      '[migrate] role propensity_source not created: the migrating user lacks CREATEROLE. Source queries need it: ' +
        'create it as a DBA (README, "Source-query security"), then run the migrations again or grant it SELECT on shop yourself.',
    );
    return;
  }
  if (role.superuser) {
    // the pipeline refuses to run source queries as a superuser anyway; granting would only hide the mistake
    console.warn('[migrate] role propensity_source is a superuser: not granting it anything; ALTER ROLE propensity_source NOSUPERUSER');
    return;
  }
  if (!role.exists) {
    // duplicate_object / unique_violation: another database's migration created it at the same moment
    await sql`do $$ begin
        create role propensity_source nologin nosuperuser nocreatedb nocreaterole noinherit noreplication nobypassrls;
      exception when duplicate_object or unique_violation then null;
      end $$`.execute(db);
  }
  await sql`grant usage on schema shop to propensity_source`.execute(db);
  await sql`grant select on all tables in schema shop to propensity_source`.execute(db);
  // tables the migrating user creates in shop later (imports, new shop tables) are readable too
  await sql`alter default privileges in schema shop grant select on tables to propensity_source`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ exists: boolean }>`select exists (select 1 from pg_roles where rolname = 'propensity_source') as exists`.execute(db);
  if (!rows[0].exists) return;
  // the role itself stays: other databases on the server may still grant it their shop
  await sql`alter default privileges in schema shop revoke select on tables from propensity_source`.execute(db);
  await sql`revoke select on all tables in schema shop from propensity_source`.execute(db);
  await sql`revoke usage on schema shop from propensity_source`.execute(db);
}

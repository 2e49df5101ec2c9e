import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here (STYLE.md §5).
// One row per file loaded into shop.* by `propensity import events`, and every line it could not load.
export async function up(db: Kysely<any>): Promise<void> {
  const s = db.schema.withSchema('ml');
  await s
    .createTable('imports')
    .addColumn('import_id', 'text', (c) => c.primaryKey())
    .addColumn('file', 'text', (c) => c.notNull())
    .addColumn('format', 'text', (c) => c.notNull())
    .addColumn('rows_in', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('rows_loaded', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('quarantined', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('started_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('finished_at', 'timestamptz')
    .execute();
  await s
    .createTable('import_quarantine')
    .addColumn('import_id', 'text', (c) => c.notNull().references('ml.imports.import_id').onDelete('cascade'))
    .addColumn('line', 'integer', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('raw', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('import_quarantine_pk', ['import_id', 'line'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.withSchema('ml').dropTable('import_quarantine').ifExists().execute();
  await db.schema.withSchema('ml').dropTable('imports').ifExists().execute();
}

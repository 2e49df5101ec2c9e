import { type Kysely, sql } from 'kysely';

/**
 * Source schema `shop` (what a shop exports) and `bench` (the synthetic shop's ground truth).
 * No foreign keys and no unique event ids on purpose: real exports are dirty, and the clean step
 * must see (and count) that dirt rather than have the load fail.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createSchema('shop').ifNotExists().execute();
  const shop = db.schema.withSchema('shop');
  await shop
    .createTable('users')
    .addColumn('user_id', 'bigint', (c) => c.primaryKey())
    .addColumn('signup_at', 'timestamptz', (c) => c.notNull())
    .addColumn('gender', 'text')
    .addColumn('age_band', 'text')
    .addColumn('region', 'text')
    .execute();
  await shop
    .createTable('products')
    .addColumn('product_id', 'bigint', (c) => c.primaryKey())
    .addColumn('category', 'text')
    .addColumn('category_id', 'numeric(20, 0)')
    .addColumn('brand', 'text')
    .addColumn('price', 'numeric(12, 2)')
    .execute();
  await shop
    .createTable('events')
    .addColumn('event_id', 'bigint')
    .addColumn('user_id', 'bigint')
    .addColumn('session_id', 'text')
    .addColumn('product_id', 'bigint')
    .addColumn('event_type', 'text')
    .addColumn('price', 'numeric(12, 2)')
    .addColumn('rating', 'smallint')
    .addColumn('occurred_at', 'timestamptz')
    .execute();
  await shop.createIndex('events_user_id_occurred_at_idx').on('events').columns(['user_id', 'occurred_at']).execute();
  await shop.createIndex('events_occurred_at_idx').on('events').column('occurred_at').execute();

  await db.schema.createSchema('bench').ifNotExists().execute();
  const bench = db.schema.withSchema('bench');
  await bench
    .createTable('shops')
    .addColumn('id', 'integer', (c) => c.primaryKey().defaultTo(1))
    .addColumn('seed', 'integer')
    .addColumn('users', 'integer')
    .addColumn('days', 'integer')
    .addColumn('start_at', 'timestamptz')
    .addColumn('end_at', 'timestamptz')
    .addColumn('cutoff_at', 'timestamptz')
    .addColumn('horizon_days', 'integer')
    .addColumn('events', 'bigint')
    .addColumn('dirty_rate', 'double precision')
    .addColumn('created_at', 'timestamptz', (c) => c.defaultTo(sql`now()`))
    .addCheckConstraint('shops_single_row', sql`id = 1`)
    .execute();
  await bench
    .createTable('user_truth')
    .addColumn('user_id', 'bigint', (c) => c.primaryKey())
    .addColumn('probability', 'double precision', (c) => c.notNull())
    .addColumn('label', 'boolean', (c) => c.notNull())
    .addColumn('is_bot', 'boolean', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropSchema('bench').ifExists().cascade().execute();
  await db.schema.dropSchema('shop').ifExists().cascade().execute();
}

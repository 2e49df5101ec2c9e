import { sql, type Kysely } from 'kysely';

// The model family of every trial and registered version ('logistic' for the baseline, 'mlp' for the search's
// networks; later families add their own names), so analysts can see which kind of model a run shipped.
// Frozen in time: never import application code here (STYLE.md §5).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.withSchema('ml').alterTable('trials').addColumn('family', 'text').execute();
  await db.schema.withSchema('ml').alterTable('model_versions').addColumn('family', 'text').execute();
  // what the rows written before this column were: the baseline is linear, everything else an MLP
  await sql`update ml.trials set family = case when trial_id = 'baseline' then 'logistic' else 'mlp' end where family is null`.execute(db);
  await sql`update ml.model_versions set family = case when jsonb_array_length(coalesce(params -> 'hiddenUnits', '[]'::jsonb)) = 0 then 'logistic' else 'mlp' end where family is null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.withSchema('ml').alterTable('model_versions').dropColumn('family').execute();
  await db.schema.withSchema('ml').alterTable('trials').dropColumn('family').execute();
}

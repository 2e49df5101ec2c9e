import type { Db } from '../db/client.js';

/** One ml.data_quality row per (run, stage), rewritten by a retried step: the quality ledger of ingest, clean, split. */
export async function upsertQuality(
  db: Db,
  values: { run_id: string; stage: string; rows_in: number; rows_out: number; quarantined: string; features: string; quarantine_uri?: string | null },
): Promise<void> {
  await db.db
    .insertInto('ml.data_quality')
    .values(values)
    .onConflict((oc) => oc.columns(['run_id', 'stage']).doUpdateSet(values))
    .execute();
}

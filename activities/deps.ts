import type { Db } from '../db/client.js';
import type { ArtifactStore } from '../store/artifacts.js';
import type { SourceDb } from '../db/source.js';

export interface ActivityDeps {
  db: Db;
  store: ArtifactStore;
  /**
   * Where source queries (shop.*, table-mode SQL) run: a least-privilege read-only role. Absent: the pool
   * openServices bound to `db`, else the dev stack's source role on db's database (see sourceFor).
   */
  source?: SourceDb;
  /** git commit (or package version) of the code the worker runs, recorded as lineage. */
  codeVersion: string;
}

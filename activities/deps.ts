import type { Db } from '../db/client.js';
import type { ArtifactStore } from '../store/artifacts.js';

export interface ActivityDeps {
  db: Db;
  store: ArtifactStore;
  /** git commit (or package version) of the code the worker runs, recorded as lineage. */
  codeVersion: string;
}

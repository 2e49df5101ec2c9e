import type { Migration } from 'kysely';
import * as shop from './2026-11-23T0000-shop.js';
import * as ml from './2026-11-23T0100-ml.js';
import * as imports from './2026-11-23T0200-imports.js';
import * as searchEval from './2026-11-23T0300-search-eval.js';
import * as registry from './2026-11-23T0400-registry.js';
import * as scoring from './2026-11-23T0500-scoring.js';
import * as views from './2026-11-23T0600-views.js';
import * as sourceRole from './2026-11-24T0000-source-role.js';
import * as championScores from './2026-11-29T0100-champion-scores.js';
import * as trends from './2026-11-29T0200-trends-like-with-like.js';
import * as family from './2026-11-29T0300-model-family.js';
import * as stepExecutions from './2026-11-29T0400-step-executions.js';
import * as resume from './2026-11-29T0500-resume.js';
import * as trialPool from './2026-11-29T0600-trial-pool.js';
import * as ensembleMembers from './2026-11-30T0100-ensemble-members.js';
import * as reusedEnsemble from './2026-12-01T0100-reused-ensemble.js';
import * as reusedTrials from './2026-12-01T0200-reused-trials.js';
import * as reusedTrialsInterrupted from './2026-12-02T0500-reused-trials-interrupted.js';
import * as reusedTrialsReplicas from './2026-12-02T0900-reused-trials-replicas.js';

/**
 * Every migration, by name (names sort by date). Listed statically rather than read from the folder: Kysely's
 * FileMigrationProvider uses a runtime import() that cannot load .ts files under every runner (vitest, tsx, bundles).
 */
export const migrations: Record<string, Migration> = {
  '2026-11-23T0000-shop': shop,
  '2026-11-23T0100-ml': ml,
  '2026-11-23T0200-imports': imports,
  '2026-11-23T0300-search-eval': searchEval,
  '2026-11-23T0400-registry': registry,
  '2026-11-23T0500-scoring': scoring,
  '2026-11-23T0600-views': views,
  '2026-11-24T0000-source-role': sourceRole,
  '2026-11-29T0100-champion-scores': championScores,
  '2026-11-29T0200-trends-like-with-like': trends,
  '2026-11-29T0300-model-family': family,
  '2026-11-29T0400-step-executions': stepExecutions,
  '2026-11-29T0500-resume': resume,
  '2026-11-29T0600-trial-pool': trialPool,
  '2026-11-30T0100-ensemble-members': ensembleMembers,
  '2026-12-01T0100-reused-ensemble': reusedEnsemble,
  '2026-12-01T0200-reused-trials': reusedTrials,
  '2026-12-02T0500-reused-trials-interrupted': reusedTrialsInterrupted,
  '2026-12-02T0900-reused-trials-replicas': reusedTrialsReplicas,
};

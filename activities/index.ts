import { createApprovalActivities } from './approval.js';
import { createCleanActivities } from './clean.js';
import { createIngestActivities } from './ingest.js';
import { createRunActivities } from './run.js';
import { createSplitActivities } from './split.js';
import { createEvaluateActivities } from './evaluate.js';
import { createRegisterActivities } from './register.js';
import { createScoreFeatureActivities } from './score-features.js';
import { createScoringActivities } from './score.js';
import { createTrainActivities, type TrainDeps } from './train.js';
import { createEnsembleActivities } from './ensemble.js';

export const createActivities = (deps: TrainDeps) => ({
  ...createRunActivities(deps),
  ...createIngestActivities(deps),
  ...createCleanActivities(deps),
  ...createSplitActivities(deps),
  ...createTrainActivities(deps),
  ...createEnsembleActivities(deps),
  ...createEvaluateActivities(deps),
  ...createRegisterActivities(deps),
  ...createScoringActivities(deps),
  ...createScoreFeatureActivities(deps),
  ...createApprovalActivities(deps),
});
export type Activities = ReturnType<typeof createActivities>;

export type { ActivityDeps } from './deps.js';
export type { TrainDeps } from './train.js';

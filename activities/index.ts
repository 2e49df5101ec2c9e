import { createApprovalActivities } from './approval.js';
import { createPipelineActivities } from './pipeline.js';
import { createRegistryActivities } from './registry.js';
import { createScoringActivities } from './scoring.js';
import { createTrainActivities, type TrainDeps } from './train.js';

export const createActivities = (deps: TrainDeps) => ({
  ...createPipelineActivities(deps),
  ...createTrainActivities(deps),
  ...createRegistryActivities(deps),
  ...createScoringActivities(deps),
  ...createApprovalActivities(deps),
});
export type Activities = ReturnType<typeof createActivities>;

export type { ActivityDeps } from './deps.js';
export type { TrainDeps } from './train.js';

export const TASK_QUEUES = {
  cpu: 'propensity-cpu',
  train: 'propensity-train',
} as const;

export const PIPELINE_STAGES = ['validate', 'ingest', 'clean', 'split', 'search', 'final', 'evaluate', 'register', 'score'] as const;
export type PipelineStage = (typeof PIPELINE_STAGES)[number];

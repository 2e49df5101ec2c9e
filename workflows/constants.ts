export const TASK_QUEUES = {
  cpu: 'propensity-cpu',
  train: 'propensity-train',
} as const;

/** The training pool every config and worker has unless it names another (training.pool, PROPENSITY_TRAIN_POOL). */
export const DEFAULT_POOL = 'cpu';

/**
 * The task queue of a training pool: the default pool keeps the historical name (`propensity-train`, or the
 * run's own train queue), any other pool P polls `<that>-P` (`propensity-train-gpu`). Workers, the pipeline, the
 * CLI's poller check and the Helm chart's KEDA objects all derive it here.
 */
export const trainQueueFor = (pool: string, base: string = TASK_QUEUES.train): string => (pool === DEFAULT_POOL ? base : `${base}-${pool}`);

/** The pool a train queue belongs to (trainQueueFor's inverse): the part after the train queue's name, else the default pool. */
export const poolOfQueue = (taskQueue: string, base: string = TASK_QUEUES.train): string =>
  taskQueue.startsWith(`${base}-`) ? taskQueue.slice(base.length + 1) : DEFAULT_POOL;

export const PIPELINE_STAGES = ['validate', 'ingest', 'clean', 'split', 'search', 'final', 'evaluate', 'register', 'score'] as const;
export type PipelineStage = (typeof PIPELINE_STAGES)[number];

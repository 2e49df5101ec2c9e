/**
 * The one retry policy of the pipeline: what is retried, where, for how long. Pure constants, so workflows,
 * the activity interceptor and the README quote the same numbers.
 *
 * Two budgets, never mixed:
 * - **Transient infrastructure faults** (connection refused or reset, Postgres restarting or refusing connections,
 *   S3 5xx or unreachable) are retried *inside the attempt* by the worker's activity interceptor: the step runs again
 *   with exponential backoff (1 s doubling to 30 s) while the activity keeps heartbeating, for up to
 *   `TRANSIENT.windowMs` (15 minutes). No Temporal attempt is spent; only a fault that outlasts the window escapes
 *   to Temporal as an ordinary failure (and the next attempt gets a fresh window).
 * - **Real failures** (a worker that dies or drains, a bug, an unexpected error) spend Temporal attempts:
 *   `ATTEMPTS.cpu` for data steps, `ATTEMPTS.train` for training, with backoff 2 s doubling to 1 min.
 * Typed domain errors (bad config or data, a failed gate) are non-retryable: the interceptor turns them into
 * `ApplicationFailure`s with `nonRetryable: true` and a stable type, so no list of types is repeated here.
 * A training trial whose loss becomes NaN is not an error at all: it returns `status: 'failed'` and the search
 * goes on.
 */
export const TRANSIENT = {
  /** how long one attempt keeps retrying transient faults before giving up on that attempt */
  windowMs: 15 * 60_000,
  initialDelayMs: 1_000,
  maxDelayMs: 30_000,
  backoff: 2,
} as const;

export const ATTEMPTS = { cpu: 5, train: 4 } as const;

/** Temporal's retry policy for real failures (the interceptor absorbs transient ones). */
export const RETRY_POLICY = {
  initialInterval: '2 seconds',
  backoffCoefficient: 2,
  maximumInterval: '1 minute',
} as const;

/**
 * Every cpu activity heartbeats at least every `HEARTBEAT.intervalMs` (the interceptor does it for steps that do
 * not heartbeat themselves), so a killed cpu worker's step moves to another worker after `cpuTimeoutSeconds`, not
 * after its 30-minute start-to-close timeout. Training steps heartbeat each epoch and use the pipeline config's
 * `training.heartbeatTimeoutSeconds` (default 120).
 *
 * `HEARTBEAT.throttleSeconds` (PROPENSITY_HEARTBEAT_THROTTLE_SECONDS) caps how long a worker holds back heartbeats.
 * An activity hears that it was cancelled only in the reply to a heartbeat the worker sends, and the SDK sends at
 * most one per min(0.8 × the heartbeat timeout, its max throttle interval): 60 s by default, so a cancelled run's
 * trials trained on for up to a minute, holding their worker slots (and a resume's trials waited for them). At
 * 10 s a trial stops within about 10 s of a cancel, and `run watch` sees epochs that much sooner. The cost is one
 * heartbeat call per running activity (trials, and data steps kept alive by the interceptor) per 10 s instead of per
 * 60 s (48 s for data steps); on Temporal Cloud each is a billable action (360 an hour per running activity), which
 * is why the cap is a setting.
 */
export const HEARTBEAT = { intervalMs: 5_000, cpuTimeoutSeconds: 60, throttleSeconds: 10 } as const;

/**
 * How often the interceptor's keep-alive heartbeats an activity whose heartbeat timeout is `heartbeatTimeoutMs`:
 * every `HEARTBEAT.intervalMs`, or a third of the timeout when that is shorter. At `training.heartbeatTimeoutSeconds`
 * 5 a 5 s keep-alive raced the timeout itself, so a trial busy loading its data before its first epoch could be
 * timed out by a server that had heard nothing for just over 5 s. (The SDK sends at most one heartbeat per 0.8 ×
 * the timeout; the keep-alive only has to be due before that.)
 */
export function keepAliveMs(heartbeatTimeoutMs: number | undefined): number {
  return heartbeatTimeoutMs && heartbeatTimeoutMs > 0 ? Math.min(HEARTBEAT.intervalMs, heartbeatTimeoutMs / 3) : HEARTBEAT.intervalMs;
}

/**
 * The activity options every workflow uses. `cpu`: data steps and scoring, kept alive by the interceptor's
 * heartbeat; `train`: trials and final training, which heartbeat each epoch.
 */
export function activityOptions(kind: 'cpu' | 'train', taskQueue: string, heartbeatTimeoutSeconds = 120) {
  return {
    taskQueue,
    // a generous ceiling: a dead worker is noticed by the heartbeat timeout; this bounds a live but stuck one
    startToCloseTimeout: kind === 'cpu' ? '1 hour' : '3 hours',
    heartbeatTimeout: `${kind === 'cpu' ? HEARTBEAT.cpuTimeoutSeconds : heartbeatTimeoutSeconds} seconds`,
    retry: { ...RETRY_POLICY, maximumAttempts: ATTEMPTS[kind] },
  } as const;
}

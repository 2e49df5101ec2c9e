/**
 * The typed cause of a failed run, for people: a WorkflowFailedError wraps an ActivityFailure or ChildWorkflowFailure
 * that wraps the ApplicationFailure with the stable type and the message that says what to do. The deepest failure
 * that has a type is the one that explains itself (what `propensity run show` lists as the run's error).
 */
export function typedCause(err: unknown): { type: string; message: string } | null {
  let found: { type: string; message: string } | null = null;
  for (let e = err as { type?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 10; e = e.cause as typeof e, depth++) {
    if (typeof e.type === 'string' && e.type && typeof e.message === 'string') found = { type: e.type, message: e.message };
  }
  return found;
}

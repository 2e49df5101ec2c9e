import { Context } from '@temporalio/activity';

/**
 * Heartbeat details per activity execution. Activities heartbeat through `beat` (never `ctx.heartbeat` directly) so
 * that the interceptor's keep-alive re-sends the last details instead of wiping them, and so that a step re-run
 * in-process after a transient fault resumes from what this attempt reached (`lastDetails`), not from what the
 * previous attempt left in `info.heartbeatDetails`.
 */
const details = new WeakMap<Context, { value: unknown }>();

function context(): Context | null {
  try {
    return Context.current();
  } catch {
    return null; // a plain function call outside an activity (unit tests)
  }
}

function stateOf(ctx: Context) {
  let s = details.get(ctx);
  if (!s) details.set(ctx, (s = { value: ctx.info.heartbeatDetails }));
  return s;
}

/** Heartbeats `value` (or, without one, the last details again) and remembers it. */
export function beat(value?: unknown): void {
  const ctx = context();
  if (ctx) beatOn(ctx, value);
}

function beatOn(ctx: Context, value?: unknown): void {
  const s = stateOf(ctx);
  if (value !== undefined) s.value = value;
  ctx.heartbeat(s.value);
}

/** The last heartbeat details of this execution: this attempt's newest, else the previous attempt's. */
export function lastDetails<T>(): T | undefined {
  const ctx = context();
  return ctx ? (stateOf(ctx).value as T | undefined) : undefined;
}

/** Heartbeats the last details every `intervalMs` until the returned function is called. */
export function keepAlive(intervalMs: number): () => void {
  const ctx = context();
  if (!ctx) return () => {};
  const timer = setInterval(() => beatOn(ctx), intervalMs);
  timer.unref?.();
  return () => clearInterval(timer);
}

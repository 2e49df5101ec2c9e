import { Context } from '@temporalio/activity';
import type { Activities } from '../../activities/index.js';

/**
 * What an activity does on a worker that has stopped reporting (stalled loading its data, or hung after its work): it
 * heartbeats every 100 ms and never returns, until its run is cancelled or its worker stops.
 */
export async function stall(): Promise<never> {
  const ctx = Context.current();
  for (;;) {
    ctx.heartbeat();
    await ctx.sleep(100);
  }
}

/**
 * A trainTrial for `trialId`s that `which` picks: it trains for real and stops, as a drained worker stops it, once it
 * has checkpointed epoch `epoch` (its cancellation signal replaced, the real training code running); then it calls
 * `onStopped` and never reports back, heartbeating until the run is cancelled or the worker stops. Other trials train
 * as usual. Used by the resume tests and the history recording.
 */
export function drainedAfterEpoch(train: Activities['trainTrial'], which: (trialId: string) => boolean, epoch: number, onStopped: () => void): Activities['trainTrial'] {
  return async (input) => {
    if (!which(input.trialId)) return train(input);
    const ctx = Context.current();
    const drain = new AbortController();
    const heartbeat = ctx.heartbeat.bind(ctx);
    Object.assign(ctx, {
      cancellationSignal: drain.signal,
      heartbeat: (details?: unknown) => {
        heartbeat(details);
        if (((details as { epoch?: number } | undefined)?.epoch ?? 0) >= epoch) drain.abort('the worker is draining');
      },
    });
    await train(input).catch(() => undefined);
    onStopped();
    return stall();
  };
}

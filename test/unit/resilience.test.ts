import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { isTransient, PipelineError, toFailure } from '../../activities/errors.js';
import { beat, lastDetails } from '../../activities/heartbeat.js';
import { HEARTBEAT, keepAliveMs } from '../../pipeline/retry.js';
import { resilientActivities } from '../../workers/interceptors.js';

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:54329'), { code: 'ECONNREFUSED' });

describe('isTransient', () => {
  it('knows the faults of a dependency that is down, and nothing else', () => {
    expect(isTransient(refused())).toBe(true);
    expect(isTransient(new AggregateError([refused()], 'connect failed'))).toBe(true);
    expect(isTransient(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isTransient(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }))).toBe(true);
    expect(isTransient(Object.assign(new Error('the database system is starting up'), { code: '57P03' }))).toBe(true);
    expect(isTransient(Object.assign(new Error('x'), { name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } }))).toBe(true);
    expect(isTransient(new Error('wrapped', { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) }))).toBe(true);

    expect(isTransient(new Error('boom'))).toBe(false);
    expect(isTransient(new TypeError('x is not a function'))).toBe(false);
    expect(isTransient(Object.assign(new Error('relation does not exist'), { code: '42P01' }))).toBe(false);
    expect(isTransient(Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } }))).toBe(false);
    expect(isTransient(new PipelineError('InvalidData', 'bad rows'))).toBe(false);
  });

  it('types domain errors as non-retryable failures and leaves faults retryable', () => {
    const typed = toFailure(new PipelineError('EmptyDataset', 'no rows')) as ApplicationFailure;
    expect(typed).toBeInstanceOf(ApplicationFailure);
    expect(typed.type).toBe('EmptyDataset');
    expect(typed.nonRetryable).toBe(true);
    const fault = refused();
    expect(toFailure(fault)).toBe(fault);
  });
});

describe('the activity interceptor', () => {
  const env = () => new MockActivityEnvironment({ attempt: 1 }, { interceptors: [resilientActivities({ windowMs: 60_000, heartbeatMs: 50 })] });

  it('re-runs a step after transient faults within one attempt, resuming from its own last heartbeat', async () => {
    let calls = 0;
    const seen: unknown[] = [];
    const out = await env().run(async () => {
      calls++;
      seen.push(lastDetails());
      beat({ epoch: calls });
      if (calls < 3) throw refused();
      return 'done';
    });
    expect(out).toBe('done');
    expect(calls).toBe(3);
    // the second and third runs start from the heartbeat the previous run sent, not from the attempt's start
    expect(seen).toEqual([undefined, { epoch: 1 }, { epoch: 2 }]);
  });

  it('fails at once, typed and non-retryable, on a domain error', async () => {
    let calls = 0;
    const err = (await env()
      .run(async () => {
        calls++;
        throw new PipelineError('InvalidData', 'column "x" holds text');
      })
      .catch((e: unknown) => e)) as ApplicationFailure;
    expect(calls).toBe(1);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err.type).toBe('InvalidData');
    expect(err.nonRetryable).toBe(true);
  });

  it('lets an unknown error through as it is, so Temporal spends an attempt on it', async () => {
    let calls = 0;
    const err = await env()
      .run(async () => {
        calls++;
        throw new TypeError('bug');
      })
      .catch((e) => e);
    expect(calls).toBe(1);
    expect(err).toBeInstanceOf(TypeError);
  });

  it('gives up on a fault that outlasts its window', async () => {
    let calls = 0;
    const short = new MockActivityEnvironment({}, { interceptors: [resilientActivities({ windowMs: 2_500, heartbeatMs: 50 })] });
    const err = await short
      .run(async () => {
        calls++;
        throw refused();
      })
      .catch((e) => e);
    // delays 1 s then 2 s: the second would pass the 2.5 s window, so the fault escapes after two runs
    expect(calls).toBe(2);
    expect((err as { code?: string }).code).toBe('ECONNREFUSED');
  });

  it('keeps heartbeating while a step runs', async () => {
    const e = env();
    let beats = 0;
    e.on('heartbeat', () => beats++);
    await e.run(async () => new Promise((r) => setTimeout(r, 300)));
    expect(beats).toBeGreaterThanOrEqual(3);
  });

  it("keeps alive well inside the activity's own heartbeat timeout, never only as often as it", async () => {
    expect(keepAliveMs(5_000)).toBeCloseTo(5_000 / 3, 6); // training.heartbeatTimeoutSeconds at its minimum
    expect(keepAliveMs(120_000)).toBe(HEARTBEAT.intervalMs);
    expect(keepAliveMs(HEARTBEAT.cpuTimeoutSeconds * 1000)).toBe(HEARTBEAT.intervalMs);
    expect(keepAliveMs(undefined)).toBe(HEARTBEAT.intervalMs);
    // the interceptor reads the timeout from the activity's info: 600 ms → a beat every 200 ms
    const beatsWith = async (heartbeatTimeoutMs: number) => {
      const e = new MockActivityEnvironment({ attempt: 1, heartbeatTimeoutMs }, { interceptors: [resilientActivities({ windowMs: 60_000 })] });
      let beats = 0;
      e.on('heartbeat', () => beats++);
      await e.run(async () => new Promise((r) => setTimeout(r, 700)));
      return beats;
    };
    expect(await beatsWith(600)).toBeGreaterThanOrEqual(2);
    expect(await beatsWith(120_000)).toBe(0);
  });
});

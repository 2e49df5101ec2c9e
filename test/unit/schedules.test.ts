import { describe, expect, it } from 'vitest';
import { parsePipelineConfig } from '../../pipeline/config.js';
import { applyAsOf } from '../../pipeline/as-of.js';
import type { Client } from '@temporalio/client';
import { createSchedule, cronTimesBetween, parseOverlap, parseWindow, validateCron, validateTimezone } from '../../schedules/schedules.js';

const DAY = 86_400_000;

describe('applyAsOf: a run stands at its as-of time', () => {
  it('gives an events source without a cutoff cutoff = asOf − horizonDays', () => {
    const config = applyAsOf(parsePipelineConfig({ source: { kind: 'events', horizonDays: 7 } }), '2026-11-10T02:00:00.000Z');
    expect(config.source).toMatchObject({ kind: 'events', cutoff: '2026-11-03T02:00:00.000Z', horizonDays: 7 });
  });

  it('keeps an explicit cutoff whose label window ends by the as-of time, and rejects one that does not', () => {
    const ok = parsePipelineConfig({ source: { kind: 'events', cutoff: '2026-11-01T00:00:00Z', horizonDays: 7 } });
    expect(applyAsOf(ok, '2026-11-08T00:00:00Z')).toBe(ok);
    expect(() => applyAsOf(ok, '2026-11-07T23:59:59Z')).toThrow(/ends at 2026-11-08T00:00:00.000Z, after the run's as-of time 2026-11-07T23:59:59.000Z/);
  });

  it('leaves table sources and runs without an as-of time unchanged; rejects a bad as-of time', () => {
    const table = parsePipelineConfig({ source: { kind: 'table', query: 'select * from t', entityKey: 'id', label: 'y' } });
    expect(applyAsOf(table, '2026-11-10T02:00:00Z')).toBe(table);
    const events = parsePipelineConfig({});
    expect(applyAsOf(events, undefined)).toBe(events);
    expect(() => applyAsOf(events, 'yesterday')).toThrow(expect.objectContaining({ type: 'InvalidConfig', message: expect.stringMatching(/asOf "yesterday" is not an ISO date-time/) }));
  });
});

describe('schedule input checks', () => {
  it('names the bad cron expression and its field', () => {
    expect(() => validateCron('0 2 * * *')).not.toThrow();
    expect(() => validateCron('@daily')).not.toThrow();
    expect(() => validateCron('0 2 * * MON-FRI', 'Europe/Berlin')).not.toThrow();
    expect(() => validateCron('0 25 * * *')).toThrow(/^cron expression "0 25 \* \* \*": hour field "25" is invalid/);
    expect(() => validateCron('0 2 * 13 *')).toThrow(/month field "13" is invalid/);
    expect(() => validateCron('0 2 * *')).toThrow(/expected 5 fields .*got 4/);
    expect(() => validateCron('0 0 2 * * *')).toThrow(/expected 5 fields .*got 6/);
    expect(() => validateCron('@every 1h')).toThrow(/unknown alias/);
  });

  it('checks time zones, windows and overlap policies', () => {
    expect(() => validateTimezone('Europe/Berlin')).not.toThrow();
    expect(() => validateTimezone('Mars/Olympus_Mons')).toThrow(/not an IANA time zone/);
    expect(parseWindow('1d')).toBe(DAY);
    expect(parseWindow('90s')).toBe(90_000);
    expect(() => parseWindow('5')).toThrow(/unit s, m, h or d/);
    expect(() => parseWindow('5s')).toThrow(/at least 10s/);
    expect(parseOverlap('buffer_all')).toBe('BUFFER_ALL');
    expect(() => parseOverlap('sometimes')).toThrow(/not one of skip, buffer_one/);
  });

  it('lists the times a backfill range covers, both ends included, in the schedule time zone', () => {
    expect(cronTimesBetween(['0 2 * * *'], 'UTC', new Date('2026-11-01T02:00:00Z'), new Date('2026-11-03T02:00:00Z'))).toEqual([
      '2026-11-01T02:00:00.000Z',
      '2026-11-02T02:00:00.000Z',
      '2026-11-03T02:00:00.000Z',
    ]);
    expect(cronTimesBetween(['0 2 * * *'], 'Europe/Berlin', new Date('2026-11-01T00:00:00Z'), new Date('2026-11-02T00:00:00Z'))).toEqual([
      '2026-11-01T01:00:00.000Z',
    ]);
  });

  it('rejects a config with a fixed source.cutoff or a bad key before touching Temporal', async () => {
    const none = {} as Client; // any call on it would throw a TypeError, not the typed error below
    await expect(
      createSchedule(none, { scheduleId: 'n1', config: { source: { kind: 'events', cutoff: '2026-11-01T00:00:00Z' } }, cron: ['0 2 * * *'] }),
    ).rejects.toMatchObject({ type: 'InvalidConfig', message: expect.stringMatching(/source.cutoff is fixed at 2026-11-01T00:00:00Z/) });
    await expect(createSchedule(none, { scheduleId: 'n1', config: { modelNmae: 'x' }, cron: ['0 2 * * *'] })).rejects.toMatchObject({
      type: 'InvalidConfig',
      message: expect.stringMatching(/unknown key "modelNmae"/),
    });
    await expect(createSchedule(none, { scheduleId: 'bad id', config: {}, cron: ['0 2 * * *'] })).rejects.toMatchObject({ type: 'InvalidSchedule' });
    await expect(createSchedule(none, { scheduleId: 'n1', config: {} })).rejects.toMatchObject({ type: 'InvalidSchedule', message: expect.stringMatching(/at least one cron/) });
  });
});

import { randomUUID } from 'node:crypto';
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';
import { readHistoryFile, replayHistories, type ReplayItem } from '../../audit/history.js';
import { findRepoRoot } from '../../infra/index.js';
import { expectedSeconds, longestFirst, type TrialTiming } from '../../ml/search.js';
import { REUSABLE_STEPS } from '../../pipeline/resume.js';
import { replicaPlan } from '../../ml/replicas.js';
import type { TrainTrialOutput } from '../../activities/train.js';
import { WORKFLOWS_PATH } from '../../workers/deps.js';

// Every history committed here was recorded from a real run (scripts/record-histories.ts). They must keep
// replaying against workflows/: a change that makes a past run issue different commands needs a patched() guard.
const here = path.dirname(fileURLToPath(import.meta.url));
const root = findRepoRoot();
const committed = readdirSync(here)
  .filter((f) => f.endsWith('.json'))
  .sort();
let items: ReplayItem[];

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('ERROR', () => {}), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
  items = await Promise.all(committed.map((f) => readHistoryFile(path.join(here, f))));
});

const byType = (type: string) => items.filter((i) => i.workflowType === type);
const payload = <T,>(p: unknown) => defaultPayloadConverter.fromPayload(p as never) as T;
/** The ids of the patches a history recorded (its patched() markers). */
const patchIds = (i: ReplayItem): string[] =>
  i.history.events!.flatMap((e) => {
    const data = e.markerRecordedEventAttributes?.details?.['patch-data']?.payloads?.[0];
    return data ? [payload<{ id: string }>(data).id] : [];
  });

/**
 * Replays against a copy of workflows/ with trainPipeline edited, placed beside workflows/ so its `../activities`,
 * `../ml` imports resolve; the copy is removed afterwards whatever happens.
 */
async function replayAgainstEditedCopy(edit: (pipelineSource: string) => string, histories: ReplayItem[]) {
  const dir = path.join(root, `workflows-replay-test-${randomUUID().slice(0, 8)}`);
  try {
    cpSync(path.join(root, 'workflows'), dir, { recursive: true });
    const file = path.join(dir, 'pipeline.ts');
    const before = readFileSync(file, 'utf8');
    const after = edit(before);
    if (after === before) throw new Error('the edit did not apply: the anchor in workflows/pipeline.ts moved, update this test');
    writeFileSync(file, after);
    return await replayHistories(histories, { workflowsPath: path.join(dir, 'index.ts') });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// The ingest call, found by its shape so that unrelated edits elsewhere in the workflow do not matter.
const INGEST = /\(await cpu\.ingestSource\.executeWithOptions\(([^;]*)\)\);/;

describe('committed workflow histories', () => {
  it('include real pipeline runs with their hyperparameter searches and scoring children', () => {
    expect(byType('trainPipeline').length).toBeGreaterThanOrEqual(1);
    expect(byType('hyperparameterSearch').length).toBeGreaterThanOrEqual(1);
    // the search is the pipeline's child: its id derives from the parent's
    const pipelines = new Set(byType('trainPipeline').map((i) => i.workflowId));
    for (const search of byType('hyperparameterSearch')) expect(pipelines).toContain(search.workflowId.replace(/\/search$/, ''));
    // and a scoring child of a pipeline that scored after promotion
    for (const score of byType('scoreUsers')) expect(pipelines).toContain(score.workflowId.replace(/\/score$/, ''));
    for (const i of items) expect(i.history.events!.length, i.file).toBeGreaterThan(10);
  });

  it('include runs that failed or were cancelled and their resumes, which took the completed steps (and trials) as input, and runs that upsert search attributes', () => {
    const E = temporal.api.enums.v1.EventType;
    type Interrupted = { trialId: string; rung: number; from: { ref: { modelJson: { key: string } }; epoch: number } };
    type Steps = Record<string, unknown> & {
      replicas?: { trialId: string }[];
      interruptedReplicas?: Interrupted[];
      searchTrials?: {
        results: { rung: number; result: { trialId: string } }[];
        baseline?: unknown;
        interrupted?: Interrupted[];
      };
    };
    const input = (i: ReplayItem) => payload<{ resume?: { fromRunId: string; steps: Steps } }>(i.history.events![0].workflowExecutionStartedEventAttributes!.input!.payloads![0]);
    const resumed = byType('trainPipeline').filter((i) => input(i).resume);
    expect(resumed.length).toBeGreaterThanOrEqual(1);
    expect(resumed.some((r) => 'ensemble' in input(r).resume!.steps), 'a resume that reused an ensemble step').toBe(true);
    expect(resumed.some((r) => 'replicas' in input(r).resume!.steps), 'a resume inside an ensemble step').toBe(true);
    expect(resumed.some((r) => 'searchTrials' in input(r).resume!.steps), 'a resume inside a search').toBe(true);
    expect(resumed.some((r) => (input(r).resume!.steps.searchTrials?.interrupted?.length ?? 0) > 0), 'a resume that continued interrupted trials (v9)').toBe(true);
    expect(resumed.some((r) => (input(r).resume!.steps.interruptedReplicas?.length ?? 0) > 0), 'a resume that continued an interrupted seed replica (v10)').toBe(true);
    const trainedBy = (i: ReplayItem) =>
      i.history.events!.flatMap((e) => {
        const s = e.activityTaskScheduledEventAttributes;
        return s?.activityType?.name === 'trainTrial' ? [payload<{ trialId: string; rung?: number }>(s.input!.payloads![0])] : [];
      });
    for (const r of resumed) {
      const { fromRunId, steps } = input(r).resume!;
      const { replicas, interruptedReplicas, searchTrials, ...whole } = steps;
      // a prefix of the reusable steps: through the final training, and the ensemble step too since v7; a resume
      // inside the search (v8) stops at the split
      expect(Object.keys(whole)).toEqual(REUSABLE_STEPS.slice(0, Object.keys(whole).length));
      expect(Object.keys(whole)).toContain(searchTrials ? 'split' : 'final');
      // the run it resumed is committed too, failed or cancelled, under the same workflow id
      const failed = items.find((i) => i.runId === fromRunId)!;
      expect(failed.workflowId).toBe(r.workflowId);
      expect([E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED]).toContain(failed.history.events!.at(-1)!.eventType);
      // and the resumed run executed none of the steps it reused; inside an ensemble step (v8) it trained only the
      // replicas it did not take, then built the ensemble
      const scheduled = r.history.events!.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
      const trained = trainedBy(r).map((t) => t.trialId);
      if (searchTrials) {
        // inside a search (v8): the baseline it took is not trained again, and its search child trains no trial at a
        // rung it took
        if (searchTrials.baseline) expect(trained).not.toContain('baseline');
        const child = items.find((i) => i.workflowType === 'hyperparameterSearch' && i.workflowId === `${r.workflowId}/search` && i.history.events![0].workflowExecutionStartedEventAttributes?.parentWorkflowExecution?.runId === r.runId);
        expect(child, 'the resumed run’s search is committed').toBeDefined();
        const taken = new Set(searchTrials.results.map((t) => `${t.result.trialId}@${t.rung}`));
        const childTrained = trainedBy(child!).map((t) => `${t.trialId}@${t.rung ?? 0}`);
        expect(childTrained.length).toBeGreaterThanOrEqual(1);
        expect(childTrained.filter((t) => taken.has(t))).toEqual([]);
        // an interrupted trial (v9) trains in its rung from the failed run's checkpoint it was given
        for (const t of searchTrials.interrupted ?? []) {
          const run = trainedBy(child!).find((x) => x.trialId === t.trialId && (x.rung ?? 0) === t.rung) as { resumeFrom?: { ref: { modelJson: { key: string } }; epoch: number } } | undefined;
          expect(run?.resumeFrom, `${t.trialId}@${t.rung}`).toEqual({ ref: t.from.ref, epoch: t.from.epoch });
          expect(t.from.ref.modelJson.key).toContain(`runs/${fromRunId}/trials/${t.trialId}/checkpoints/`);
        }
      } else {
        const ensembleStep = replicas ? [...trained.map(() => 'trainTrial'), 'buildEnsemble'] : [];
        expect(scheduled).toEqual(['startRun', ...ensembleStep, 'evaluateModel', 'registerModel', 'finishRun']);
        if (replicas) {
          expect(trained.length).toBeGreaterThanOrEqual(1);
          expect(trained.filter((id) => replicas.some((t) => t.trialId === id))).toEqual([]);
        }
        // an interrupted replica (v10) trains from the failed run's checkpoint it was given
        for (const t of interruptedReplicas ?? []) {
          const run = trainedBy(r).find((x) => x.trialId === t.trialId) as { resumeFrom?: { ref: { modelJson: { key: string } }; epoch: number } } | undefined;
          expect(run?.resumeFrom, t.trialId).toEqual({ ref: t.from.ref, epoch: t.from.epoch });
          expect(t.from.ref.modelJson.key).toContain(`runs/${fromRunId}/trials/${t.trialId}/checkpoints/`);
        }
      }
    }
    const upserting = byType('trainPipeline').filter((i) => i.history.events!.some((e) => e.eventType === E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES));
    expect(upserting.length).toBeGreaterThanOrEqual(3);
  });

  it('dispatch each promoted rung of a search recorded with search-longest-first longest first, as its previous rung timed them', () => {
    type Input = { trialId: string; rung: number; params: { epochs: number } };
    const marked = byType('hyperparameterSearch').filter((i) => patchIds(i).includes('search-longest-first'));
    expect(marked.length).toBeGreaterThanOrEqual(1);
    let promotedRungs = 0;
    for (const search of marked) {
      const events = search.history.events!;
      const scheduled = events.flatMap((e) => (e.activityTaskScheduledEventAttributes ? [{ id: e.eventId!.toString(), input: payload<Input>(e.activityTaskScheduledEventAttributes.input!.payloads![0]) }] : []));
      // a resumed search (v8) took some results from the failed run's: they timed the rung after them as well
      const reused = payload<{ reused?: { rung: number; result: TrialTiming & { trialId: string } }[] }>(events[0].workflowExecutionStartedEventAttributes!.input!.payloads![0]).reused ?? [];
      const results = new Map([
        ...reused.map((r) => [`${r.result.trialId}@${r.rung}`, r.result] as const),
        ...events.flatMap((e) => {
          const done = e.activityTaskCompletedEventAttributes;
          if (!done) return [];
          const input = scheduled.find((s) => s.id === done.scheduledEventId!.toString())!.input;
          return [[`${input.trialId}@${input.rung}`, payload<TrialTiming>(done.result!.payloads![0])] as const];
        }),
      ]);
      for (let k = 1; scheduled.some((s) => s.input.rung === k); k++) {
        const rung = scheduled.filter((s) => s.input.rung === k).map((s) => s.input);
        const expected = longestFirst(rung, (t) => expectedSeconds(results.get(`${t.trialId}@${k - 1}`)!, t.params.epochs));
        // longestFirst keeps ties in the order given, so ties may come either way round: compare the expectations
        expect(rung.map((t) => expectedSeconds(results.get(`${t.trialId}@${k - 1}`)!, t.params.epochs)), `${search.file} rung ${k}`).toEqual(
          expected.map((t) => expectedSeconds(results.get(`${t.trialId}@${k - 1}`)!, t.params.epochs)),
        );
        promotedRungs++;
      }
    }
    expect(promotedRungs).toBeGreaterThanOrEqual(1);
  });

  it('include a run whose seed replicas were cut to training.ensemble.replicaBudgetSeconds (v11), each budgeted run training as its plan says', () => {
    // the parsed config is startRun's result; the replicas are the trainTrial activities named <best>-s<n>
    // (histories from before ensembles existed have no training.ensemble)
    type Started = { config: { search: { parallelism: number }; training: { ensemble?: { seeds: number; replicaBudgetSeconds?: number | null } } } };
    // (a resume schedules only the replicas it did not take from the failed run: not a cut)
    const fresh = byType('trainPipeline').filter((i) => !payload<{ resume?: unknown }>(i.history.events![0].workflowExecutionStartedEventAttributes!.input!.payloads![0]).resume);
    const cut = fresh.flatMap((i) => {
      const events = i.history.events!;
      const scheduled = new Map(events.flatMap((e) => (e.activityTaskScheduledEventAttributes ? [[String(e.eventId), e.activityTaskScheduledEventAttributes]] : [])));
      const startRunDone = events.find((e) => scheduled.get(String(e.activityTaskCompletedEventAttributes?.scheduledEventId))?.activityType?.name === 'startRun');
      if (!startRunDone) return [];
      const started = payload<Started>(startRunDone.activityTaskCompletedEventAttributes!.result!.payloads![0]).config;
      const { ensemble } = started.training;
      const replicas = [...scheduled.values()].filter((s) => s.activityType?.name === 'trainTrial').map((s) => payload<{ trialId: string }>(s.input!.payloads![0]).trialId).filter((id) => /-s\d+$/.test(id));
      if (ensemble?.replicaBudgetSeconds == null) return [];
      // the search child's result, as the pipeline received it: the best trial the plan was made from
      const child = events.find((e) => e.childWorkflowExecutionCompletedEventAttributes?.workflowType?.name === 'hyperparameterSearch');
      // (a run that never reached the ensemble step: cancelled in its search, or the baseline won)
      const reachedEnsemble = replicas.length > 0 || [...scheduled.values()].some((a) => a.activityType?.name === 'buildEnsemble');
      if (!child || !reachedEnsemble) return [];
      const { best } = payload<{ best: TrainTrialOutput }>(child.childWorkflowExecutionCompletedEventAttributes!.result!.payloads![0]);
      const plan = replicaPlan({ seeds: ensemble.seeds, budgetSeconds: ensemble.replicaBudgetSeconds, slots: started.search.parallelism, best });
      // every budgeted run trained exactly the replicas its plan says
      expect(replicas.length, i.file).toBe(plan.count);
      return plan.count < plan.wanted ? [{ file: i.file, replicas, ensemble }] : [];
    });
    expect(cut.length, 'a pipeline history whose budget trained fewer replicas than its seeds asked for').toBeGreaterThanOrEqual(1);
    // the replicas it trained are the first ones, seeds 2, 3, … in order
    for (const c of cut) expect(c.replicas.map((id) => Number(id.split('-s').pop()))).toEqual(c.replicas.map((_, k) => k + 2));
  });

  it('cover every patch the workflows take: each patched() branch was recorded by a real run', () => {
    const used = new Set(
      readdirSync(path.join(root, 'workflows'))
        .filter((f) => f.endsWith('.ts'))
        .flatMap((f) => [...readFileSync(path.join(root, 'workflows', f), 'utf8').matchAll(/patched\('([^']+)'\)/g)].map((m) => m[1])),
    );
    const recorded = new Set(items.flatMap(patchIds));
    expect(used.size).toBeGreaterThanOrEqual(5);
    expect([...used].filter((id) => !recorded.has(id))).toEqual([]);
  });

  it('every one replays against the current workflow code', async () => {
    const results = await replayHistories(items, { workflowsPath: WORKFLOWS_PATH });
    expect(results).toHaveLength(committed.length);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(results.map((r) => path.basename(r.file!))).toEqual(committed);
  });

  it('an incompatible change to trainPipeline (an extra activity call) fails replay with a determinism violation', async () => {
    const pipeline = byType('trainPipeline')[0];
    const search = byType('hyperparameterSearch')[0];
    const results = await replayAgainstEditedCopy(
      (src) => src.replace(INGEST, (call, args: string) => `${call}\n    await cpu.ingestSource.executeWithOptions(${args});`),
      [pipeline, search],
    );
    expect(results[0]).toMatchObject({ workflowId: pipeline.workflowId, workflowType: 'trainPipeline', ok: false, error: { type: 'DeterminismViolation' } });
    // core names the mismatch: the history scheduled cleanData where the code now asks for ingestSource again
    expect(results[0].error!.message).toMatch(/cleanData/);
    expect(results[0].error!.message).toMatch(/ingestSource/);
    // the unchanged search workflow, replayed from the same bundle, still passes
    expect(results[1]).toMatchObject({ workflowId: search.workflowId, ok: true });
  });

  it('the same change guarded by patched() keeps the old history replaying', async () => {
    const pipeline = byType('trainPipeline')[0];
    const results = await replayAgainstEditedCopy(
      (src) =>
        `import { patched as replayTestPatched } from '@temporalio/workflow';\n` +
        src.replace(INGEST, (call, args: string) => `${call}\n    if (replayTestPatched('replay-test-extra-ingest')) await cpu.ingestSource.executeWithOptions(${args});`),
      [pipeline],
    );
    expect(results).toEqual([expect.objectContaining({ workflowId: pipeline.workflowId, ok: true })]);
  });
});

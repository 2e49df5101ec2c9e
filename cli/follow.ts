import type { Client, WorkflowHandle } from '@temporalio/client';
import type { PipelineProgress, TrainPipelineOutput } from '../workflows/pipeline.js';
import type { SearchProgress } from '../workflows/search.js';
import { formatSelection } from '../ml/search.js';

/** Prints each finished stage (and search progress) while a pipeline runs; resolves with its result. */
export async function followPipeline(
  client: Client,
  handle: WorkflowHandle,
  log: (line: string) => void,
  intervalMs = 1000,
): Promise<TrainPipelineOutput> {
  const result = handle.result() as Promise<TrainPipelineOutput>;
  let finished = false;
  result.then(
    () => (finished = true),
    () => (finished = true),
  );
  let printed = 0;
  let lastSearch = '';
  const t0 = Date.now();
  const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s`;
  while (!finished) {
    await new Promise((r) => setTimeout(r, intervalMs));
    if (finished) break;
    try {
      const p = await handle.query<PipelineProgress>('progress');
      for (; printed < p.completed.length; printed++) {
        const c = p.completed[printed];
        log(`${elapsed()}  ✓ ${c.stage.padEnd(9)} ${c.detail}`);
      }
      if (p.stage === 'search' && p.searchWorkflowId) {
        const s = await client.workflow
          .getHandle(p.searchWorkflowId)
          .query<SearchProgress>('searchProgress')
          .catch(() => null);
        const line = s ? searchLine(s) : '';
        if (line && line !== lastSearch) {
          log(`${elapsed()}  … ${line}`);
          lastSearch = line;
        }
      }
    } catch {
      // the workflow may not have processed its first task yet; the next poll catches up
    }
  }
  const out = await result;
  try {
    const p = await handle.query<PipelineProgress>('progress');
    for (; printed < p.completed.length; printed++) log(`${elapsed()}  ✓ ${p.completed[printed].stage.padEnd(9)} ${p.completed[printed].detail}`);
  } catch {
    /* closed workflows may no longer answer queries without a worker; the result is what matters */
  }
  return out;
}

/** "search rung 2/3 (15 epochs): 2/6 trials done, running t004,t009; best t010 val ROC-AUC 0.8601" */
export function searchLine(s: SearchProgress): string {
  const rungs = s.rungs?.length ?? 1;
  const rungDone = s.rungDone ?? s.done;
  const rungTrials = s.rungTrials ?? s.total;
  const best = s.best && s.metric ? `; best ${s.best.trialId} ${formatSelection(s.metric, s.best.value)}` : s.bestValAuc !== null ? `; best val ROC-AUC ${s.bestValAuc.toFixed(4)}` : '';
  return (
    `search rung ${s.rung + 1}/${rungs} (${s.rungs?.[s.rung] ?? '?'} epochs): ${rungDone}/${rungTrials} trials done` +
    (s.failed ? ` (${s.failed} failed in rung 1)` : '') +
    `, running ${s.running.join(',') || '-'}${best}`
  );
}

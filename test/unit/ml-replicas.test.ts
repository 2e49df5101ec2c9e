import { describe, expect, it } from 'vitest';
import { formatReplicaPlan, replicaPlan } from '../../ml/replicas.js';

// a best trial promoted to its last rung at epoch 5 that trained epochs 6-15 in 20 s: 2 s an epoch, 30 s from scratch
const best = { seconds: 20, epochs: 15, resumedFromEpoch: 5 };

describe('seed replicas within a budget', () => {
  it('trains every replica the seeds ask for without a budget, as before the budget existed', () => {
    expect(replicaPlan({ seeds: 8, slots: 2, best })).toEqual({ count: 7, wanted: 7 });
    expect(replicaPlan({ seeds: 1, budgetSeconds: 120, slots: 2, best })).toEqual({ count: 0, wanted: 0 });
  });

  it('trains as many waves of `slots` replicas as fit, each as long as the best trial took from scratch', () => {
    // 30 s each: 120 s fits 4 waves, 8 replicas on 2 slots, cut to the 7 asked for
    expect(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best })).toEqual({ count: 7, wanted: 7, estimateSeconds: 30 });
    // 89 s fits 2 waves: 2 replicas on 1 slot, 4 on 2
    expect(replicaPlan({ seeds: 8, budgetSeconds: 89, slots: 1, best }).count).toBe(2);
    expect(replicaPlan({ seeds: 8, budgetSeconds: 89, slots: 2, best }).count).toBe(4);
    // a budget shorter than one replica trains none: at 10 M events a best trial takes minutes
    expect(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best: { seconds: 130, epochs: 13, resumedFromEpoch: 0 } })).toEqual({ count: 0, wanted: 7, estimateSeconds: 130 });
  });

  it("takes the best trial's whole training time when its result records it, and trains none when nothing tells", () => {
    // trainSeconds (every rung's epochs) wins over the last attempt's rate: 50 s each, 120 s fits 2 waves
    expect(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best: { ...best, trainSeconds: 50 } })).toEqual({ count: 4, wanted: 7, estimateSeconds: 50 });
    // a promoted trial that had stopped early trains no epoch in its last attempt: its seconds say nothing about
    // its training, so a budget trains none rather than all seven
    const stopped = { seconds: 3, epochs: 5, resumedFromEpoch: 5 };
    expect(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best: stopped })).toEqual({ count: 0, wanted: 7 });
    expect(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best: { ...stopped, trainSeconds: 12 } }).count).toBe(7);
    expect(formatReplicaPlan(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best: stopped }), 120)).toBe(
      "the 120 s replica budget fits none of the 7 asked for: the best trial's result does not say how long its training took",
    );
  });

  it('says why a plan was cut', () => {
    const cut = replicaPlan({ seeds: 8, budgetSeconds: 60, slots: 1, best });
    expect(formatReplicaPlan(cut, 60)).toBe('the 60 s replica budget fits 2 of the 7 asked for, at about 30 s each');
    expect(formatReplicaPlan(replicaPlan({ seeds: 8, budgetSeconds: 10, slots: 2, best }), 10)).toBe('the 10 s replica budget fits none of the 7 asked for, at about 30 s each');
    // a replica of a few seconds keeps one decimal
    expect(formatReplicaPlan(replicaPlan({ seeds: 16, budgetSeconds: 1, slots: 1, best: { seconds: 1.2, epochs: 3, resumedFromEpoch: 0 } }), 1)).toBe('the 1 s replica budget fits none of the 15 asked for, at about 1.2 s each');
    expect(formatReplicaPlan(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best }), 120)).toBe('');
    expect(formatReplicaPlan(replicaPlan({ seeds: 8, slots: 2, best }), undefined)).toBe('');
  });
});

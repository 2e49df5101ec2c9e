import { describe, expect, it } from 'vitest';
import { formatReplicaPlan, replicaPlan } from '../../ml/replicas.js';

// a best trial promoted to its last rung at epoch 5 that trained epochs 6-15 in 20 s (2 s an epoch), with a 15-epoch
// budget: a replica of it takes at most 30 s
const best = { seconds: 20, epochs: 15, resumedFromEpoch: 5, params: { epochs: 15 } };

describe('seed replicas within a budget', () => {
  it('trains every replica the seeds ask for without a budget, as before the budget existed', () => {
    expect(replicaPlan({ seeds: 8, slots: 2, best })).toEqual({ count: 7, wanted: 7 });
    expect(replicaPlan({ seeds: 1, budgetSeconds: 120, slots: 2, best })).toEqual({ count: 0, wanted: 0 });
  });

  it('trains as many waves of `slots` replicas as fit, each as long as the whole epoch budget at the best trial\'s pace', () => {
    // 30 s each: 120 s fits 4 waves, 8 replicas on 2 slots, cut to the 7 asked for
    expect(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best })).toEqual({ count: 7, wanted: 7, estimateSeconds: 30 });
    // 89 s fits 2 waves: 2 replicas on 1 slot, 4 on 2
    expect(replicaPlan({ seeds: 8, budgetSeconds: 89, slots: 1, best }).count).toBe(2);
    expect(replicaPlan({ seeds: 8, budgetSeconds: 89, slots: 2, best }).count).toBe(4);
    // a best trial that stopped early at epoch 7 of a 30-epoch budget: a replica may train all 30, and a budget
    // counts them all (at 10 M events, 5.4 s an epoch: 163 s, so 120 s fits none)
    const early = { seconds: 38, epochs: 7, resumedFromEpoch: 0, trainSeconds: 37.8, params: { epochs: 30 } };
    const plan = replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best: early });
    expect(plan).toMatchObject({ count: 0, wanted: 7 });
    expect(plan.estimateSeconds).toBeCloseTo(162, 9);
  });

  it("takes the pace of the best trial's whole curve when its result records it, and trains none when nothing tells", () => {
    // trainSeconds (every rung's epochs): 45 s over 15 epochs, 3 s an epoch, 45 s a replica; 120 s fits 2 waves
    expect(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best: { ...best, trainSeconds: 45 } })).toEqual({ count: 4, wanted: 7, estimateSeconds: 45 });
    // a promoted trial that had stopped early trains no epoch in its last attempt: its seconds say nothing about
    // its pace, so without trainSeconds a budget trains none rather than all seven
    const stopped = { seconds: 3, epochs: 5, resumedFromEpoch: 5, params: { epochs: 5 } };
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
    expect(formatReplicaPlan(replicaPlan({ seeds: 16, budgetSeconds: 1, slots: 1, best: { seconds: 1.2, epochs: 3, resumedFromEpoch: 0, params: { epochs: 3 } } }), 1)).toBe(
      'the 1 s replica budget fits none of the 15 asked for, at about 1.2 s each',
    );
    expect(formatReplicaPlan(replicaPlan({ seeds: 8, budgetSeconds: 120, slots: 2, best }), 120)).toBe('');
    expect(formatReplicaPlan(replicaPlan({ seeds: 8, slots: 2, best }), undefined)).toBe('');
  });
});

import { collectGarbage } from '@trustflow/test-utils';
import { describe, expect, it } from 'vitest';
import { createResourceTracker } from '../src/index.js';

async function heapAfterGc(): Promise<number> {
  await collectGarbage();
  return process.memoryUsage().heapUsed;
}

describe('retained memory', () => {
  it('stays flat across a million track/release cycles (default sampling)', async () => {
    const tracker = createResourceTracker({ scanIntervalMs: 0 });
    const spec = { kind: 'test.churn', attributes: { 'test.mode': 'churn' } };
    const cycle = (n: number) => {
      for (let i = 0; i < n; i++) tracker.track({}, spec).release();
    };
    cycle(100_000);
    const before = await heapAfterGc();
    cycle(1_000_000);
    const after = await heapAfterGc();
    const snap = tracker.snapshot();
    expect(snap.opened['test.churn']).toBe(1_100_000);
    expect(snap.active['test.churn']).toBe(0);
    expect(snap.resources).toEqual([]);
    // Nothing proportional to the number of cycles is kept: well under one byte per cycle.
    expect(after - before).toBeLessThan(512 * 1024);
    tracker.shutdown();
  });

  it('forgets collected entries and keeps one group per leaking site', async () => {
    const tracker = createResourceTracker({ scanIntervalMs: 0, stacks: 'all' });
    let leaks = 0;
    const done = new Promise<void>((resolve) =>
      tracker.onLeak(() => {
        if (++leaks === 10_000) resolve();
      }),
    );
    (() => {
      for (let i = 0; i < 10_000; i++) tracker.track({}, { kind: 'test.dropped' });
    })();
    await collectGarbage();
    await done;
    const report = tracker.report();
    expect(report.leaks).toHaveLength(1);
    expect(report.leaks[0]?.count).toBe(10_000);
    expect(report.active['test.dropped']).toBe(0);
    tracker.shutdown();
  });
});

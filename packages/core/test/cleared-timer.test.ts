import { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  asyncHooksAvoidPromises,
  createAsyncHooksSource,
  createResourceTracker,
} from '../src/index.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

describe('async-hooks source: a timer cleared just before a report', () => {
  it('is reported as holding no ref until its destroy hook arrives', () => {
    const tracker = createResourceTracker({ scanIntervalMs: 0, stacks: 'all' });
    const source = createAsyncHooksSource({ forceWithPromiseHooks: !asyncHooksAvoidPromises() });
    source.enable({ tracker });
    cleanups.push(
      () => tracker.shutdown(),
      () => source.disable(),
    );
    const kept = setInterval(() => {}, 60_000);
    cleanups.push(() => clearInterval(kept));
    const cleared = setInterval(() => {}, 60_000);
    clearInterval(cleared);
    // Same tick as the clear: the destroy hook has not run, so both are still tracked.
    const refs = tracker
      .report({ includeOpen: true })
      .leaks.filter((l) => l.kind === 'timer')
      .map((l) => l.sample.attributes.hasRef)
      .sort();
    expect(refs).toEqual([false, true]);
  });
});

describe("async-hooks source: Node's own unref'd timers", () => {
  it('are not tracked (socket timeouts), while timers the application unrefs later are', () => {
    const tracker = createResourceTracker({ scanIntervalMs: 0, stacks: 'all' });
    const source = createAsyncHooksSource({ forceWithPromiseHooks: !asyncHooksAvoidPromises() });
    source.enable({ tracker });
    cleanups.push(
      () => tracker.shutdown(),
      () => source.disable(),
    );
    const socket = new Socket();
    socket.setTimeout(60_000); // an unref'd Timeout inside net
    const mine = setTimeout(() => {}, 60_000).unref();
    cleanups.push(
      () => clearTimeout(mine),
      () => socket.destroy(),
    );
    expect(tracker.snapshot().active.timer).toBe(1);
  });
});

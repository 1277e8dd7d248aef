/**
 * The vitest entry: list it in `test.setupFiles` and every test is checked for resources it left
 * open; `await expect(fn).not.toLeak()` checks one function.
 */
import { afterEach, beforeEach, expect, type RunnerTestCase } from 'vitest';
import {
  describeLeaks,
  findLeaks,
  LeakError,
  type Mark,
  resolveOptions,
  startCheck,
} from './internal/leaks.js';
import { claimDefaultTracker } from './internal/tracker.js';
import type { LeakCheckOptions } from './types.js';

// Before any test file runs: a pool or libp2p node created at the top of a test file then shares
// the tracker that captures every stack.
claimDefaultTracker();

export type { LeakCheckOptions };
export { LeakError };

export interface LeakCheckConfig extends LeakCheckOptions {
  /** Check every test. Default true. */
  enabled?: boolean;
}

let config: LeakCheckConfig = {};
let current: Mark | undefined;

/**
 * Changes the options of the per-test check, and the defaults of `toLeak`, for the rest of this
 * test file (call it at the top of a file, in `beforeAll`, or in a setup file listed after this
 * one). Merges with earlier calls; a bad option throws at once.
 */
export function configureLeakCheck(options: LeakCheckConfig): void {
  const { enabled: _enabled, ...check } = { ...config, ...options };
  resolveOptions(check);
  config = { ...config, ...options };
}

/** Skips the check for the running test (for a test that hands a resource to the next on purpose). */
export function skipLeakCheck(): void {
  if (current) current.skipped = true;
}

function fullName(task: RunnerTestCase): string {
  const names = [task.name];
  for (let suite = task.suite; suite; suite = suite.suite)
    if (suite.name) names.unshift(suite.name);
  return names.join(' > ');
}

beforeEach(() => {
  const { enabled, ...check } = config;
  current = enabled === false ? undefined : startCheck(resolveOptions(check));
});

afterEach(async (context) => {
  const mark = current;
  current = undefined;
  const task = context.task as RunnerTestCase;
  // A failed test already says what went wrong; resources it left are a consequence. Concurrent
  // tests share the process, so what is open cannot be attributed to one of them.
  if (!mark || mark.skipped || task.result?.state === 'fail' || task.concurrent) return;
  const leaks = await findLeaks(mark);
  if (leaks.length > 0) {
    throw new LeakError(`test "${fullName(task)}" leaked ${describeLeaks(leaks)}`, leaks);
  }
});

expect.extend({
  async toLeak(received: unknown, options?: LeakCheckOptions) {
    if (typeof received !== 'function') {
      throw new TypeError(
        'toLeak: expect() needs a function, e.g. expect(() => work()).not.toLeak()',
      );
    }
    const { enabled: _enabled, ...defaults } = config;
    const mark = startCheck(resolveOptions({ ...defaults, ...options }));
    await (received as () => unknown)();
    const leaks = await findLeaks(mark);
    const pass = leaks.length > 0;
    return {
      pass,
      message: () =>
        pass
          ? `expected the function not to leak, but it left ${describeLeaks(leaks)}`
          : 'expected the function to leak, but everything it opened was closed',
    };
  },
});

declare module 'vitest' {
  interface Matchers<T = any> {
    /** Runs the function; passes when it leaves resources open (use `.not.toLeak()`). */
    toLeak(options?: LeakCheckOptions): Promise<void>;
  }
}

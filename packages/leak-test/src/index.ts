import { MemoryGrowthError, measureGrowth } from './internal/growth.js';
import {
  describeLeaks,
  findLeaks,
  LeakError,
  resolveOptions,
  startCheck,
} from './internal/leaks.js';
import { claimDefaultTracker } from './internal/tracker.js';
import type { LeakCheckOptions, MemoryGrowthOptions, MemoryGrowthResult } from './types.js';

claimDefaultTracker();

export type {
  LeakCheckOptions,
  LeakErrorDetails,
  MemoryGrowthOptions,
  MemoryGrowthResult,
  Pattern,
} from './types.js';
export { LeakError, MemoryGrowthError };

/**
 * Runs `fn` and fails (rejects with a `LeakError`) if resources it opened are still open after
 * it returned and asynchronous closes had `timeoutMs` to finish. The message lists each leak
 * group with the line that created it. Resolves with `fn`'s value otherwise; if `fn` throws,
 * its error is rethrown unchanged.
 */
export async function expectNoLeaks<T>(
  fn: () => T | PromiseLike<T>,
  options?: LeakCheckOptions,
): Promise<Awaited<T>> {
  if (typeof fn !== 'function') throw new TypeError('expectNoLeaks: fn must be a function');
  const mark = startCheck(resolveOptions(options));
  const value = await fn();
  const leaks = await findLeaks(mark);
  if (leaks.length > 0) {
    throw new LeakError(`expectNoLeaks: the function left ${describeLeaks(leaks)}`, leaks);
  }
  return value;
}

/**
 * Calls `fn` many times (`iterations`, after a warm-up), forcing full GCs at `samples` points, and
 * fails (rejects with a `MemoryGrowthError`) when the memory left after GC grows in a sustained
 * way by more than `maxBytesPerIteration` per call. The growth is a Theil-Sen slope judged by the
 * estimator of `@trustflow/core`, so noise and one-off growth (a cache filled once) do not fail
 * a clean function. Works without `--expose-gc` on the command line.
 */
export async function expectNoMemoryGrowth(
  fn: (iteration: number) => unknown,
  options: MemoryGrowthOptions = {},
): Promise<MemoryGrowthResult> {
  const { result, limit } = await measureGrowth(fn, options);
  if (result.verdict === 'growing' && result.bytesPerIteration > limit) {
    const total = result.samples.at(-1)!.bytes - result.samples[0]!.bytes;
    throw new MemoryGrowthError(
      `expectNoMemoryGrowth: memory grows ${Math.round(result.bytesPerIteration)} bytes per call ` +
        `(limit ${limit}; ${Math.round(total / 1024)} KiB over ${result.samples.at(-1)!.iteration} calls, ` +
        `confidence ${result.confidence.toFixed(3)}): ${result.reason}`,
      result,
    );
  }
  return result;
}

import { getHeapStatistics } from 'node:v8';
import { estimateGrowth, type GrowthPoint } from '@trustflow/core';
import type { MemoryGrowthOptions, MemoryGrowthResult } from '../types.js';
import { fullGc } from './gc.js';

/** Thrown by `expectNoMemoryGrowth`; `result` has the samples and the estimate. */
export class MemoryGrowthError extends Error {
  readonly result: MemoryGrowthResult;
  constructor(message: string, result: MemoryGrowthResult) {
    super(message);
    this.name = 'MemoryGrowthError';
    this.result = result;
  }
}

const WHERE = 'expectNoMemoryGrowth';

function count(value: unknown, fallback: number, name: string, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isInteger(value) && value >= min) return value;
  throw new TypeError(
    `${WHERE}: option ${name} must be an integer >= ${min}, got ${String(value)}`,
  );
}

/** Heap used plus memory held outside the heap by Buffers and ArrayBuffers. */
function retainedBytes(): number {
  return getHeapStatistics().used_heap_size + process.memoryUsage().external;
}

async function reading(): Promise<number> {
  await fullGc();
  return retainedBytes();
}

/**
 * The estimator of `@trustflow/core` works in units per hour; here one "hour" is one call, so
 * its slope per hour is the growth per call. Its verdict calls sustained growth (every third of
 * the run grows, and not only at the start) and not a one-off step such as a cache filled once.
 */
const CALL = 3_600_000;

export async function measureGrowth(
  fn: (iteration: number) => unknown,
  options: MemoryGrowthOptions,
): Promise<{ result: MemoryGrowthResult; limit: number }> {
  if (typeof fn !== 'function') throw new TypeError(`${WHERE}: fn must be a function`);
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${WHERE}: options must be an object`);
  }
  const iterations = count(options.iterations, 300, 'iterations', 1);
  const samples = count(options.samples, 15, 'samples', 6);
  const warmup = count(options.warmup, Math.max(10, Math.round(iterations / 10)), 'warmup', 0);
  const limit = options.maxBytesPerIteration ?? 16;
  if (typeof limit !== 'number' || !Number.isFinite(limit) || limit < 0) {
    throw new TypeError(
      `${WHERE}: option maxBytesPerIteration must be a non-negative number, got ${String(limit)}`,
    );
  }
  const minConfidence = options.minConfidence ?? 0.95;
  if (typeof minConfidence !== 'number' || !(minConfidence >= 0.5 && minConfidence <= 1)) {
    throw new TypeError(
      `${WHERE}: option minConfidence must be a number in [0.5, 1], got ${String(minConfidence)}`,
    );
  }
  if (iterations < samples - 1) {
    throw new TypeError(
      `${WHERE}: option iterations (${iterations}) must be at least samples - 1 (${samples - 1})`,
    );
  }
  let calls = 0;
  const call = async () => {
    await fn(calls);
    calls++;
  };
  // Preallocated: the measurement itself must not grow the heap between readings.
  const at = new Float64Array(samples);
  const bytes = new Float64Array(samples);
  // The warm-up goes through the same loop as the measurement (batches, collections, readings
  // that are then dropped), so that compiling this loop and `fn` happens before the readings
  // that count: the first run of a function in a process otherwise shows steps of compiled code.
  const batch = iterations / (samples - 1);
  const warmupBatches = warmup === 0 ? 0 : Math.max(2, Math.round(warmup / batch));
  let first = 0;
  for (let s = -warmupBatches; s < samples; s++) {
    if (s === 0) {
      // V8 drops the bytecode of functions unused for 6 collections (--bytecode-old-age): 8 of
      // them first, so that code the test run no longer uses is not flushed during the readings
      // (a fall of kilobytes that hides growth in the first run of a process).
      await fullGc(8);
      first = calls;
      bytes[0] = await reading();
      continue;
    }
    // Spread the calls evenly over the batches (some may be one shorter).
    const until =
      s < 0
        ? Math.round((warmup * (s + warmupBatches + 1)) / warmupBatches)
        : first + Math.round((iterations * s) / (samples - 1));
    while (calls < until) await call();
    const value = await reading();
    if (s > 0) {
      at[s] = calls - first;
      bytes[s] = value;
    }
  }
  // Each reading is the lower of itself and the next one: something kept alive for a moment by
  // the runner (a console buffer, a message in flight) is not growth of `fn`, while growth,
  // which only goes up, is unchanged.
  for (let s = 0; s < samples - 1; s++) bytes[s] = Math.min(bytes[s]!, bytes[s + 1]!);
  const measured = Array.from(at, (iteration, s) => ({ iteration, bytes: bytes[s]! }));
  const points: GrowthPoint[] = measured.map((m) => ({ t: m.iteration * CALL, v: m.bytes }));
  const estimate = estimateGrowth(points, {
    minPoints: 6,
    minConfidence,
  });
  const perCall = estimate.slopePerHour;
  const reason = estimate.reason
    .replace(/\/h\b/g, ' bytes per call')
    .replace(/per hour/g, 'bytes per call')
    .replace(/over [\d.]+ (h|min|s)\b/, `over ${iterations} calls`);
  return {
    result: {
      bytesPerIteration: perCall,
      confidence: estimate.confidence,
      verdict: estimate.verdict,
      samples: measured,
      reason,
    },
    limit,
  };
}

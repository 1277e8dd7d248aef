import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { expectNoMemoryGrowth, MemoryGrowthError } from '../src/index.js';

/**
 * A function that keeps something of every call: about 450 bytes of objects per call (about
 * 130 KiB over the run, far above the heap's noise even on a busy machine).
 */
function leaky() {
  const retained: unknown[] = [];
  return (i: number) => {
    retained.push({ i, payload: new Array(48).fill(i) });
  };
}

/** The same allocations, all garbage. */
function clean() {
  let last: unknown;
  return (i: number) => {
    last = { i, payload: new Array(48).fill(i) };
    return last;
  };
}

describe('expectNoMemoryGrowth', () => {
  it('catches a function that grows a retained array', async () => {
    const error = await expectNoMemoryGrowth(leaky()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MemoryGrowthError);
    const { result } = error as MemoryGrowthError;
    expect(result.verdict).toBe('growing');
    expect(result.bytesPerIteration).toBeGreaterThan(100);
    expect(result.bytesPerIteration).toBeLessThan(1000);
    expect(result.confidence).toBeGreaterThanOrEqual(0.95);
    expect(result.samples).toHaveLength(15);
    expect(result.samples.at(-1)!.iteration).toBe(300);
    expect((error as Error).message).toMatch(
      /^expectNoMemoryGrowth: memory grows \d+ bytes per call \(limit 16; \d+ KiB over 300 calls, confidence 0\.\d{3}\): grows/,
    );
  });

  it('catches Buffers kept outside the heap', async () => {
    const kept: Buffer[] = [];
    const error = await expectNoMemoryGrowth(() => void kept.push(Buffer.alloc(4096)), {
      iterations: 150,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MemoryGrowthError);
    expect((error as MemoryGrowthError).result.bytesPerIteration).toBeGreaterThan(4000);
  });

  it('passes a clean function, and async functions', async () => {
    const result = await expectNoMemoryGrowth(clean());
    expect(result.verdict).not.toBe('growing');
    expect(Math.abs(result.bytesPerIteration)).toBeLessThan(64);
    await expectNoMemoryGrowth(
      async () => {
        await new Promise((resolve) => setImmediate(resolve));
        return new Array(100).fill(0);
      },
      { iterations: 60 },
    );
  });

  it('passes a cache filled once (a step, not sustained growth)', async () => {
    const cache = new Map<number, number[]>();
    const result = await expectNoMemoryGrowth((i) => {
      // Lazily fills 60 entries during the first fifth of the run, then only reads.
      if (i < 90 && !cache.has(i)) cache.set(i, new Array(200).fill(i));
      return cache.get(i % 60);
    });
    expect(result.verdict).not.toBe('growing');
  });

  it('passes small sustained growth under the limit, fails it over a lower one', async () => {
    const kept: number[] = [];
    const tiny = () => void kept.push(1.5);
    const result = await expectNoMemoryGrowth(tiny, { maxBytesPerIteration: 1000 });
    expect(result.bytesPerIteration).toBeLessThan(1000);
    const strict = await expectNoMemoryGrowth(leaky(), { maxBytesPerIteration: 10_000 });
    expect(strict.verdict).toBe('growing');
  });

  it('works without --expose-gc on the command line', async () => {
    const child = fileURLToPath(new URL('./fixtures/growth-child.mjs', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [child]);
    const result = JSON.parse(stdout) as Record<string, unknown>;
    expect(result.hadGcBefore).toBe(false);
    expect(result.leaky).toBe('MemoryGrowthError');
    expect(result.clean).toBe('passed');
    expect(result.hasGcAfter).toBe(false);
  });

  it('rejects bad options with a one-line error', async () => {
    await expect(expectNoMemoryGrowth('x' as never)).rejects.toThrow(
      'expectNoMemoryGrowth: fn must be a function',
    );
    await expect(expectNoMemoryGrowth(() => {}, { iterations: 0 })).rejects.toThrow(
      'expectNoMemoryGrowth: option iterations must be an integer >= 1, got 0',
    );
    await expect(expectNoMemoryGrowth(() => {}, { samples: 3 })).rejects.toThrow(
      'expectNoMemoryGrowth: option samples must be an integer >= 6, got 3',
    );
    await expect(expectNoMemoryGrowth(() => {}, { iterations: 5 })).rejects.toThrow(
      'expectNoMemoryGrowth: option iterations (5) must be at least samples - 1 (14)',
    );
    await expect(expectNoMemoryGrowth(() => {}, { minConfidence: 0.2 })).rejects.toThrow(
      'expectNoMemoryGrowth: option minConfidence must be a number in [0.5, 1], got 0.2',
    );
    await expect(expectNoMemoryGrowth(() => {}, { maxBytesPerIteration: -1 })).rejects.toThrow(
      /option maxBytesPerIteration must be a non-negative number, got -1/,
    );
  });
});

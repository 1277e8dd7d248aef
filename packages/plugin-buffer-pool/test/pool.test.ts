import { setImmediate as tick } from 'node:timers/promises';
import {
  createResourceTracker,
  type LeakEvent,
  type ResourceTracker,
  type ResourceTrackerOptions,
} from '@trustflow/core';
import { collectGarbage, createMetricsHarness, type MetricsHarness } from '@trustflow/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type BufferPool,
  type BufferPoolOptions,
  type BufferPoolStats,
  bufferPoolPresets,
  createBufferPool,
} from '../src/index.js';

const here = new URL(import.meta.url).pathname;
const KIB = 1024;

const trackers: ResourceTracker[] = [];
const pools: BufferPool[] = [];
function tracker(options: ResourceTrackerOptions = {}): ResourceTracker {
  const t = createResourceTracker({ scanIntervalMs: 0, ...options });
  trackers.push(t);
  return t;
}
function pool(options: BufferPoolOptions = {}): BufferPool {
  const p = createBufferPool({ tracker: tracker(), ...options });
  pools.push(p);
  return p;
}
afterEach(() => {
  for (const p of pools.splice(0)) p.close();
  for (const t of trackers.splice(0)) t.shutdown();
});

async function lineOf(marker: string): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const lines = (await readFile(here, 'utf8')).split('\n');
  const index = lines.findIndex((l) => l.includes(marker) && !l.includes('lineOf('));
  if (index < 0) throw new Error(`marker ${marker} not found`);
  return index + 1;
}

/** The invariant every stats() must satisfy. */
function expectConsistent(s: BufferPoolStats): void {
  expect(s.hits + s.misses).toBe(s.inUse + s.released + s.leaked);
  const sum = (f: (c: BufferPoolStats['classes'][number]) => number) =>
    s.classes.reduce((n, c) => n + f(c), 0);
  expect(sum((c) => c.inUse)).toBe(s.inUse);
  expect(sum((c) => c.available)).toBe(s.available);
  expect(sum((c) => c.available * c.size)).toBe(s.retainedBytes);
  for (const c of s.classes) {
    expect(c.available).toBeLessThanOrEqual(c.max);
    expect(c.inUse).toBeGreaterThanOrEqual(0);
  }
}

function pick(s: BufferPoolStats) {
  const { classes: _classes, ...totals } = s;
  return totals;
}

describe('acquire and release', () => {
  it('lends a zeroed Buffer of the requested length from the smallest class that fits', () => {
    const p = pool();
    const small = p.acquire(100);
    const mid = p.acquire(4 * KIB + 1);
    const big = p.acquire(80 * KIB);
    const huge = p.acquire(100 * KIB);
    expect([small.length, mid.length, big.length, huge.length]).toEqual([
      100,
      4 * KIB + 1,
      80 * KIB,
      100 * KIB,
    ]);
    expect([small, mid, big, huge].map((b) => b.buffer.byteLength)).toEqual([
      4 * KIB,
      32 * KIB,
      80 * KIB,
      100 * KIB,
    ]);
    expect(Buffer.isBuffer(small)).toBe(true);
    expect(small.every((b) => b === 0)).toBe(true);
    small.write('hello');
    expect(small.toString('utf8', 0, 5)).toBe('hello');
    expect(Buffer.concat([small.subarray(0, 5), Buffer.from('!')]).toString()).toBe('hello!');
    // derived views are plain Buffers: they cannot be released on their own
    expect('release' in small.subarray(0, 5)).toBe(false);
    expect(p.stats()).toMatchObject({ inUse: 4, misses: 4, hits: 0 });
    expect(p.stats().inUseBytes).toBe(4 * KIB + 32 * KIB + 80 * KIB + 100 * KIB);
    for (const b of [small, mid, big, huge]) b.release();
    const s = p.stats();
    expect(pick(s)).toEqual({
      inUse: 0,
      inUseBytes: 0,
      available: 3,
      retainedBytes: 4 * KIB + 32 * KIB + 80 * KIB,
      hits: 0,
      misses: 4,
      released: 4,
      dropped: 1, // the oversize one is never kept
      leaked: 0,
    });
    expectConsistent(s);
  });

  it('zeroes a returned buffer before lending it again', () => {
    const p = pool();
    const first = p.acquire(4 * KIB);
    first.fill(0xab);
    // also bytes reached through the ArrayBuffer, past the requested length
    const whole = new Uint8Array(first.buffer);
    whole.fill(0xcd, 10);
    first.release();
    const second = p.acquire(10);
    expect(p.stats()).toMatchObject({ hits: 1, misses: 1 });
    expect(second.every((b) => b === 0)).toBe(true);
    expect(new Uint8Array(second.buffer).every((b) => b === 0)).toBe(true);
    second.release();
  });

  it('with zeroOnRelease: false (unsafe), the next borrower sees the old bytes', () => {
    const p = pool({ zeroOnRelease: false });
    const first = p.acquire(16);
    first.fill(7);
    first.release();
    const second = p.acquire(16);
    expect([...second]).toEqual(new Array(16).fill(7));
    second.release();
  });

  it('detaches a returned buffer: stale references read nothing and write nowhere', () => {
    const p = pool();
    const buf = p.acquire(64);
    const view = buf.subarray(8, 16);
    buf.release();
    expect(buf.released).toBe(true);
    expect(buf.length).toBe(0);
    expect(view.length).toBe(0);
    buf[0] = 42; // ignored on a detached buffer
    const next = p.acquire(64);
    expect(next[0]).toBe(0);
    next.release();
  });

  it('works with using (Symbol.dispose)', () => {
    const p = pool();
    {
      using buf = p.acquire(10);
      buf[0] = 1;
      expect(p.stats().inUse).toBe(1);
    }
    expect(p.stats()).toMatchObject({ inUse: 0, released: 1, available: 1 });
  });

  it('keeps at most max buffers per class and at most maxRetainedBytes in total', () => {
    const p = pool({ classes: [{ size: 1024, max: 3 }], maxRetainedBytes: 2048 });
    const bufs = Array.from({ length: 5 }, () => p.acquire(1024));
    for (const b of bufs) b.release();
    expect(pick(p.stats())).toEqual({
      inUse: 0,
      inUseBytes: 0,
      available: 2,
      retainedBytes: 2048,
      hits: 0,
      misses: 5,
      released: 5,
      dropped: 3,
      leaked: 0,
    });
    const q = pool({ classes: [{ size: 1024, max: 3 }] });
    for (const b of Array.from({ length: 5 }, () => q.acquire(1))) b.release();
    expect(q.stats()).toMatchObject({ available: 3, dropped: 2, retainedBytes: 3072 });
  });
});

describe('use()', () => {
  it('returns what a sync fn returns, and the buffer', () => {
    const p = pool();
    let seen: Buffer | undefined;
    const n = p.use(100, (buf) => {
      seen = buf;
      return buf.length;
    });
    expect(n).toBe(100);
    expect(seen?.length).toBe(0); // returned and detached
    expect(p.stats()).toMatchObject({ inUse: 0, released: 1 });
  });

  it('returns the buffer when a sync fn throws, and rethrows', () => {
    const p = pool();
    const boom = new Error('boom');
    expect(() =>
      p.use(100, () => {
        throw boom;
      }),
    ).toThrow(boom);
    expect(p.stats()).toMatchObject({ inUse: 0, released: 1 });
  });

  it('returns the buffer when an async fn resolves or rejects', async () => {
    const p = pool();
    const value = await p.use(100, async (buf) => {
      await tick();
      expect(p.stats().inUse).toBe(1);
      return buf.length * 2;
    });
    expect(value).toBe(200);
    expect(p.stats()).toMatchObject({ inUse: 0, released: 1 });
    const boom = new Error('async boom');
    await expect(
      p.use(100, async () => {
        await tick();
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(p.stats()).toMatchObject({ inUse: 0, released: 2 });
  });

  it('accepts a fn that returns the buffer itself', async () => {
    const p = pool();
    p.use(10, (buf) => buf.release());
    await p.use(10, async (buf) => {
      await tick();
      buf.release();
    });
    expect(p.stats()).toMatchObject({ inUse: 0, released: 2, available: 1 });
  });

  it('keeps stats exact under concurrent async use', async () => {
    const p = pool(); // 4 KiB x 100, 32 KiB x 50, 80 KiB x 25
    const checks: BufferPoolStats[] = [];
    const task = (size: number, delay: number) =>
      p.use(size, async (buf) => {
        buf.fill(1);
        for (let i = 0; i < delay; i++) await tick();
        checks.push(p.stats());
        return buf.length;
      });
    // wave 1: 60 small and 30 mid buffers at once: every one is a miss
    let lengths = await Promise.all([
      ...Array.from({ length: 60 }, (_, i) => task(100 + i, i % 5)),
      ...Array.from({ length: 30 }, (_, i) => task(10 * KIB + i, 5 - (i % 5))),
    ]);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(
      60 * 100 + 1770 + 30 * 10 * KIB + 435, // sum of the requested sizes
    );
    expect(pick(p.stats())).toEqual({
      inUse: 0,
      inUseBytes: 0,
      available: 90,
      retainedBytes: 60 * 4 * KIB + 30 * 32 * KIB,
      hits: 0,
      misses: 90,
      released: 90,
      dropped: 0,
      leaked: 0,
    });
    // wave 2: 150 small at once: 60 reuse kept buffers, 90 allocate; 100 are kept afterwards
    lengths = await Promise.all(Array.from({ length: 150 }, (_, i) => task(4 * KIB, i % 7)));
    expect(lengths).toHaveLength(150);
    const s = p.stats();
    expect(pick(s)).toEqual({
      inUse: 0,
      inUseBytes: 0,
      available: 130,
      retainedBytes: 100 * 4 * KIB + 30 * 32 * KIB,
      hits: 60,
      misses: 180,
      released: 240,
      dropped: 50,
      leaked: 0,
    });
    expect(s.classes[0]).toMatchObject({ size: 4 * KIB, hits: 60, misses: 150, dropped: 50 });
    expectConsistent(s);
    for (const c of checks) expectConsistent(c);
    expect(Math.max(...checks.map((c) => c.inUse))).toBeGreaterThan(50);
  });
});

describe('misuse', () => {
  it('rejects a double release with a clear error and leaves the pool unchanged', () => {
    const p = pool();
    const a = p.acquire(10);
    a.release();
    const before = p.stats();
    expect(() => a.release()).toThrow(/buffer pool "default": buffer released twice/);
    expect(() => p.release(a)).toThrow(
      expect.objectContaining({ code: 'ERR_BUFFER_POOL_DOUBLE_RELEASE' }),
    );
    expect(p.stats()).toEqual(before);
    // the kept buffer is lent once, not twice
    const x = p.acquire(10);
    const y = p.acquire(10);
    x[0] = 1;
    expect(y[0]).toBe(0);
    expect(x.buffer).not.toBe(y.buffer);
    expect(p.stats()).toMatchObject({ hits: 1, misses: 2, available: 0 });
    x.release();
    y.release();
  });

  it('rejects a foreign buffer with a clear error and leaves both pools unchanged', () => {
    const p = pool({ name: 'mine' });
    const other = pool({ name: 'theirs' });
    const theirs = other.acquire(10);
    const mine = p.acquire(10);
    const before = [p.stats(), other.stats()];
    expect(() => p.release(Buffer.alloc(10))).toThrow(
      'buffer pool "mine": a buffer that this pool did not lend cannot be released to it; the pool is unchanged',
    );
    expect(() => p.release(theirs)).toThrow(
      expect.objectContaining({
        code: 'ERR_BUFFER_POOL_FOREIGN_RELEASE',
        message: expect.stringContaining('a buffer from another pool'),
      }),
    );
    expect(() => p.release(mine.subarray(0, 2))).toThrow(/did not lend/);
    expect(() => p.release(null as unknown as Uint8Array)).toThrow(/did not lend/);
    expect([p.stats(), other.stats()]).toEqual(before);
    expect(theirs.length).toBe(10);
    p.release(mine);
    theirs.release();
    expect(p.stats()).toMatchObject({ released: 1, available: 1 });
    expect(other.stats()).toMatchObject({ released: 1, available: 1 });
  });

  it('names the bad option or argument', () => {
    expect(() => createBufferPool({ classes: [] })).toThrow(
      'createBufferPool: option classes must be a non-empty array of { size, max }, got an array',
    );
    expect(() => createBufferPool({ classes: [{ size: -1, max: 1 }] })).toThrow(
      'createBufferPool: option classes[0].size must be a positive integer, got -1',
    );
    expect(() => createBufferPool({ classes: [{ size: 10, max: 1.5 }] })).toThrow(
      'option classes[0].max must be a non-negative integer, got 1.5',
    );
    expect(() =>
      createBufferPool({
        classes: [
          { size: 10, max: 1 },
          { size: 10, max: 2 },
        ],
      }),
    ).toThrow('option classes must be distinct sizes, got "two classes of 10 bytes"');
    expect(() => createBufferPool({ maxRetainedBytes: -5 })).toThrow(
      'option maxRetainedBytes must be a non-negative integer, got -5',
    );
    expect(() => createBufferPool({ zeroOnRelease: 'no' as unknown as boolean })).toThrow(
      'option zeroOnRelease must be a boolean, got "no"',
    );
    expect(() => createBufferPool({ name: '' })).toThrow('option name must be a non-empty string');
    const p = pool();
    expect(() => p.acquire(-1)).toThrow(
      'buffer pool "default": acquire(size) needs a non-negative integer, got -1',
    );
    expect(() => p.acquire(1.5)).toThrow(/got 1.5/);
    expect(() => p.acquire('8' as unknown as number)).toThrow(/got "8"/);
    expect(() => p.use(8, undefined as unknown as () => void)).toThrow(
      'buffer pool "default": use(size, fn) needs a function, got undefined',
    );
    expect(p.stats()).toMatchObject({ hits: 0, misses: 0, inUse: 0 });
  });
});

describe('leaks', () => {
  it('reports a buffer dropped without release as gc-unreleased with the acquiring line', async () => {
    const t = tracker({ stacks: 'all' });
    const p = createBufferPool({ tracker: t, name: 'leaky' });
    pools.push(p);
    const leaked = new Promise<LeakEvent>((resolve) => {
      const off = t.onLeak((leak) => {
        off();
        resolve(leak);
      });
    });
    (() => {
      p.acquire(32 * KIB); // MARK:leak
    })();
    await collectGarbage();
    const leak = await leaked;
    expect(leak).toMatchObject({
      kind: 'buffer_pool.buffer',
      reason: 'gc-unreleased',
      attributes: {
        'trustflow.buffer_pool.name': 'leaky',
        'trustflow.buffer_pool.size_class': 32 * KIB,
      },
    });
    expect(leak.site).toMatch(new RegExp(`^${here}:${await lineOf('MARK:leak')}:\\d+$`));
    expect(pick(p.stats())).toMatchObject({ inUse: 0, leaked: 1, released: 0, misses: 1 });
    expectConsistent(p.stats());
    const [group] = t.report().leaks;
    expect(group).toMatchObject({ kind: 'buffer_pool.buffer', reason: 'gc-unreleased', count: 1 });
  });

  it('reports the line that called use() for a buffer kept past fn and dropped', async () => {
    const t = tracker({ stacks: 'all' });
    const p = createBufferPool({ tracker: t });
    pools.push(p);
    const leaks: LeakEvent[] = [];
    t.onLeak((l) => leaks.push(l));
    (() => {
      p.acquire(10).release();
      p.use(10, () => undefined); // MARK:clean
    })();
    await collectGarbage();
    expect(leaks).toEqual([]);
    expect(t.snapshot().active['buffer_pool.buffer']).toBe(0);
    expect(p.stats()).toMatchObject({ leaked: 0, released: 2 });
  });
});

describe('metrics', () => {
  function points(metric: Awaited<ReturnType<MetricsHarness['find']>>) {
    return (metric?.dataPoints ?? []).map((d) => ({ attributes: d.attributes, value: d.value }));
  }

  it('exports in-use, available, retained, acquisitions, dropped and leaked per class', async () => {
    const metrics = createMetricsHarness();
    const p = pool({ name: 'm', classes: [{ size: 1024, max: 1 }], meter: metrics.meter });
    const a = p.acquire(10);
    const b = p.acquire(10);
    a.release();
    b.release();
    const held = p.acquire(10); // a hit, still in use
    const byName = new Map((await metrics.collect()).map((m) => [m.descriptor.name, m]));
    const cls = { 'trustflow.buffer_pool.name': 'm', 'trustflow.buffer_pool.size_class': 1024 };
    const over = { 'trustflow.buffer_pool.name': 'm', 'trustflow.buffer_pool.size_class': 0 };
    expect(byName.get('trustflow.buffer_pool.in_use')?.descriptor.unit).toBe('{buffer}');
    expect(points(byName.get('trustflow.buffer_pool.in_use'))).toEqual([
      { attributes: cls, value: 1 },
      { attributes: over, value: 0 },
    ]);
    expect(points(byName.get('trustflow.buffer_pool.available'))[0]).toEqual({
      attributes: cls,
      value: 0,
    });
    expect(byName.get('trustflow.buffer_pool.retained')?.descriptor.unit).toBe('By');
    expect(points(byName.get('trustflow.buffer_pool.acquisitions')).slice(0, 2)).toEqual([
      { attributes: { ...cls, 'trustflow.buffer_pool.outcome': 'hit' }, value: 1 },
      { attributes: { ...cls, 'trustflow.buffer_pool.outcome': 'miss' }, value: 2 },
    ]);
    expect(points(byName.get('trustflow.buffer_pool.dropped'))[0]).toEqual({
      attributes: cls,
      value: 1,
    });
    expect(points(byName.get('trustflow.buffer_pool.leaked'))[0]?.value).toBe(0);
    p.close();
    held.release();
    expect(p.stats().inUse).toBe(0);
    // the pool no longer observes: the last exported value stays (cumulative), no new one comes
    const after = new Map((await metrics.collect()).map((m) => [m.descriptor.name, m]));
    expect(points(after.get('trustflow.buffer_pool.in_use'))[0]?.value).toBe(1);
    await metrics.shutdown();
  });
});

describe('presets and close', () => {
  it('has the Go pools as presets, and all three in the default pool', () => {
    expect(bufferPoolPresets.streamChunks).toEqual({
      name: 'stream-chunks',
      classes: [{ size: 80 * KIB, max: 25 }],
    });
    expect(bufferPoolPresets.files).toEqual({
      name: 'files',
      classes: [{ size: 32 * KIB, max: 50 }],
    });
    expect(bufferPoolPresets.small).toEqual({
      name: 'small',
      classes: [{ size: 4 * KIB, max: 100 }],
    });
    const chunks = pool(bufferPoolPresets.streamChunks);
    expect(chunks.name).toBe('stream-chunks');
    expect(chunks.stats().classes.map((c) => [c.size, c.max])).toEqual([
      [80 * KIB, 25],
      [0, 0],
    ]);
    expect(
      pool()
        .stats()
        .classes.map((c) => [c.size, c.max]),
    ).toEqual([
      [4 * KIB, 100],
      [32 * KIB, 50],
      [80 * KIB, 25],
      [0, 0],
    ]);
  });

  it('after close, acquire throws and lent buffers can still be returned', () => {
    const p = pool();
    const lent = p.acquire(10);
    p.acquire(10).release();
    p.close();
    p.close();
    expect(p.stats()).toMatchObject({ available: 0, retainedBytes: 0, inUse: 1 });
    expect(() => p.acquire(10)).toThrow('buffer pool "default" is closed');
    lent.release();
    expect(p.stats()).toMatchObject({ inUse: 0, available: 0, dropped: 1, released: 2 });
  });

  it('uses the process-wide default tracker when none is given', () => {
    const p = createBufferPool({ name: 'defaulted' });
    pools.push(p);
    const b = p.acquire(1);
    expect(b.length).toBe(1);
    b.release();
    expect(p.stats().released).toBe(1);
  });
});

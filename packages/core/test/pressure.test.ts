import { createMetricsHarness } from '@trustflow/test-utils';
import { describe, expect, it } from 'vitest';
import {
  createMemoryPressureMonitor,
  type MemoryPressureFigures,
  type MemoryReading,
} from '../src/index.js';

const MB = 1024 * 1024;

/** A synthetic source: a heap limit of 1000 MB and a settable heap use. */
function synthetic(initial: Partial<MemoryReading> = {}) {
  const reading: MemoryReading = {
    heapUsedBytes: 100 * MB,
    heapLimitBytes: 1000 * MB,
    rssBytes: 150 * MB,
    containerLimitBytes: null,
    ...initial,
  };
  return { reading, read: () => ({ ...reading }) };
}

function record(monitor: ReturnType<typeof createMemoryPressureMonitor>) {
  const events: { type: string; ratio: number }[] = [];
  monitor.on('pressure', (f) => events.push({ type: 'pressure', ratio: f.ratio }));
  monitor.on('relief', (f) => events.push({ type: 'relief', ratio: f.ratio }));
  return events;
}

describe('createMemoryPressureMonitor', () => {
  it('fires pressure at the threshold and relief only under the relief threshold (hysteresis)', () => {
    const { reading, read } = synthetic();
    const monitor = createMemoryPressureMonitor({ read, intervalMs: 0 });
    const events = record(monitor);
    // A trace that wobbles around the threshold: without hysteresis it would flap five times.
    const trace = [0.5, 0.84, 0.86, 0.84, 0.86, 0.8, 0.9, 0.76, 0.85, 0.74, 0.8, 0.86];
    for (const ratio of trace) {
      reading.heapUsedBytes = ratio * 1000 * MB;
      monitor.check();
    }
    expect(events.map((e) => e.type)).toEqual(['pressure', 'relief', 'pressure']);
    expect(events[0]!.ratio).toBeCloseTo(0.86);
    expect(events[1]!.ratio).toBeCloseTo(0.74);
    expect(monitor.underPressure).toBe(true);
    monitor.stop();
  });

  it('reports the figures, against the smaller limit: heap limit or container limit', () => {
    const heapBound = synthetic({ heapUsedBytes: 900 * MB, rssBytes: 1200 * MB });
    const heapMonitor = createMemoryPressureMonitor({ read: heapBound.read, intervalMs: 0 });
    let seen: MemoryPressureFigures | undefined;
    heapMonitor.on('pressure', (f) => {
      seen = f;
    });
    heapMonitor.check();
    expect(seen).toEqual({
      heapUsedBytes: 900 * MB,
      heapLimitBytes: 1000 * MB,
      rssBytes: 1200 * MB,
      containerLimitBytes: null,
      ratio: 0.9,
      usedBytes: 900 * MB,
      limitBytes: 1000 * MB,
      limitSource: 'heap',
    });
    heapMonitor.stop();

    // A 512 MB container: the heap is far from its own limit, but RSS is near the container's.
    const container = synthetic({
      heapUsedBytes: 300 * MB,
      rssBytes: 460 * MB,
      containerLimitBytes: 512 * MB,
    });
    const containerMonitor = createMemoryPressureMonitor({ read: container.read, intervalMs: 0 });
    const events = record(containerMonitor);
    const figures = containerMonitor.check();
    expect(figures.limitSource).toBe('container');
    expect(figures.limitBytes).toBe(512 * MB);
    expect(figures.usedBytes).toBe(460 * MB);
    expect(figures.ratio).toBeCloseTo(460 / 512);
    expect(events.map((e) => e.type)).toEqual(['pressure']);
    containerMonitor.stop();
  });

  it('reads real figures by default', () => {
    const monitor = createMemoryPressureMonitor({ intervalMs: 0 });
    const f = monitor.check();
    expect(f.heapUsedBytes).toBeGreaterThan(0);
    expect(f.heapLimitBytes).toBeGreaterThan(f.heapUsedBytes);
    expect(f.rssBytes).toBeGreaterThan(0);
    expect(f.ratio).toBeGreaterThan(0);
    expect(f.ratio).toBeLessThan(0.85);
    const constrained = process.constrainedMemory();
    if (!(constrained > 0 && constrained < Number.MAX_SAFE_INTEGER)) {
      expect(f.containerLimitBytes).toBeNull();
    }
    monitor.stop();
  });

  it('publishes trustflow.memory.pressure and stops publishing when stopped', async () => {
    const metrics = createMetricsHarness();
    const { reading, read } = synthetic({ heapUsedBytes: 420 * MB });
    const monitor = createMemoryPressureMonitor({ read, intervalMs: 0, meter: metrics.meter });
    const metric = await metrics.find('trustflow.memory.pressure');
    expect(metric?.descriptor.unit).toBe('1');
    expect(metric?.dataPoints).toHaveLength(1);
    expect(metric?.dataPoints[0]?.value).toBeCloseTo(0.42);
    expect(metric?.dataPoints[0]?.attributes).toEqual({ 'trustflow.memory.limit_source': 'heap' });
    reading.heapUsedBytes = 610 * MB;
    expect((await metrics.find('trustflow.memory.pressure'))?.dataPoints[0]?.value).toBeCloseTo(
      0.61,
    );
    monitor.stop();
    monitor.stop();
    // Stopped: the callback is gone, so a new reading is never observed.
    reading.heapUsedBytes = 700 * MB;
    const after = await metrics.find('trustflow.memory.pressure');
    expect(after?.dataPoints.map((p) => p.value)).not.toContainEqual(0.7);
    await metrics.shutdown();
  });

  it('never forces GC unless asked; when asked, once, and a false alarm does not fire', () => {
    const g = globalThis as { gc?: () => void };
    const realGc = g.gc;
    expect(typeof realGc).toBe('function');
    let collections = 0;
    g.gc = () => {
      collections++;
      realGc!();
    };
    try {
      const { reading, read } = synthetic({ heapUsedBytes: 950 * MB });
      const plain = createMemoryPressureMonitor({ read, intervalMs: 0 });
      plain.check();
      expect(plain.underPressure).toBe(true);
      expect(collections).toBe(0);
      plain.stop();

      // The collection frees the memory: no pressure, one GC.
      const source = synthetic({ heapUsedBytes: 950 * MB });
      const freed = createMemoryPressureMonitor({
        intervalMs: 0,
        gcOnPressure: true,
        read: () => {
          const r = source.read();
          if (collections > 0) r.heapUsedBytes = 300 * MB;
          return r;
        },
      });
      const events = record(freed);
      const figures = freed.check();
      expect(collections).toBe(1);
      expect(figures.afterGc?.ratio).toBeCloseTo(0.3);
      expect(events).toEqual([]);
      freed.stop();

      // Real pressure: GC does not help; the event carries both figures; no second GC soon after.
      collections = 0;
      const stuck = createMemoryPressureMonitor({ read, intervalMs: 0, gcOnPressure: true });
      let seen: MemoryPressureFigures | undefined;
      stuck.on('pressure', (f) => {
        seen = f;
      });
      stuck.check();
      expect(collections).toBe(1);
      expect(seen?.ratio).toBeCloseTo(0.95);
      expect(seen?.afterGc?.ratio).toBeCloseTo(0.95);
      reading.heapUsedBytes = 500 * MB;
      stuck.check();
      reading.heapUsedBytes = 950 * MB;
      stuck.check();
      expect(collections).toBe(1);
      stuck.stop();
    } finally {
      g.gc = realGc;
    }
  });

  it('keeps a throwing listener away from the caller and other listeners', () => {
    const { read } = synthetic({ heapUsedBytes: 990 * MB });
    const monitor = createMemoryPressureMonitor({ read, intervalMs: 0 });
    let second = false;
    monitor.on('pressure', () => {
      throw new Error('listener bug');
    });
    monitor.on('pressure', () => {
      second = true;
    });
    expect(() => monitor.check()).not.toThrow();
    expect(second).toBe(true);
    monitor.stop();
  });

  it('checks on its unref-ed timer', async () => {
    const { read } = synthetic({ heapUsedBytes: 900 * MB });
    const monitor = createMemoryPressureMonitor({ read, intervalMs: 5 });
    await new Promise<void>((resolve) => monitor.on('pressure', () => resolve()));
    expect(monitor.underPressure).toBe(true);
    monitor[Symbol.dispose]();
  });

  it('rejects bad options and bad readings with a one-line error', () => {
    expect(() => createMemoryPressureMonitor({ threshold: 1.5 })).toThrow(
      'createMemoryPressureMonitor: option threshold must be a number in (0, 1], got 1.5',
    );
    expect(() => createMemoryPressureMonitor({ threshold: 0.8, reliefThreshold: 0.9 })).toThrow(
      /option reliefThreshold must be a number in \[0, threshold 0.8\), got 0.9/,
    );
    expect(() => createMemoryPressureMonitor({ intervalMs: -1 })).toThrow(/intervalMs/);
    const monitor = createMemoryPressureMonitor({
      intervalMs: 0,
      read: () => ({ heapUsedBytes: Number.NaN }) as never,
    });
    expect(() => monitor.check()).toThrow(/a reading needs non-negative numbers/);
    monitor.stop();
  });
});

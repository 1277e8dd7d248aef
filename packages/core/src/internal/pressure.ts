import { getHeapStatistics } from 'node:v8';
import { type BatchObservableCallback, metrics, type ObservableGauge } from '@opentelemetry/api';
import type {
  MemoryPressureFigures,
  MemoryPressureMonitor,
  MemoryPressureOptions,
  MemoryReading,
} from '../types.js';
import { ErrorSink } from './errors.js';
import { Listeners, numberOption } from './events.js';

export const ATTR_LIMIT_SOURCE = 'trustflow.memory.limit_source';

const WHERE = 'createMemoryPressureMonitor';

/** The container limit, or null when the process is not constrained (or Node cannot tell). */
function containerLimit(): number | null {
  const read = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory;
  if (typeof read !== 'function') return null;
  const limit = read.call(process);
  // "No limit" shows up as 0, undefined or a huge number (the cgroup "max", about 2^64).
  return typeof limit === 'number' && limit > 0 && limit < Number.MAX_SAFE_INTEGER ? limit : null;
}

export function readMemory(): MemoryReading {
  const heap = getHeapStatistics();
  return {
    heapUsedBytes: heap.used_heap_size,
    heapLimitBytes: heap.heap_size_limit,
    rssBytes: process.memoryUsage.rss(),
    containerLimitBytes: containerLimit(),
  };
}

function isSize(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/**
 * The effective ratio: heap used against the V8 heap limit, and RSS against the container limit
 * when there is one; the higher of the two wins. With a container limit below the heap limit
 * this is RSS / min(limits); with a heap limit below it, heap used / min(limits), unless
 * off-heap memory (buffers) brings RSS closer to the container limit.
 */
export function pressureFigures(reading: MemoryReading): MemoryPressureFigures {
  const { heapUsedBytes, heapLimitBytes, rssBytes, containerLimitBytes } = reading ?? {};
  if (!isSize(heapUsedBytes) || !isSize(heapLimitBytes) || !isSize(rssBytes)) {
    throw new TypeError(
      'memory pressure: a reading needs non-negative numbers heapUsedBytes, heapLimitBytes and rssBytes',
    );
  }
  if (containerLimitBytes !== null && !isSize(containerLimitBytes)) {
    throw new TypeError(
      'memory pressure: reading.containerLimitBytes must be a non-negative number or null',
    );
  }
  const heapRatio = heapLimitBytes > 0 ? heapUsedBytes / heapLimitBytes : 0;
  const containerRatio = containerLimitBytes ? rssBytes / containerLimitBytes : 0;
  const container = containerRatio > heapRatio;
  return {
    heapUsedBytes,
    heapLimitBytes,
    rssBytes,
    containerLimitBytes,
    ratio: container ? containerRatio : heapRatio,
    usedBytes: container ? rssBytes : heapUsedBytes,
    limitBytes: container ? containerLimitBytes! : heapLimitBytes,
    limitSource: container ? 'container' : 'heap',
  };
}

class PressureMonitor implements MemoryPressureMonitor {
  private readonly sink = new ErrorSink('@trustflow/core');
  private readonly listeners = new Listeners<'pressure' | 'relief', MemoryPressureFigures>(
    ['pressure', 'relief'],
    this.sink,
    'memory pressure monitor',
  );
  private readonly threshold: number;
  private readonly relief: number;
  private readonly gcGapMs: number;
  private readonly read: () => MemoryReading;
  private readonly gcOnPressure: boolean;
  private pressure = false;
  private lastGc = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private readonly unobserve: () => void;
  private stopped = false;

  constructor(options: MemoryPressureOptions) {
    this.threshold = numberOption(
      WHERE,
      'threshold',
      options.threshold,
      0.85,
      (n) => n > 0 && n <= 1,
      'a number in (0, 1]',
    );
    this.relief = numberOption(
      WHERE,
      'reliefThreshold',
      options.reliefThreshold,
      Math.max(0, this.threshold - 0.1),
      (n) => n >= 0 && n < this.threshold,
      `a number in [0, threshold ${this.threshold})`,
    );
    const interval = numberOption(
      WHERE,
      'intervalMs',
      options.intervalMs,
      30_000,
      (n) => n >= 0,
      'a non-negative number',
    );
    if (options.read !== undefined && typeof options.read !== 'function') {
      throw new TypeError(`${WHERE}: option read must be a function`);
    }
    this.read = options.read ?? readMemory;
    this.gcOnPressure = options.gcOnPressure === true;
    this.gcGapMs = Math.max(10 * interval, 60_000);

    const meter = options.meter ?? metrics.getMeter('@trustflow/core');
    const gauge: ObservableGauge = meter.createObservableGauge('trustflow.memory.pressure', {
      unit: '1',
      description:
        'Memory used over the effective limit (the smaller of the V8 heap limit and the container limit).',
    });
    const callback: BatchObservableCallback = (result) => {
      try {
        const f = pressureFigures(this.read());
        result.observe(gauge, f.ratio, { [ATTR_LIMIT_SOURCE]: f.limitSource });
      } catch (error) {
        this.sink.report('memory pressure metric', error);
      }
    };
    meter.addBatchObservableCallback(callback, [gauge]);
    this.unobserve = () => meter.removeBatchObservableCallback(callback, [gauge]);

    if (interval > 0) {
      this.timer = setInterval(() => {
        try {
          this.check();
        } catch (error) {
          this.sink.report('memory pressure check', error);
        }
      }, interval);
      this.timer.unref();
    }
  }

  get underPressure(): boolean {
    return this.pressure;
  }

  on(event: 'pressure' | 'relief', listener: (figures: MemoryPressureFigures) => void): () => void {
    return this.listeners.on(event, listener);
  }

  check(): MemoryPressureFigures {
    const figures = pressureFigures(this.read());
    if (!this.pressure) {
      if (figures.ratio < this.threshold) return figures;
      const gc = (globalThis as { gc?: () => void }).gc;
      const now = performance.now();
      if (this.gcOnPressure && typeof gc === 'function' && now - this.lastGc >= this.gcGapMs) {
        this.lastGc = now;
        gc();
        figures.afterGc = pressureFigures(this.read());
        // It was garbage: no pressure after all.
        if (figures.afterGc.ratio < this.threshold) return figures;
      }
      this.pressure = true;
      this.listeners.emit('pressure', figures);
    } else if (figures.ratio < this.relief) {
      this.pressure = false;
      this.listeners.emit('relief', figures);
    }
    return figures;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    try {
      this.unobserve();
    } catch (error) {
      this.sink.report('memory pressure stop', error);
    }
    this.listeners.clear();
  }

  [Symbol.dispose](): void {
    this.stop();
  }
}

/**
 * Watches memory against the effective limit and fires `pressure` at the threshold and `relief`
 * once back under the relief threshold. Never forces GC unless `gcOnPressure` is set and GC is
 * exposed.
 */
export function createMemoryPressureMonitor(
  options: MemoryPressureOptions = {},
): MemoryPressureMonitor {
  return new PressureMonitor(options);
}

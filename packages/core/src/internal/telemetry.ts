import type {
  BatchObservableCallback,
  Counter,
  Histogram,
  Meter,
  Observable,
  Attributes as OtelAttributes,
} from '@opentelemetry/api';
import type { Attributes } from '../types.js';

/** Attribute names used on the tracker's metrics and spans. */
export const ATTR_KIND = 'trustflow.resource.kind';
export const ATTR_REASON = 'trustflow.leak.reason';
export const ATTR_SITE = 'trustflow.leak.site';

/** The lifetime histogram: buckets in seconds, from a millisecond to a day. */
export const LIFETIME = {
  name: 'trustflow.resource.lifetime',
  unit: 's',
  description: 'Time from open to release.',
  boundaries: [
    0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400,
  ] as readonly number[],
} as const;

/**
 * A lifetime histogram kept by the tracker itself, for a reader that takes it through a
 * MetricProducer (see lifetimeProducer()): a release costs a bucket search and four
 * writes, where the SDK's record() hashes the attribute set every time (~2 us per release, the
 * largest item of a tracked socket's close).
 */
export class LifetimeHistogram {
  /** counts[i]: values in (boundaries[i-1], boundaries[i]]; the last one above them all. */
  readonly counts: number[] = new Array(LIFETIME.boundaries.length + 1).fill(0);
  sum = 0;
  count = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;

  record(seconds: number): void {
    const bounds = LIFETIME.boundaries;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
    if (seconds < this.min) this.min = seconds;
    if (seconds > this.max) this.max = seconds;
  }
}

/** What a release records a lifetime against. */
export interface LifetimeTarget {
  readonly metricAttributes: OtelAttributes;
  lifetime: LifetimeHistogram | undefined;
}

/** What the metrics callback reads: one row per (kind, attribute set). */
export interface SeriesView {
  readonly metricAttributes: OtelAttributes;
  readonly active: number;
  readonly opened: number;
  readonly closed: number;
  oldestOpenedAt(): number | undefined;
}

export interface TelemetrySource {
  series(): Iterable<SeriesView>;
  overflow(): number;
  errors(): number;
  now(): number;
}

/**
 * The tracker's instruments. Counts that change on every open and close (active, opened, closed)
 * are observable and read from the tracker's own counters at collection time, so the hot path
 * pays nothing for them; only the lifetime histogram and the (rare) leak counter are recorded
 * as they happen.
 */
export class TrackerTelemetry {
  readonly leaked: Counter;
  /** Created at the first release, unless lifetimes are collected by the tracker by then. */
  private lifetime: Histogram | undefined;
  private collectLifetimes = false;
  private readonly meter: Meter;
  private readonly observables: Observable[];
  private readonly callback: BatchObservableCallback;

  constructor(meter: Meter, source: TelemetrySource) {
    this.meter = meter;
    const active = meter.createObservableUpDownCounter('trustflow.resource.active', {
      unit: '{resource}',
      description: 'Resources currently open and tracked.',
    });
    const opened = meter.createObservableCounter('trustflow.resource.opened', {
      unit: '{resource}',
      description: 'Resources opened since the tracker started.',
    });
    const closed = meter.createObservableCounter('trustflow.resource.closed', {
      unit: '{resource}',
      description: 'Resources released (closed) since the tracker started.',
    });
    const oldest = meter.createObservableGauge('trustflow.resource.oldest_age', {
      unit: 's',
      description: 'Age of the oldest open resource of each kind.',
    });
    const overflow = meter.createObservableCounter('trustflow.tracker.overflow', {
      unit: '{resource}',
      description: 'Resources not tracked because the live-entry cap was reached.',
    });
    const errors = meter.createObservableCounter('trustflow.instrumentation.errors', {
      unit: '{error}',
      description: 'Errors caught inside instrumentation (never rethrown to the application).',
    });
    this.leaked = meter.createCounter('trustflow.resource.leaked', {
      unit: '{resource}',
      description: 'Resources reported as leaked, by reason.',
    });
    this.observables = [active, opened, closed, oldest, overflow, errors];
    this.callback = (result) => {
      const now = source.now();
      for (const s of source.series()) {
        if (s.opened === 0) continue;
        result.observe(active, s.active, s.metricAttributes);
        result.observe(opened, s.opened, s.metricAttributes);
        result.observe(closed, s.closed, s.metricAttributes);
        const first = s.oldestOpenedAt();
        if (first !== undefined) result.observe(oldest, (now - first) / 1000, s.metricAttributes);
      }
      result.observe(overflow, source.overflow());
      result.observe(errors, source.errors());
    };
    meter.addBatchObservableCallback(this.callback, this.observables);
  }

  recordLifetime(seconds: number, target: LifetimeTarget): void {
    if (this.collectLifetimes) {
      let histogram = target.lifetime;
      if (histogram === undefined) {
        histogram = new LifetimeHistogram();
        target.lifetime = histogram;
      }
      histogram.record(seconds);
      return;
    }
    this.lifetime ??= this.meter.createHistogram(LIFETIME.name, {
      unit: LIFETIME.unit,
      description: LIFETIME.description,
      advice: { explicitBucketBoundaries: [...LIFETIME.boundaries] },
    });
    this.lifetime.record(seconds, target.metricAttributes);
  }

  /**
   * From now on lifetimes are kept per series by the tracker instead of recorded on the meter's
   * histogram. Only before the first release (the histogram instrument must never exist, or a
   * reader would see the metric twice); false after it.
   */
  collectLifetimesHere(): boolean {
    if (this.lifetime !== undefined) return false;
    this.collectLifetimes = true;
    return true;
  }

  stop(): void {
    this.meter.removeBatchObservableCallback(this.callback, this.observables);
  }
}

/** Metric attributes of a series: the kind plus the caller's low-cardinality attributes. */
export function metricAttributes(kind: string, attributes: Attributes | undefined): OtelAttributes {
  return Object.freeze({ ...attributes, [ATTR_KIND]: kind });
}

import { type Attributes, type HrTime, ValueType } from '@opentelemetry/api';
import type { ResourceTracker } from '../types.js';
import { defaultTracker } from './default-tracker.js';
import { kInternal, type Tracker } from './tracker.js';

// The values of sdk-metrics' DataPointType.HISTOGRAM and AggregationTemporality.CUMULATIVE (the
// same since SDK 1.x). This package depends on the OpenTelemetry API only.
const HISTOGRAM = 0 as const;
const CUMULATIVE = 1 as const;

/** A histogram data point as sdk-metrics' readers take it from a MetricProducer. */
export interface LifetimeDataPoint {
  startTime: HrTime;
  endTime: HrTime;
  attributes: Attributes;
  value: {
    buckets: { boundaries: number[]; counts: number[] };
    sum: number;
    count: number;
    min: number;
    max: number;
  };
}

/**
 * An OpenTelemetry `MetricProducer` (sdk-metrics) of the tracker's lifetime histogram. The
 * resource it returns is empty: readers use their SDK's resource for a producer's metrics.
 */
export interface LifetimeProducer {
  collect(): Promise<{
    // a reader ignores a producer's resource (and uses its SDK's)
    resourceMetrics: { resource: any; scopeMetrics: LifetimeScopeMetrics[] };
    errors: unknown[];
  }>;
}

export interface LifetimeScopeMetrics {
  scope: { name: string };
  metrics: {
    descriptor: { name: string; description: string; unit: string; valueType: ValueType };
    aggregationTemporality: typeof CUMULATIVE;
    dataPointType: typeof HISTOGRAM;
    dataPoints: LifetimeDataPoint[];
  }[];
}

function hrTime(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)];
}

/**
 * Takes `trustflow.resource.lifetime` off the meter: from now on the tracker keeps the histogram
 * itself, per series (a bucket search and four writes per release, where the SDK's `record()`
 * hashes the attribute set every time), and the returned producer hands it to your readers:
 * `new PrometheusExporter({ metricProducers: [p] })`, `new PeriodicExportingMetricReader({
 * exporter, metricProducers: [p] })`. Same name, unit, buckets and attributes. Call it before the
 * tracker releases anything (throws after: the histogram would be exported twice).
 */
export function lifetimeProducer(tracker: ResourceTracker = defaultTracker()): LifetimeProducer {
  const internal = (tracker as Partial<Record<typeof kInternal, Tracker>>)[kInternal];
  if (internal === undefined) throw new TypeError('lifetimeProducer: not a Trustflow tracker');
  if (!internal.collectLifetimes()) {
    throw new Error(
      'lifetimeProducer: the tracker has already recorded lifetimes on its meter; call lifetimeProducer() before anything is released',
    );
  }
  const { name, unit, description, boundaries } = internal.lifetimeMetric;
  const startTime = hrTime(Date.now());
  const scope = { name: '@trustflow/core' };
  return {
    async collect() {
      const endTime = hrTime(Date.now());
      const dataPoints: LifetimeDataPoint[] = internal
        .lifetimes()
        .map(({ attributes, histogram: h }) => ({
          startTime,
          endTime,
          attributes,
          value: {
            buckets: { boundaries: [...boundaries], counts: [...h.counts] },
            sum: h.sum,
            count: h.count,
            min: h.min,
            max: h.max,
          },
        }));
      const scopeMetrics: LifetimeScopeMetrics[] =
        dataPoints.length === 0
          ? []
          : [
              {
                scope,
                metrics: [
                  {
                    descriptor: { name, unit, description, valueType: ValueType.DOUBLE },
                    aggregationTemporality: CUMULATIVE,
                    dataPointType: HISTOGRAM,
                    dataPoints,
                  },
                ],
              },
            ];
      return { resourceMetrics: { resource: {}, scopeMetrics }, errors: [] };
    },
  };
}

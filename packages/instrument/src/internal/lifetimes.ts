// The tracker's lifetime histogram as an OpenTelemetry MetricProducer (see lifetime-source.ts).
// Part of the SDK chunk: it needs sdk-metrics.
import { type HrTime, ValueType } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  type CollectionResult,
  DataPointType,
  type MetricProducer,
} from '@opentelemetry/sdk-metrics';
import type { LifetimeSource } from './lifetime-source.js';

function hrTime(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)];
}

/** Cumulative histogram points since `startMs` (epoch ms), one per series, in scope `scope`. */
export function lifetimeProducer(
  source: LifetimeSource,
  resource: Resource,
  scope: string,
  startMs: number,
): MetricProducer {
  const { name, unit, description, boundaries } = source.lifetimeMetric;
  const startTime = hrTime(startMs);
  return {
    async collect(): Promise<CollectionResult> {
      const endTime = hrTime(Date.now());
      const dataPoints = source.lifetimes().map(({ attributes, histogram: h }) => ({
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
      const metrics =
        dataPoints.length === 0
          ? []
          : [
              {
                descriptor: { name, unit, description, valueType: ValueType.DOUBLE },
                aggregationTemporality: AggregationTemporality.CUMULATIVE,
                dataPointType: DataPointType.HISTOGRAM as const,
                dataPoints,
              },
            ];
      return {
        resourceMetrics: {
          resource,
          scopeMetrics: metrics.length === 0 ? [] : [{ scope: { name: scope }, metrics }],
        },
        errors: [],
      };
    },
  };
}

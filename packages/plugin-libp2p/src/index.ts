import type { Metrics } from '@libp2p/interface';
import { createLibp2pMetrics } from './internal/metrics.js';
import type { Libp2pMetricsComponents, Libp2pMetricsInit } from './types.js';

export { withStream } from './internal/with-stream.js';
export type {
  ClosableStream,
  Libp2pMetricsComponents,
  Libp2pMetricsInit,
  WithStreamOptions,
} from './types.js';

/**
 * A libp2p `Metrics` implementation backed by the Trustflow tracker and OpenTelemetry:
 * `createLibp2p({ metrics: libp2pMetrics() })`. Connections and protocol streams become tracked
 * resources (kinds `libp2p.connection` and `libp2p.stream`: lifetimes, stale and leaked ones with
 * the line that opened them), bytes are counted per protocol without touching the data, and
 * every metric and trace libp2p registers itself goes to the same OTel pipeline.
 * Bad options throw a TypeError naming the option.
 */
export function libp2pMetrics(
  init: Libp2pMetricsInit = {},
): (components: Libp2pMetricsComponents) => Metrics {
  checkInit(init);
  return (components) => createLibp2pMetrics(components, init);
}

function checkInit(init: Libp2pMetricsInit): void {
  if (typeof init !== 'object' || init === null) {
    throw new TypeError('libp2pMetrics: options must be an object');
  }
  for (const option of ['maxProtocols', 'maxGroupKeys'] as const) {
    const value = init[option];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
      throw new TypeError(
        `libp2pMetrics: option ${option} must be a positive integer, got ${String(value)}`,
      );
    }
  }
  for (const option of ['tracker', 'meter', 'tracer'] as const) {
    const value = init[option];
    if (value !== undefined && (typeof value !== 'object' || value === null)) {
      throw new TypeError(
        `libp2pMetrics: option ${option} must be an object, got ${String(value)}`,
      );
    }
  }
}

// The preload owns its OpenTelemetry readers, so instead of one SDK record() per released
// resource (which hashes the attribute set every time, ~2 us) core keeps the lifetime histogram
// per series and the readers collect it through a MetricProducer (lifetimes.ts). This part runs
// at start-up and must not import the SDK.
import type { Attributes } from '@opentelemetry/api';

interface Histogram {
  readonly counts: readonly number[];
  readonly sum: number;
  readonly count: number;
  readonly min: number;
  readonly max: number;
}

/** What the producer reads from core's tracker (its internal side, see collectLifetimes()). */
export interface LifetimeSource {
  collectLifetimes(): boolean;
  lifetimes(): { attributes: Attributes; histogram: Histogram }[];
  readonly lifetimeMetric: {
    readonly name: string;
    readonly unit: string;
    readonly description: string;
    readonly boundaries: readonly number[];
  };
}

// core's registered symbol for a tracker's internal side (see kInternal in core's tracker.ts)
const kInternal = Symbol.for('@trustflow/core.tracker-internal');

/**
 * Switches `tracker` to keeping its lifetime histogram itself and returns it as a source for
 * lifetimeProducer(); undefined when this core cannot (then lifetimes go through the meter).
 */
export function collectLifetimes(tracker: object): LifetimeSource | undefined {
  const internal = (tracker as Record<symbol, Partial<LifetimeSource> | undefined>)[kInternal];
  if (typeof internal?.collectLifetimes !== 'function') return undefined;
  return internal.collectLifetimes() ? (internal as LifetimeSource) : undefined;
}

import { context, type Meter, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  type MetricData,
  type MetricProducer,
  MetricReader,
  PeriodicExportingMetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';

/** A metric reader that collects on demand. */
class ManualReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

export interface MetricsHarness {
  meter: Meter;
  provider: MeterProvider;
  /** Collects now and returns every metric data point set, flattened. */
  collect(): Promise<MetricData[]>;
  /** The metric with this name, or undefined. */
  find(name: string): Promise<MetricData | undefined>;
  shutdown(): Promise<void>;
}

/** An in-memory meter provider with a reader that collects when asked (cumulative). */
export function createMetricsHarness(
  name = 'test',
  options: { metricProducers?: MetricProducer[] } = {},
): MetricsHarness {
  const reader = new ManualReader({
    aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE,
    metricProducers: options.metricProducers,
  });
  const provider = new MeterProvider({ readers: [reader] });
  const collect = async (): Promise<MetricData[]> => {
    const { resourceMetrics, errors } = await reader.collect();
    if (errors.length > 0) throw new AggregateError(errors, 'metric collection failed');
    return flatten(resourceMetrics);
  };
  return {
    meter: provider.getMeter(name),
    provider,
    collect,
    async find(metric) {
      return (await collect()).find((m) => m.descriptor.name === metric);
    },
    shutdown: () => provider.shutdown(),
  };
}

function flatten(resourceMetrics: ResourceMetrics): MetricData[] {
  return resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
}

export interface TracingHarness {
  tracer: Tracer;
  provider: TracerProvider;
  exporter: InMemorySpanExporter;
  spans(): ReadableSpan[];
  shutdown(): Promise<void>;
}

let contextEnabled = false;

/** Registers an AsyncLocalStorage context manager once, so `context.with` propagates in tests. */
export function enableContext(): void {
  if (contextEnabled) return;
  contextEnabled = true;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
}

/** An in-memory tracer provider that exports every ended span synchronously. */
export function createTracingHarness(name = 'test'): TracingHarness {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  return {
    tracer: provider.getTracer(name),
    provider,
    exporter,
    spans: () => exporter.getFinishedSpans(),
    shutdown: () => provider.shutdown(),
  };
}

/** Forces a full GC (needs --expose-gc) and waits until pending finalizers have had a chance to run. */
export async function collectGarbage(rounds = 3): Promise<void> {
  const gc = (globalThis as { gc?: (options?: unknown) => unknown }).gc;
  if (typeof gc !== 'function') throw new Error('collectGarbage needs node --expose-gc');
  for (let i = 0; i < rounds; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Waits until `predicate()` is true, checking after each macrotask, up to `timeoutMs`. */
export async function waitFor(
  predicate: () => boolean,
  timeoutMs = 5000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export { InMemoryMetricExporter, PeriodicExportingMetricReader };

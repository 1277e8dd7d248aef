// The OpenTelemetry SDK part of the preload. Loaded with import() after the application started
// (see runtime.ts), so a program that does nothing never pays for it. The OTLP exporters and the
// trace SDK are required only when configured: the default (Prometheus) loads ~20 ms less.

import type { Agent as HttpAgent, IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { hostname } from 'node:os';
import { type MeterProvider as ApiMeterProvider, context, diag, trace } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import {
  defaultResource,
  detectResources,
  envDetector,
  type Resource,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import {
  ConsoleMetricExporter,
  type IMetricReader,
  MeterProvider,
  type MetricProducer,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import type { SpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { openFdCount, type ResourceTracker } from '@trustflow/core';
import type { Config } from './config.js';

const load = createRequire(import.meta.url);
const otlpMetrics = (): typeof import('@opentelemetry/exporter-metrics-otlp-http') =>
  load('@opentelemetry/exporter-metrics-otlp-http');
const otlpTraces = (): typeof import('@opentelemetry/exporter-trace-otlp-http') =>
  load('@opentelemetry/exporter-trace-otlp-http');
const traceSdk = (): typeof import('@opentelemetry/sdk-trace') => load('@opentelemetry/sdk-trace');
const contextManager = (): typeof import('@opentelemetry/context-async-hooks') =>
  load('@opentelemetry/context-async-hooks');

export interface Sdk {
  meterProvider: MeterProvider | undefined;
  tracerProvider: TracerProvider | undefined;
  /** Answers a Prometheus scrape; undefined without the prometheus exporter. */
  prometheus: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  /** Pushes what the push exporters hold (OTLP, console). */
  flush(timeoutMs: number): Promise<void>;
  /** Flushes and stops every provider and the runtime metrics. */
  shutdown(timeoutMs: number): Promise<void>;
}

export interface SdkOptions {
  config: Config;
  tracker: ResourceTracker;
  /** The tracker's lifetime histogram, when the tracker keeps it (core's lifetimeProducer()). */
  lifetimes?: MetricProducer | undefined;
  /** Attached to the meter provider once it exists. */
  attach: (provider: ApiMeterProvider) => void;
  /** Set the global tracer provider and context manager (the preload does, unless one exists). */
  registerGlobals: boolean;
}

function buildResource(config: Config): Resource {
  const own: Record<string, string | number> = {
    'process.pid': process.pid,
    'process.runtime.name': 'nodejs',
    'process.runtime.version': process.versions.node,
    'host.name': hostname(),
  };
  let resource = defaultResource()
    .merge(resourceFromAttributes(own))
    .merge(detectResources({ detectors: [envDetector] }));
  if (config.serviceName) {
    resource = resource.merge(resourceFromAttributes({ 'service.name': config.serviceName }));
  }
  return resource;
}

/**
 * An HTTP agent for exporters whose connections are instrumentation, not application: created
 * inside `tracker.untracked()` and ignored, so they never show up as the application's sockets.
 */
function ownAgent(tracker: ResourceTracker, protocol: string): HttpAgent {
  // getBuiltinModule: the ES module facade of node:http loads undici for nothing.
  const Base: typeof HttpAgent =
    protocol === 'https:'
      ? process.getBuiltinModule('node:https').Agent
      : process.getBuiltinModule('node:http').Agent;
  class OwnAgent extends Base {
    override createConnection(...args: Parameters<HttpAgent['createConnection']>) {
      return tracker.untracked(() => {
        const socket = super.createConnection(...args) as Socket | undefined | null;
        if (socket) {
          tracker.ignore(socket);
          const handle = (socket as unknown as { _handle?: object })._handle;
          if (handle) tracker.ignore(handle);
        }
        return socket as ReturnType<HttpAgent['createConnection']>;
      });
    }
  }
  return new OwnAgent({ keepAlive: true });
}

/**
 * Builds the meter provider (Prometheus reader, OTLP/console push readers), runtime metrics from
 * `@opentelemetry/instrumentation-runtime-node` plus the process fd count and memory, and the
 * tracer provider when a trace exporter is configured. Everything it starts is instrumentation's
 * own (created inside `tracker.untracked()`).
 */
export function startSdk(o: SdkOptions): Sdk {
  return o.tracker.untracked(() => buildSdk(o));
}

function buildSdk({ config, tracker, lifetimes, attach, registerGlobals }: SdkOptions): Sdk {
  const resource = buildResource(config);
  const metricProducers = lifetimes ? [lifetimes] : [];
  const agents = (protocol: string) => ownAgent(tracker, protocol);
  const compression = config.otlp.compression as never;

  let prometheus: PrometheusExporter | undefined;
  const readers: IMetricReader[] = [];
  for (const name of config.metricsExporters) {
    if (name === 'prometheus') {
      prometheus = new PrometheusExporter({ preventServerStart: true, metricProducers });
      readers.push(prometheus);
    } else {
      const exporter =
        name === 'otlp'
          ? new (otlpMetrics().OTLPMetricExporter)({
              url: config.otlp.metricsUrl,
              headers: { ...config.otlp.headers, ...config.otlp.metricsHeaders },
              timeoutMillis: config.otlp.timeoutMs,
              compression,
              httpAgentOptions: agents,
            })
          : new ConsoleMetricExporter();
      readers.push(
        new PeriodicExportingMetricReader({
          exporter,
          exportIntervalMillis: config.metricIntervalMs,
          exportTimeoutMillis: config.metricTimeoutMs,
          metricProducers,
        }),
      );
    }
  }

  let meterProvider: MeterProvider | undefined;
  let runtime: RuntimeNodeInstrumentation | undefined;
  if (readers.length > 0) {
    meterProvider = new MeterProvider({ resource, readers });
    attach(meterProvider);
    // Constructed after the provider exists: the instrumentation creates its instruments on
    // setMeterProvider() only (not on the global provider first).
    runtime = new RuntimeNodeInstrumentation({ monitoringPrecision: 10 });
    runtime.setMeterProvider(meterProvider);
    addProcessMetrics(meterProvider);
  }

  let tracerProvider: TracerProvider | undefined;
  if (config.tracesExporters.length > 0) {
    const { BatchSpanProcessor, ConsoleSpanExporter, TracerProvider } = traceSdk();
    const spanProcessors: SpanProcessor[] = config.tracesExporters.map(
      (name) =>
        new BatchSpanProcessor({
          exporter:
            name === 'otlp'
              ? new (otlpTraces().OTLPTraceExporter)({
                  url: config.otlp.tracesUrl,
                  headers: { ...config.otlp.headers, ...config.otlp.tracesHeaders },
                  timeoutMillis: config.otlp.timeoutMs,
                  compression,
                  httpAgentOptions: agents,
                })
              : new ConsoleSpanExporter(),
        }),
    );
    tracerProvider = new TracerProvider({ resource, spanProcessors });
    if (registerGlobals) {
      const { AsyncLocalStorageContextManager } = contextManager();
      context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
      trace.setGlobalTracerProvider(tracerProvider);
    }
  }

  const withTimeout = (work: Promise<unknown>, ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      timer.unref();
      work.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        () => {
          clearTimeout(timer);
          resolve();
        },
      );
    });

  let stopped: Promise<void> | undefined;
  return {
    meterProvider,
    tracerProvider,
    prometheus: prometheus ? prometheusHandler(prometheus) : undefined,
    flush(timeoutMs) {
      return withTimeout(
        Promise.all([
          meterProvider?.forceFlush({ timeoutMillis: timeoutMs }),
          tracerProvider?.forceFlush({ timeoutMillis: timeoutMs }),
        ]),
        timeoutMs,
      );
    },
    shutdown(timeoutMs) {
      stopped ??= withTimeout(
        (async () => {
          runtime?.disable();
          await Promise.all([
            meterProvider?.shutdown({ timeoutMillis: timeoutMs }),
            tracerProvider?.shutdown(),
          ]);
          if (registerGlobals && tracerProvider) {
            trace.disable();
            context.disable();
          }
        })(),
        timeoutMs,
      );
      return stopped;
    },
  };
}

/**
 * Prometheus names for the semantic-convention metrics whose plain translation breaks Prometheus
 * naming rules (a `_count` suffix is reserved for histograms and summaries; promtool warns).
 */
const PROMETHEUS_RENAMES: [string, string][] = [
  ['process_unix_file_descriptor_count', 'process_open_fds'],
];
const RESERVED_SUFFIX = /_(total|count|sum|bucket)$/;
const METRIC_NAME = /^(# (?:HELP|TYPE) )?([a-zA-Z_:][a-zA-Z0-9_:]*)/gm;

/**
 * Makes an exposition pass `promtool check metrics`: the renames above, and for gauges (libp2p
 * registers some, like `libp2p_protocol_streams_total`) a reserved suffix is dropped. Only the
 * Prometheus text changes; OTLP keeps every name as it was registered.
 */
export function promtoolSafe(text: string): string {
  const families = new Set<string>();
  const renames = new Map<string, string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    families.add(name!);
    if (type === 'counter' || type === 'histogram' || type === 'summary') continue;
    const suffix = RESERVED_SUFFIX.exec(name!);
    if (suffix) renames.set(name!, name!.slice(0, -suffix[0].length));
  }
  for (const [from, to] of PROMETHEUS_RENAMES) if (families.has(from)) renames.set(from, to);
  for (const [from, to] of renames) if (families.has(to)) renames.delete(from);
  if (renames.size === 0) return text;
  return text.replace(METRIC_NAME, (whole, prefix: string | undefined, name: string) => {
    const to = renames.get(name);
    return to === undefined ? whole : `${prefix ?? ''}${to}`;
  });
}

/** Answers a scrape: the exporter's collection, serialized, made promtool-clean. */
function prometheusHandler(exporter: PrometheusExporter) {
  const serializer = new PrometheusSerializer();
  return (_req: IncomingMessage, res: ServerResponse) => {
    exporter.collect().then(
      ({ resourceMetrics, errors }) => {
        if (errors.length > 0) diag.error('trustflow: metrics collection errors', ...errors);
        const text = promtoolSafe(serializer.serialize(resourceMetrics));
        res.statusCode = 200;
        res.setHeader('content-type', 'text/plain; version=0.0.4; charset=utf-8');
        res.end(text);
      },
      (error: unknown) => {
        res.statusCode = 500;
        res.end(`# failed to collect metrics: ${String(error)}\n`);
      },
    );
  };
}

/**
 * `process.unix.file_descriptor.count` and `process.memory.usage`, which the runtime
 * instrumentation does not provide and which are the first signs of the leaks this project is
 * about (semantic-convention names).
 */
function addProcessMetrics(provider: MeterProvider): void {
  const meter = provider.getMeter('@trustflow/instrument');
  const fds = meter.createObservableUpDownCounter('process.unix.file_descriptor.count', {
    unit: '{file_descriptor}',
    description: 'Open file descriptors of the process (from /proc/self/fd).',
  });
  const memory = meter.createObservableUpDownCounter('process.memory.usage', {
    unit: 'By',
    description: 'Resident set size of the process.',
  });
  meter.addBatchObservableCallback(
    (result) => {
      const count = openFdCount();
      if (count !== null) result.observe(fds, count);
      result.observe(memory, process.memoryUsage.rss());
    },
    [fds, memory],
  );
}

import type { MeterProvider, TracerProvider } from '@opentelemetry/api';
import type { Report, ReportOptions, ResourceTracker, StackMode } from '@trustflow/core';

/** Names accepted in `TRUSTFLOW_PLUGINS` and `InstrumentOptions.plugins`. */
export type PluginName = 'fs' | 'net' | 'libp2p' | 'handles' | 'async-hooks' | 'buffer-pool';

export type MetricsExporterName = 'prometheus' | 'otlp' | 'console';
export type TracesExporterName = 'otlp' | 'console';

/** When the leak report is written: at exit, on SIGUSR2, or never. */
export type ReportMode = 'exit' | 'signal' | 'off';

/**
 * Options of `instrument()`. Every option left out is read from the environment, exactly as the
 * preload reads it (see docs/configuration.md); an option given here wins over the environment.
 */
export interface InstrumentOptions {
  /** `service.name` of the telemetry. Env: `OTEL_SERVICE_NAME`. */
  serviceName?: string;
  /**
   * Plugins to enable. Env: `TRUSTFLOW_PLUGINS`. Default: every plugin whose target exists,
   * except `async-hooks` (named explicitly, it replaces `handles` for the types both track).
   */
  plugins?: PluginName[];
  /** Creation stacks. Env: `TRUSTFLOW_STACKS`. Default `sampled`. */
  stacks?: StackMode;
  /** Open longer than this (ms) and idle for `idleAfterMs` is `stale`. Env: `TRUSTFLOW_STALE_AFTER`. Default 30 min. */
  staleAfterMs?: number;
  /** Env: `TRUSTFLOW_IDLE_AFTER`. Default 5 min. */
  idleAfterMs?: number;
  /** Cap on live tracked resources. Env: `TRUSTFLOW_MAX_TRACKED`. Default 100 000. */
  maxTracked?: number;
  /** Env: `TRUSTFLOW_REPORT`. Default `off`. */
  report?: ReportMode;
  /** JSON report file (`%p` becomes the pid). Env: `TRUSTFLOW_REPORT_FILE`. Default: text to stderr. */
  reportFile?: string;
  /** Metrics exporters; `[]` for none. Env: `OTEL_METRICS_EXPORTER`. Default `['prometheus']`. */
  metricsExporters?: MetricsExporterName[];
  /** Trace exporters; `[]` for none. Env: `OTEL_TRACES_EXPORTER`. Default none. */
  tracesExporters?: TracesExporterName[];
  /** Prometheus endpoint host. Env: `OTEL_EXPORTER_PROMETHEUS_HOST`. Default `127.0.0.1`. */
  prometheusHost?: string;
  /** Prometheus endpoint port (0: any free port). Env: `OTEL_EXPORTER_PROMETHEUS_PORT`. Default 9464. */
  prometheusPort?: number;
  /** Serve the JSON report at `/trustflow/report` (loopback clients only). Env: `TRUSTFLOW_REPORT_ENDPOINT`. Default true. */
  reportEndpoint?: boolean;
  /**
   * Handle SIGTERM/SIGINT (bounded flush, exit report, then the signal's default action, only
   * when the application has no listener of its own) and SIGUSR2 (`report: 'signal'`). Default
   * true.
   */
  signals?: boolean;
  /**
   * Your own meter provider (an application that set up its OpenTelemetry SDK already): the
   * Trustflow metrics go to it, and no metrics exporter or endpoint of ours is started.
   */
  meterProvider?: MeterProvider;
  /** Your own tracer provider: lifetime spans go to it; no trace exporter of ours is started. */
  tracerProvider?: TracerProvider;
  /** Environment to read unset options from. Default `process.env`. */
  env?: Record<string, string | undefined>;
}

/** What `instrument()` returns. */
export interface Instrumentation {
  /** The tracker every plugin reports to (also the process-wide default tracker). */
  readonly tracker: ResourceTracker;
  /** Settles when the OpenTelemetry SDK and its exporters are set up (never rejects); asking for it starts the set-up at once. */
  readonly ready: Promise<void>;
  /** The Prometheus endpoint's URL once it listens, else undefined. */
  readonly metricsUrl: string | undefined;
  /** The leak report now (the contract schema `trustflow.report/v1`). */
  report(options?: ReportOptions): Report;
  /** Flushes and stops telemetry, disables the plugins, removes every handler. Idempotent. */
  shutdown(): Promise<void>;
}

import { existsSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createNoopMeter,
  type DiagLogger,
  DiagLogLevel,
  diag,
  type Meter,
  type MeterProvider,
  metrics,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import {
  asyncHooksAvoidPromises,
  createAsyncHooksSource,
  createHandlesSource,
  createResourceTracker,
  DEFAULT_ASYNC_TYPES,
  type LifetimeProducer,
  lifetimeProducer,
  type Report,
  type ReportOptions,
  type ResourceTracker,
  setDefaultTracker,
  type TrustflowPlugin,
} from '@trustflow/core';
import * as fsPackage from '@trustflow/plugin-fs';
import * as netPackage from '@trustflow/plugin-net';
import type { Instrumentation, PluginName } from '../types.js';
import type { Config, LogLevel } from './config.js';
import { DeferredMeterProvider } from './deferred-meter.js';
import { type Endpoint, METRICS_PATH, REPORT_PATH, startEndpoint } from './endpoint.js';
import {
  hasModuleHooks,
  installLibp2pHook,
  type Libp2pHook,
  libp2pInstalled,
  type Resolved,
} from './libp2p-hook.js';
import { renderReport } from './report-text.js';
import type { Sdk } from './sdk.js';
import { type ActiveInstrumentation, setActiveInstrumentation } from './state.js';

/** This package's dist/ (or src/) folder: its frames are instrumentation, never a site. */
const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));
/** Longest a termination signal waits for telemetry to be flushed before the process ends. */
export const SIGNAL_FLUSH_MS = 2000;
const TERMINATION_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
const REPORT_SIGNAL = 'SIGUSR2';

/** Handle types the fs and net plugins track under their own kinds (so nothing counts twice). */
const FS_HANDLE_TYPES = ['FILEHANDLE', 'FSEVENTWRAP', 'STATWATCHER'];
const NET_HANDLE_TYPES = ['TCPWRAP', 'TCPSERVERWRAP', 'PIPEWRAP', 'PIPESERVERWRAP'];
/** What core's handles source tracks (as async-hooks types). */
const HANDLES_TYPES = ['Timeout', 'PROCESSWRAP', 'WORKER', 'UDPWRAP'];

type PluginFactory = (init?: object) => TrustflowPlugin;

function factory(module: object, name: string): PluginFactory | undefined {
  const candidate = (module as Record<string, unknown>)[name];
  return typeof candidate === 'function' ? (candidate as PluginFactory) : undefined;
}

const LEVELS: Record<LogLevel, DiagLogLevel> = {
  none: DiagLogLevel.NONE,
  error: DiagLogLevel.ERROR,
  warn: DiagLogLevel.WARN,
  info: DiagLogLevel.INFO,
  debug: DiagLogLevel.DEBUG,
  verbose: DiagLogLevel.VERBOSE,
  all: DiagLogLevel.ALL,
};

function stderrLine(line: string): void {
  try {
    process.stderr.write(`${line}\n`);
  } catch {
    // nowhere left to say it
  }
}

/** One readable line per diag message: errors by their message, objects as JSON, no stacks. */
function describeArg(value: unknown): string {
  if (typeof value === 'string') return value.split('\n', 1)[0]!;
  if (
    value instanceof Error ||
    (typeof value === 'object' && value !== null && 'message' in value)
  ) {
    return String((value as { message: unknown }).message);
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function diagLogger(): DiagLogger {
  const write =
    (level: string) =>
    (...args: unknown[]) =>
      stderrLine(`trustflow: otel ${level}: ${args.map(describeArg).filter(Boolean).join(' ')}`);
  return {
    error: write('error'),
    warn: write('warn'),
    info: write('info'),
    debug: write('debug'),
    verbose: write('verbose'),
  };
}

/** The application's own OpenTelemetry providers (`instrument()` options). */
export interface Providers {
  meterProvider?: MeterProvider;
  tracerProvider?: TracerProvider;
}

export interface StartOptions {
  /** Preload: the SDK loads in the first event-loop turn without keeping the process alive. */
  mode: 'preload' | 'programmatic';
}

/** The running instrumentation: tracker, plugins, SDK, endpoint, signal and exit handling. */
export class Runtime implements Instrumentation, ActiveInstrumentation {
  readonly tracker: ResourceTracker;
  private readonly settled: Promise<void>;
  private readonly sdkSettled: Promise<void>;
  private resolveSdk!: () => void;
  private started = false;
  readonly plugins: string[] = [];
  readonly notes: string[] = [];
  private readonly meterProvider: DeferredMeterProvider | undefined;
  /** The tracker's lifetime histogram for our readers (see core's lifetimeProducer()). */
  private lifetimes: LifetimeProducer | undefined;
  private readonly enabledPlugins: TrustflowPlugin[] = [];
  private readonly cleanups: (() => void)[] = [];
  private readonly errorsLogged = new Set<string>();
  private endpoint: Endpoint | undefined;
  private sdk: Sdk | undefined;
  private sdkLoading: Promise<void> | undefined;
  private resolveReady!: () => void;
  private reportWritten = false;
  private globalMeterProvider = false;
  private terminating = false;
  private stopped: Promise<void> | undefined;
  private libp2pHook: Libp2pHook | undefined;

  constructor(
    readonly config: Config,
    private readonly mode: StartOptions['mode'],
    private readonly own: Providers = {},
  ) {
    this.settled = new Promise((resolve) => {
      this.resolveReady = resolve;
    });
    this.sdkSettled = new Promise((resolve) => {
      this.resolveSdk = resolve;
    });
    // An application that brings its own providers keeps its own diag logger too.
    if (config.logLevel !== 'none' && !own.meterProvider && !own.tracerProvider) {
      diag.setLogger(diagLogger(), {
        logLevel: LEVELS[config.logLevel],
        suppressOverrideMessage: true,
      });
    }
    if (config.metricsExporters.length > 0) {
      this.meterProvider = new DeferredMeterProvider();
      // Zero-code: metrics the application records through the OTel API go to the same exporters.
      this.globalMeterProvider = metrics.setGlobalMeterProvider(this.meterProvider);
    }
    const tracesOn = config.tracesExporters.length > 0 || own.tracerProvider !== undefined;
    this.tracker = createResourceTracker({
      stacks: config.stacks,
      staleAfterMs: config.staleAfterMs,
      idleAfterMs: config.idleAfterMs,
      maxTracked: config.maxTracked,
      meter: this.meterFor('@trustflow/core') ?? createNoopMeter(),
      spans: tracesOn,
      tracer: this.tracerFor('@trustflow/core'),
      internalPaths: [PACKAGE_DIR],
    });
    // Our SDK will own the readers: lifetimes go to them through a MetricProducer (cheaper per
    // release than the SDK's histogram); with the application's own meter provider, through it.
    if (this.meterProvider !== undefined && !own.meterProvider) {
      try {
        this.lifetimes = lifetimeProducer(this.tracker);
      } catch (error) {
        this.reportError('collecting lifetimes in the tracker', error);
      }
    }
    this.tracker.addReportSection('instrument', () => this.describe());
    this.enablePlugins();
    this.installProcessHandlers();
    setActiveInstrumentation(this);
    this.scheduleStart();
  }

  /**
   * Settles when the SDK is set up. Asking for it starts loading the SDK now (the preload would
   * otherwise wait for the first event-loop turn, without keeping the process alive).
   */
  get ready(): Promise<void> {
    this.start();
    return this.settled;
  }

  get metricsUrl(): string | undefined {
    const url = this.endpoint?.url;
    return url ? `${url}${METRICS_PATH}` : undefined;
  }

  meterFor(scope: string): Meter | undefined {
    return (this.own.meterProvider ?? this.meterProvider)?.getMeter(scope);
  }

  tracerFor(scope: string): Tracer | undefined {
    if (this.own.tracerProvider) return this.own.tracerProvider.getTracer(scope);
    return this.config.tracesExporters.length > 0 ? trace.getTracer(scope) : undefined;
  }

  reportError(where: string, error: unknown): void {
    if (this.errorsLogged.has(where) || this.errorsLogged.size > 100) return;
    this.errorsLogged.add(where);
    diag.error(
      `@trustflow/instrument: error caught in ${where} (reported once): ${error instanceof Error ? error.message : String(error)}`,
    );
  }

  report(options?: ReportOptions): Report {
    return this.tracker.report(options);
  }

  private describe(): Record<string, unknown> {
    return {
      node: process.version,
      plugins: this.plugins,
      metrics: this.metricsUrl ?? null,
      report:
        this.endpoint?.url && this.config.reportEndpoint
          ? `${this.endpoint.url}${REPORT_PATH}`
          : null,
      notes: this.notes,
    };
  }

  // --- plugins ---

  private enablePlugins(): void {
    const explicit = this.config.plugins;
    const wanted = (name: PluginName) => explicit === undefined || explicit.includes(name);
    const fsPlugin = factory(fsPackage, 'fsPlugin');
    const netPlugin = factory(netPackage, 'netPlugin');
    const host = (scope: string) => ({
      tracker: this.tracker,
      meter: this.meterFor(scope) ?? createNoopMeter(),
      ...(this.tracerFor(scope) ? { tracer: this.tracerFor(scope) } : {}),
    });
    const enable = (name: string, plugin: TrustflowPlugin, scope: string) => {
      try {
        plugin.enable(host(scope));
        if (plugin.enabled) {
          this.enabledPlugins.push(plugin);
          this.plugins.push(name);
        }
      } catch (error) {
        this.reportError(`enabling plugin ${name}`, error);
      }
    };
    const covered = new Set<string>();
    if (wanted('fs')) {
      if (fsPlugin) {
        enable('fs', fsPlugin(), '@trustflow/plugin-fs');
        for (const t of FS_HANDLE_TYPES) covered.add(t);
      } else if (explicit) {
        stderrLine('trustflow: plugin fs is not available in this install (skipped)');
      }
    }
    if (wanted('net')) {
      if (netPlugin) {
        enable('net', netPlugin(), '@trustflow/plugin-net');
        for (const t of NET_HANDLE_TYPES) covered.add(t);
      } else if (explicit) {
        stderrLine('trustflow: plugin net is not available in this install (skipped)');
      }
    }
    // The async-hooks source is only used when named: its hook runs for every async resource
    // (each nextTick, write, lookup...), which costs busy services several percent. Named, it
    // tracks every handle type, timers included, so the handles source then stays off.
    const asyncHooks = explicit?.includes('async-hooks') === true;
    if (wanted('handles') && !asyncHooks) {
      enable('handles', createHandlesSource(), '@trustflow/core');
      for (const t of HANDLES_TYPES) covered.add(t);
    }
    if (asyncHooks) {
      // That source tracks pipes and TTYs: the stdio streams are created now, before it, so they
      // are never the application's. (Nothing else needs them: creating them costs a program
      // that never prints about 1.5 ms.)
      this.tracker.untracked(() => {
        void process.stdout;
        void process.stderr;
      });
      const supported = asyncHooksAvoidPromises();
      const source = createAsyncHooksSource({
        types: DEFAULT_ASYNC_TYPES.filter((t) => !covered.has(t)),
        // Asked for by name on a Node without trackPromises: false: the user accepts the cost.
        forceWithPromiseHooks: !supported,
      });
      enable('async-hooks', source, '@trustflow/core');
    }
    if (wanted('buffer-pool')) {
      // Pools (and libp2pMetrics()) created without a tracker use the process-wide default one.
      this.cleanups.push(setDefaultTracker(this.tracker));
      this.plugins.push('buffer-pool');
    }
    if (wanted('libp2p')) {
      const main = process.argv[1] ? dirname(resolvePath(process.argv[1])) : process.cwd();
      const present = libp2pInstalled([main, process.cwd()], existsSync);
      if (explicit?.includes('libp2p') || present) {
        if (hasModuleHooks()) {
          const hook = installLibp2pHook();
          if (hook) {
            this.libp2pHook = hook;
            this.cleanups.push(() => {
              this.libp2pHook = undefined;
              hook.uninstall();
            });
            this.plugins.push('libp2p');
          }
        } else {
          this.notes.push(
            'libp2p nodes are not instrumented automatically: this Node has no module.registerHooks; pass metrics: libp2pMetrics() to createLibp2p',
          );
        }
      }
    }
  }

  /**
   * The module resolution during which the lazy preload started this runtime (register.ts): our
   * module hooks were registered inside it, too late to see it. Gives the plugins waiting for a
   * builtin their turn (by asking for it through process.getBuiltinModule, which core watches)
   * and returns what the libp2p hook makes of it.
   */
  lateResolve(specifier: string, result: Resolved): Resolved {
    if (result.url.startsWith('node:')) {
      try {
        process.getBuiltinModule(result.url);
      } catch (error) {
        this.reportError('patching a builtin at start', error);
      }
    }
    return this.libp2pHook?.redirect(specifier, result) ?? result;
  }

  // --- metrics endpoint and SDK ---

  private startEndpoint(): void {
    if (!this.config.metricsExporters.includes('prometheus')) return;
    this.endpoint = startEndpoint({
      host: this.config.prometheusHost,
      port: this.config.prometheusPort,
      reportEndpoint: this.config.reportEndpoint,
      tracker: this.tracker,
      metrics: () => this.sdk?.prometheus,
      metricsReady: this.sdkSettled,
      report: (open) => (open ? this.openReport() : this.tracker.report()),
      warn: stderrLine,
      reportError: (where, error) => this.reportError(where, error),
    });
  }

  /** Starts loading the SDK (idempotent); settles when it is up or failed. */
  loadSdk(): Promise<void> {
    if (this.sdkLoading) return this.sdkLoading;
    const needed =
      this.config.metricsExporters.length > 0 || this.config.tracesExporters.length > 0;
    if (!needed || this.stopped) {
      this.resolveSdk();
      this.sdkLoading = Promise.resolve();
      return this.sdkLoading;
    }
    this.sdkLoading = import('./sdk.js')
      .then(({ startSdk }) => {
        if (this.stopped) return;
        this.sdk = startSdk({
          config: this.config,
          tracker: this.tracker,
          lifetimes: this.lifetimes,
          attach: (provider) => this.meterProvider?.attach(provider),
          registerGlobals: true,
        });
      })
      .catch((error) => this.reportError('starting the OpenTelemetry SDK', error))
      .finally(() => this.resolveSdk());
    return this.sdkLoading;
  }

  /**
   * Starts the endpoint and the SDK (idempotent). Not at construction: node:http and the SDK
   * would add their loading time before the application's first line.
   */
  private start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.startEndpoint();
    void Promise.all([this.loadSdk(), this.endpoint?.listening]).then(() => this.resolveReady());
  }

  private scheduleStart(): void {
    this.tracker.untracked(() => {
      const timer = setTimeout(() => this.start(), 0);
      // In the preload, a program that ends before its first event-loop turn starts nothing. An
      // unref'd timer, not an unref'd setImmediate: that one only runs once something else wakes
      // the event loop (a server nobody connects to, a program waiting on a long timer: the
      // endpoint would not listen until then). An unref'd timer still bounds the loop's wait.
      if (this.mode === 'preload') timer.unref();
      this.cleanups.push(() => clearTimeout(timer));
    });
  }

  private get pushing(): boolean {
    return (
      this.config.tracesExporters.length > 0 ||
      this.config.metricsExporters.some((e) => e !== 'prometheus')
    );
  }

  // --- signals, exit, reports ---

  private installProcessHandlers(): void {
    const { config } = this;
    this.tracker.untracked(() => {
      if (config.report === 'exit') {
        const onExit = () => this.writeReport();
        process.on('exit', onExit);
        this.cleanups.push(() => process.removeListener('exit', onExit));
      }
      if (this.pushing) {
        let flushed = false;
        const onBeforeExit = () => {
          if (flushed) return;
          flushed = true;
          // The loop is empty: push what the exporters hold. A program that ended before its
          // first event-loop turn never loaded the SDK and has nothing to push: it just ends.
          if (this.sdkLoading) void this.sdkLoading.then(() => this.sdk?.flush(SIGNAL_FLUSH_MS));
        };
        process.on('beforeExit', onBeforeExit);
        this.cleanups.push(() => process.removeListener('beforeExit', onBeforeExit));
      }
      if (!config.signals) return;
      if (config.report === 'signal') {
        const onReportSignal = () => this.writeReport();
        process.on(REPORT_SIGNAL, onReportSignal);
        this.cleanups.push(() => process.removeListener(REPORT_SIGNAL, onReportSignal));
      }
      if (config.report === 'exit' || this.pushing) {
        for (const signal of TERMINATION_SIGNALS) {
          const listener = () => this.onTerminationSignal(signal, listener);
          process.on(signal, listener);
          this.cleanups.push(() => process.removeListener(signal, listener));
        }
      }
    });
  }

  /**
   * A termination signal. If the application listens for it too, it decides what happens (we only
   * start a flush). Otherwise the process must still end the way it would without us: write the
   * exit report, flush telemetry for at most SIGNAL_FLUSH_MS, then re-raise the signal with our
   * listener removed, so the default action ends the process (a second signal ends it at once).
   */
  private onTerminationSignal(signal: NodeJS.Signals, listener: () => void): void {
    const others = process.listeners(signal).filter((l) => l !== listener);
    if (others.length > 0) {
      if (this.sdk) void this.sdk.flush(SIGNAL_FLUSH_MS);
      return;
    }
    const reraise = () => {
      process.removeListener(signal, listener);
      process.kill(process.pid, signal);
    };
    if (this.terminating) {
      reraise();
      return;
    }
    this.terminating = true;
    if (this.config.report === 'exit') this.writeReport();
    // Nothing to push: no push exporter, or the SDK was never started (nothing was recorded).
    const loading = this.sdkLoading;
    if (!this.pushing || loading === undefined) {
      reraise();
      return;
    }
    // Ref'd on purpose: it is what guarantees the end if the flush never settles.
    const deadline = setTimeout(reraise, SIGNAL_FLUSH_MS + 100);
    void loading
      .then(() => this.sdk?.shutdown(SIGNAL_FLUSH_MS))
      .finally(() => {
        clearTimeout(deadline);
        reraise();
      });
  }

  /**
   * The report with every open resource, less the async handles that were unref'd: they could not
   * keep the process alive, and libraries leave such housekeeping timers pending by design (they
   * are counted in `extra.instrument.unrefLeftOut`). Leaks by other reasons are all kept.
   */
  openReport(): Report {
    const report = this.tracker.report({ includeOpen: true });
    let unref = 0;
    report.leaks = report.leaks.filter((group) => {
      if (group.reason !== 'open-at-exit' || group.sample.attributes.hasRef !== false) return true;
      unref += group.count;
      return false;
    });
    const section = report.extra?.instrument as Record<string, unknown> | undefined;
    if (section) section.unrefLeftOut = unref;
    return report;
  }

  /** Writes the report (every open resource included) to the report file, or as text to stderr. */
  writeReport(): void {
    const exiting = this.config.report === 'exit';
    if (exiting && this.reportWritten) return;
    this.reportWritten = true;
    try {
      this.tracker.untracked(() => {
        const report = this.openReport();
        const file = this.config.reportFile?.replaceAll('%p', String(process.pid));
        if (file) {
          const tmp = `${file}.${process.pid}.tmp`;
          writeFileSync(tmp, `${JSON.stringify(report, null, 2)}\n`);
          renameSync(tmp, file);
          return;
        }
        writeSync(2, renderReport(report));
      });
    } catch (error) {
      stderrLine(
        `trustflow: could not write the leak report${this.config.reportFile ? ` to ${this.config.reportFile}` : ''}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  shutdown(): Promise<void> {
    this.stopped ??= (async () => {
      for (const cleanup of this.cleanups.splice(0).reverse()) {
        try {
          cleanup();
        } catch (error) {
          this.reportError('shutdown', error);
        }
      }
      setActiveInstrumentation(undefined);
      if (this.globalMeterProvider) metrics.disable();
      await this.endpoint?.close();
      await this.sdkLoading;
      await this.sdk?.shutdown(SIGNAL_FLUSH_MS);
      for (const plugin of this.enabledPlugins.splice(0).reverse()) plugin.disable();
      this.tracker.shutdown();
      this.resolveSdk();
      this.resolveReady();
    })();
    return this.stopped;
  }
}

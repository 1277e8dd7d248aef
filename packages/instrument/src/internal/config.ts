import type { StackMode } from '@trustflow/core';
import type {
  InstrumentOptions,
  MetricsExporterName,
  PluginName,
  ReportMode,
  TracesExporterName,
} from '../types.js';

/** Everything the instrumentation needs, after defaults and validation. */
export interface Config {
  serviceName: string | undefined;
  /** Undefined: every plugin whose target exists. */
  plugins: PluginName[] | undefined;
  stacks: StackMode;
  staleAfterMs: number;
  idleAfterMs: number;
  maxTracked: number;
  report: ReportMode;
  reportFile: string | undefined;
  metricsExporters: MetricsExporterName[];
  tracesExporters: TracesExporterName[];
  prometheusHost: string;
  prometheusPort: number;
  reportEndpoint: boolean;
  signals: boolean;
  otlp: {
    metricsUrl: string;
    tracesUrl: string;
    headers: Record<string, string>;
    metricsHeaders: Record<string, string>;
    tracesHeaders: Record<string, string>;
    timeoutMs: number;
    compression: 'gzip' | 'none';
  };
  metricIntervalMs: number;
  metricTimeoutMs: number;
  logLevel: LogLevel;
}

export type LogLevel = 'none' | 'error' | 'warn' | 'info' | 'debug' | 'verbose' | 'all';

export const PLUGIN_NAMES: readonly PluginName[] = [
  'fs',
  'net',
  'libp2p',
  'handles',
  'async-hooks',
  'buffer-pool',
];

const DEFAULT_OTLP_BASE = 'http://localhost:4318';

/** The variables the preload reads (docs/configuration.md lists them with their defaults). */
export const ENV_VARIABLES = [
  'TRUSTFLOW_DISABLED',
  'TRUSTFLOW_PLUGINS',
  'TRUSTFLOW_STACKS',
  'TRUSTFLOW_STALE_AFTER',
  'TRUSTFLOW_IDLE_AFTER',
  'TRUSTFLOW_MAX_TRACKED',
  'TRUSTFLOW_REPORT',
  'TRUSTFLOW_REPORT_FILE',
  'TRUSTFLOW_REPORT_ENDPOINT',
  'OTEL_SDK_DISABLED',
  'OTEL_SERVICE_NAME',
  'OTEL_METRICS_EXPORTER',
  'OTEL_TRACES_EXPORTER',
  'OTEL_EXPORTER_PROMETHEUS_HOST',
  'OTEL_EXPORTER_PROMETHEUS_PORT',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_EXPORTER_OTLP_HEADERS',
  'OTEL_EXPORTER_OTLP_METRICS_HEADERS',
  'OTEL_EXPORTER_OTLP_TRACES_HEADERS',
  'OTEL_EXPORTER_OTLP_TIMEOUT',
  'OTEL_EXPORTER_OTLP_COMPRESSION',
  'OTEL_EXPORTER_OTLP_PROTOCOL',
  'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL',
  'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
  'OTEL_METRIC_EXPORT_INTERVAL',
  'OTEL_METRIC_EXPORT_TIMEOUT',
  'OTEL_LOG_LEVEL',
] as const;

type Env = Record<string, string | undefined>;

/** True when `TRUSTFLOW_DISABLED` asks for nothing to load (checked before anything is imported). */
export function isDisabled(env: Env): boolean {
  return DISABLED_VALUES.includes(env.TRUSTFLOW_DISABLED?.trim().toLowerCase() ?? '');
}

/** The values of TRUSTFLOW_DISABLED that disable (register.ts repeats them: it imports nothing). */
export const DISABLED_VALUES: readonly string[] = ['1', 'true', 'on', 'yes'];

class Reader {
  readonly warnings: string[] = [];
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    if (value === undefined) return undefined;
    const trimmed = value.trim();
    return trimmed === '' ? undefined : trimmed;
  }

  /** One line: the variable, its bad value, what was expected and the default used instead. */
  bad(name: string, value: string, expected: string, fallback: string): void {
    this.warnings.push(
      `trustflow: ${name}=${JSON.stringify(value)} is not valid (${expected}); using the default: ${fallback}`,
    );
  }

  choice<T extends string>(name: string, choices: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lower = value.toLowerCase() as T;
    if (choices.includes(lower)) return lower;
    this.bad(name, value, `one of ${choices.join(', ')}`, fallback);
    return fallback;
  }

  bool(name: string, fallback: boolean): boolean {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lower = value.toLowerCase();
    if (['1', 'true', 'on', 'yes'].includes(lower)) return true;
    if (['0', 'false', 'off', 'no'].includes(lower)) return false;
    this.bad(name, value, 'true/false, on/off or 1/0', fallback ? 'on' : 'off');
    return fallback;
  }

  integer(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
    if (Number.isSafeInteger(n) && n >= min && n <= max) return n;
    this.bad(
      name,
      value,
      max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`,
      String(fallback),
    );
    return fallback;
  }

  duration(name: string, fallbackMs: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallbackMs;
    const ms = parseDuration(value);
    if (ms !== undefined) return ms;
    this.bad(name, value, 'a duration like 90s, 30m, 1h30m or 500ms', formatDuration(fallbackMs));
    return fallbackMs;
  }

  /** A comma list of exporter names; `none` alone means no exporter. */
  exporters<T extends string>(name: string, known: readonly T[], fallback: T[]): T[] {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const items = value
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean);
    if (items.length === 1 && items[0] === 'none') return [];
    const unknown = items.filter((i) => !known.includes(i as T));
    if (items.length === 0 || unknown.length > 0) {
      this.bad(
        name,
        value,
        `a comma list of ${known.join(', ')}, or none`,
        fallback.length ? fallback.join(',') : 'none',
      );
      return fallback;
    }
    return [...new Set(items as T[])];
  }

  url(name: string, fallback: string): string {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    try {
      const url = new URL(value);
      if (url.protocol === 'http:' || url.protocol === 'https:') return url.href;
    } catch {
      // reported below
    }
    this.bad(name, value, 'an http:// or https:// URL', fallback);
    return fallback;
  }

  headers(name: string): Record<string, string> {
    const value = this.raw(name);
    if (value === undefined) return {};
    const headers: Record<string, string> = {};
    for (const part of value.split(',')) {
      if (part.trim() === '') continue;
      const at = part.indexOf('=');
      const key = at > 0 ? safeDecode(part.slice(0, at).trim()) : undefined;
      const val = at > 0 ? safeDecode(part.slice(at + 1).trim()) : undefined;
      if (!key || val === undefined || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(key)) {
        this.bad(name, value, 'key=value pairs separated by commas', 'no extra headers');
        return {};
      }
      headers[key] = val;
    }
    return headers;
  }
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** `500ms`, `90s`, `30m`, `1h30m`, `2d`; a bare integer is milliseconds. Undefined when invalid. */
export function parseDuration(text: string): number | undefined {
  const value = text.trim().toLowerCase();
  if (/^\d+$/.test(value)) return Number(value);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(value); m !== null; m = re.exec(value)) {
    total += Number(m[1]) * (UNITS[m[2]!] ?? 0);
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== value.length || !Number.isFinite(total)) return undefined;
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function withPath(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}${path}`;
}

/**
 * Reads the configuration from the environment, with `options` taking precedence. Bad values
 * become warnings (one line each) and their defaults; nothing here throws for a bad value.
 */
export function readConfig(
  options: InstrumentOptions = {},
  env: Env = options.env ?? process.env,
): { config: Config; warnings: string[] } {
  const r = new Reader(env);
  r.bool('TRUSTFLOW_DISABLED', false); // only checked here: a disabled preload never gets this far
  const sdkDisabled = r.bool('OTEL_SDK_DISABLED', false);

  let plugins: PluginName[] | undefined;
  const pluginsValue = r.raw('TRUSTFLOW_PLUGINS');
  if (pluginsValue !== undefined) {
    const items = pluginsValue
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean);
    if (items.length === 1 && items[0] === 'none') {
      plugins = [];
    } else {
      const unknown = items.filter((i) => !PLUGIN_NAMES.includes(i as PluginName));
      if (items.length === 0 || unknown.length > 0) {
        r.bad(
          'TRUSTFLOW_PLUGINS',
          pluginsValue,
          `a comma list of ${PLUGIN_NAMES.join(', ')}, or none`,
          'every plugin whose target exists',
        );
      } else {
        plugins = [...new Set(items as PluginName[])];
      }
    }
  }

  const stacks = r.choice<StackMode>('TRUSTFLOW_STACKS', ['off', 'sampled', 'all'], 'sampled');
  const staleAfterMs = r.duration('TRUSTFLOW_STALE_AFTER', 30 * 60_000);
  const idleAfterMs = r.duration('TRUSTFLOW_IDLE_AFTER', 5 * 60_000);
  const maxTracked = r.integer('TRUSTFLOW_MAX_TRACKED', 100_000, 1);
  const report = r.choice<ReportMode>('TRUSTFLOW_REPORT', ['exit', 'signal', 'off'], 'off');
  const reportFile = r.raw('TRUSTFLOW_REPORT_FILE');
  const reportEndpoint = r.bool('TRUSTFLOW_REPORT_ENDPOINT', true);

  let metricsExporters = r.exporters<MetricsExporterName>(
    'OTEL_METRICS_EXPORTER',
    ['prometheus', 'otlp', 'console'],
    ['prometheus'],
  );
  let tracesExporters = r.exporters<TracesExporterName>(
    'OTEL_TRACES_EXPORTER',
    ['otlp', 'console'],
    [],
  );
  if (sdkDisabled) {
    metricsExporters = [];
    tracesExporters = [];
  }

  const prometheusHost = r.raw('OTEL_EXPORTER_PROMETHEUS_HOST') ?? '127.0.0.1';
  const prometheusPort = r.integer('OTEL_EXPORTER_PROMETHEUS_PORT', 9464, 0, 65_535);

  for (const name of [
    'OTEL_EXPORTER_OTLP_PROTOCOL',
    'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL',
    'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
  ]) {
    const value = r.raw(name);
    if (value !== undefined && value.toLowerCase() !== 'http/json') {
      r.bad(name, value, 'http/json, the only OTLP protocol this package sends', 'http/json');
    }
  }
  const base = r.url('OTEL_EXPORTER_OTLP_ENDPOINT', DEFAULT_OTLP_BASE);
  const otlp: Config['otlp'] = {
    metricsUrl: r.url('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', withPath(base, '/v1/metrics')),
    tracesUrl: r.url('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', withPath(base, '/v1/traces')),
    headers: r.headers('OTEL_EXPORTER_OTLP_HEADERS'),
    metricsHeaders: r.headers('OTEL_EXPORTER_OTLP_METRICS_HEADERS'),
    tracesHeaders: r.headers('OTEL_EXPORTER_OTLP_TRACES_HEADERS'),
    timeoutMs: r.integer('OTEL_EXPORTER_OTLP_TIMEOUT', 10_000, 1),
    compression: r.choice('OTEL_EXPORTER_OTLP_COMPRESSION', ['gzip', 'none'], 'none'),
  };
  const metricIntervalMs = r.integer('OTEL_METRIC_EXPORT_INTERVAL', 60_000, 1);
  const metricTimeoutMs = r.integer('OTEL_METRIC_EXPORT_TIMEOUT', 30_000, 1);
  const logLevel = r.choice<LogLevel>(
    'OTEL_LOG_LEVEL',
    ['none', 'error', 'warn', 'info', 'debug', 'verbose', 'all'],
    'error',
  );

  const config: Config = {
    serviceName: options.serviceName ?? r.raw('OTEL_SERVICE_NAME'),
    plugins: options.plugins ?? plugins,
    stacks: options.stacks ?? stacks,
    staleAfterMs: options.staleAfterMs ?? staleAfterMs,
    idleAfterMs: options.idleAfterMs ?? idleAfterMs,
    maxTracked: options.maxTracked ?? maxTracked,
    report: options.report ?? report,
    reportFile: options.reportFile ?? reportFile,
    metricsExporters: options.metricsExporters ?? metricsExporters,
    tracesExporters: options.tracesExporters ?? tracesExporters,
    prometheusHost: options.prometheusHost ?? prometheusHost,
    prometheusPort: options.prometheusPort ?? prometheusPort,
    reportEndpoint: options.reportEndpoint ?? reportEndpoint,
    signals: options.signals ?? true,
    otlp,
    metricIntervalMs,
    metricTimeoutMs: Math.min(metricTimeoutMs, metricIntervalMs),
    logLevel,
  };
  checkOptions(options);
  checkReportFile(config, r.warnings);
  return { config, warnings: r.warnings };
}

/** Checks the report file's folder now, so a typo is a startup warning and not a lost report. */
function checkReportFile(config: Config, warnings: string[]): void {
  if (!config.reportFile) return;
  // (builtins without an import: the preload loads this file on its own at exit, register.ts)
  const { statSync } = process.getBuiltinModule('node:fs') as typeof import('node:fs');
  const { dirname, resolve } = process.getBuiltinModule('node:path') as typeof import('node:path');
  const dir = dirname(resolve(config.reportFile.replaceAll('%p', '0')));
  let ok = false;
  try {
    ok = statSync(dir).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) {
    warnings.push(
      `trustflow: TRUSTFLOW_REPORT_FILE=${JSON.stringify(config.reportFile)} is not valid (its folder ${dir} does not exist); using the default: text on stderr`,
    );
    config.reportFile = undefined;
  }
}

/** Programmatic options are code: a wrong one is a TypeError naming it (env values only warn). */
function checkOptions(o: InstrumentOptions): void {
  const fail = (name: string, expected: string, value: unknown) => {
    throw new TypeError(`instrument: option ${name} must be ${expected}, got ${String(value)}`);
  };
  const nonNegative = (name: keyof InstrumentOptions) => {
    const v = o[name];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      fail(name, 'a non-negative number', v);
    }
  };
  nonNegative('staleAfterMs');
  nonNegative('idleAfterMs');
  nonNegative('maxTracked');
  if (
    o.prometheusPort !== undefined &&
    (!Number.isInteger(o.prometheusPort) || o.prometheusPort < 0 || o.prometheusPort > 65_535)
  ) {
    fail('prometheusPort', 'an integer from 0 to 65535', o.prometheusPort);
  }
  if (o.stacks !== undefined && !['off', 'sampled', 'all'].includes(o.stacks)) {
    fail('stacks', "'off', 'sampled' or 'all'", o.stacks);
  }
  if (o.report !== undefined && !['exit', 'signal', 'off'].includes(o.report)) {
    fail('report', "'exit', 'signal' or 'off'", o.report);
  }
  if (o.plugins !== undefined) {
    if (!Array.isArray(o.plugins)) fail('plugins', 'an array of plugin names', o.plugins);
    for (const p of o.plugins) {
      if (!PLUGIN_NAMES.includes(p)) fail('plugins', `made of ${PLUGIN_NAMES.join(', ')}`, p);
    }
  }
  for (const [name, method] of [
    ['meterProvider', 'getMeter'],
    ['tracerProvider', 'getTracer'],
  ] as const) {
    const provider = o[name] as Record<string, unknown> | undefined;
    if (provider !== undefined && typeof provider?.[method] !== 'function') {
      fail(
        name,
        `an OpenTelemetry ${name === 'meterProvider' ? 'MeterProvider' : 'TracerProvider'}`,
        provider,
      );
    }
  }
  for (const [name, known] of [
    ['metricsExporters', ['prometheus', 'otlp', 'console']],
    ['tracesExporters', ['otlp', 'console']],
  ] as const) {
    const list = o[name];
    if (list === undefined) continue;
    if (!Array.isArray(list)) fail(name, 'an array', list);
    for (const item of list as string[]) {
      if (!(known as readonly string[]).includes(item))
        fail(name, `made of ${known.join(', ')}`, item);
    }
  }
}

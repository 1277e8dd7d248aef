import { once } from 'node:events';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { formatDuration, parseDuration, readConfig } from '../src/internal/config.js';
import { libp2pInstalled } from '../src/internal/libp2p-hook.js';
import {
  cleanEnv,
  fixture,
  killChildren,
  NODE24,
  PRELOAD,
  run,
  warnings,
} from './preload-helpers.js';

afterEach(killChildren);

describe('configuration from the environment', () => {
  it('has the documented defaults', () => {
    const { config, warnings } = readConfig({}, {});
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      plugins: undefined,
      stacks: 'sampled',
      staleAfterMs: 30 * 60_000,
      idleAfterMs: 5 * 60_000,
      maxTracked: 100_000,
      report: 'off',
      reportFile: undefined,
      metricsExporters: ['prometheus'],
      tracesExporters: [],
      prometheusHost: '127.0.0.1',
      prometheusPort: 9464,
      reportEndpoint: true,
      metricIntervalMs: 60_000,
      logLevel: 'error',
    });
    expect(config.otlp.metricsUrl).toBe('http://localhost:4318/v1/metrics');
    expect(config.otlp.tracesUrl).toBe('http://localhost:4318/v1/traces');
  });

  it('reads good values', () => {
    const { config, warnings } = readConfig(
      {},
      {
        TRUSTFLOW_PLUGINS: 'fs, net',
        TRUSTFLOW_STACKS: 'ALL',
        TRUSTFLOW_STALE_AFTER: '1h30m',
        TRUSTFLOW_IDLE_AFTER: '90s',
        TRUSTFLOW_MAX_TRACKED: '500',
        TRUSTFLOW_REPORT: 'exit',
        TRUSTFLOW_REPORT_FILE: '/tmp/r-%p.json',
        TRUSTFLOW_REPORT_ENDPOINT: 'off',
        OTEL_METRICS_EXPORTER: 'otlp,console',
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_PROMETHEUS_HOST: '0.0.0.0',
        OTEL_EXPORTER_PROMETHEUS_PORT: '0',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/v1/traces',
        OTEL_EXPORTER_OTLP_HEADERS: 'api-key=a%20b,x-team=core',
        OTEL_METRIC_EXPORT_INTERVAL: '5000',
        OTEL_SERVICE_NAME: 'checkout',
      },
    );
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      plugins: ['fs', 'net'],
      stacks: 'all',
      staleAfterMs: 90 * 60_000,
      idleAfterMs: 90_000,
      maxTracked: 500,
      report: 'exit',
      reportFile: '/tmp/r-%p.json',
      reportEndpoint: false,
      metricsExporters: ['otlp', 'console'],
      tracesExporters: ['otlp'],
      prometheusHost: '0.0.0.0',
      prometheusPort: 0,
      metricIntervalMs: 5000,
      serviceName: 'checkout',
    });
    expect(config.otlp.metricsUrl).toBe('http://collector:4318/v1/metrics');
    expect(config.otlp.tracesUrl).toBe('https://traces.example/v1/traces');
    expect(config.otlp.headers).toEqual({ 'api-key': 'a b', 'x-team': 'core' });
  });

  it('none turns exporters and plugins off; OTEL_SDK_DISABLED turns exporters off', () => {
    expect(
      readConfig({}, { OTEL_METRICS_EXPORTER: 'none', TRUSTFLOW_PLUGINS: 'none' }).config,
    ).toMatchObject({ metricsExporters: [], plugins: [] });
    expect(
      readConfig({}, { OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }).config,
    ).toMatchObject({ metricsExporters: [], tracesExporters: [] });
  });

  it('options win over the environment; a bad option is a TypeError naming it', () => {
    expect(readConfig({ stacks: 'off' }, { TRUSTFLOW_STACKS: 'all' }).config.stacks).toBe('off');
    expect(() => readConfig({ prometheusPort: 70_000 }, {})).toThrow(
      'instrument: option prometheusPort must be an integer from 0 to 65535, got 70000',
    );
    expect(() => readConfig({ plugins: ['fs', 'nope' as never] }, {})).toThrow(/option plugins/);
  });

  it('parses durations', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('1500')).toBe(1500);
    for (const bad of ['', 'soon', '10 minutes', '-5s', '5x', 's']) {
      expect(parseDuration(bad)).toBeUndefined();
    }
    expect(formatDuration(30 * 60_000)).toBe('30m');
    expect(formatDuration(1500)).toBe('1500ms');
  });
});

/** One bad value per variable; each must give exactly one line naming it, the value and the default. */
const BAD: [string, string, string][] = [
  ['TRUSTFLOW_DISABLED', 'maybe', 'off'],
  ['TRUSTFLOW_PLUGINS', 'fs,telepathy', 'every plugin whose target exists'],
  ['TRUSTFLOW_STACKS', 'everything', 'sampled'],
  ['TRUSTFLOW_STALE_AFTER', 'soon', '30m'],
  ['TRUSTFLOW_IDLE_AFTER', '-5m', '5m'],
  ['TRUSTFLOW_MAX_TRACKED', 'lots', '100000'],
  ['TRUSTFLOW_REPORT', 'sometimes', 'off'],
  ['TRUSTFLOW_REPORT_FILE', '/nonexistent-dir/report.json', 'text on stderr'],
  ['TRUSTFLOW_REPORT_ENDPOINT', 'perhaps', 'on'],
  ['OTEL_SDK_DISABLED', 'kinda', 'off'],
  ['OTEL_METRICS_EXPORTER', 'zipkin', 'prometheus'],
  ['OTEL_TRACES_EXPORTER', 'jaeger', 'none'],
  ['OTEL_EXPORTER_PROMETHEUS_PORT', '99999', '9464'],
  ['OTEL_EXPORTER_OTLP_ENDPOINT', 'collector:4318', 'http://localhost:4318'],
  ['OTEL_EXPORTER_OTLP_HEADERS', 'novalue', 'no extra headers'],
  ['OTEL_EXPORTER_OTLP_TIMEOUT', '10s', '10000'],
  ['OTEL_EXPORTER_OTLP_COMPRESSION', 'zstd', 'none'],
  ['OTEL_EXPORTER_OTLP_PROTOCOL', 'grpc', 'http/json'],
  ['OTEL_METRIC_EXPORT_INTERVAL', '0', '60000'],
  ['OTEL_LOG_LEVEL', 'loud', 'error'],
];

describe('bad values in the environment', () => {
  it('give one warning line each (variable, value, default) and the app runs normally', async () => {
    const env = cleanEnv(Object.fromEntries(BAD.map(([name, value]) => [name, value])));
    const result = await run(NODE24, ['--import', PRELOAD, fixture('app-leak.mjs')], { env });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/app done, instrumented=true/);
    const lines = warnings(result.stderr);
    expect(lines).toHaveLength(BAD.length);
    for (const [name, value, fallback] of BAD) {
      const line = lines.find((l) => l.startsWith(`trustflow: ${name}=`));
      expect(line, name).toBeDefined();
      expect(line).toContain(`${name}=${JSON.stringify(value)} is not valid`);
      expect(line).toContain(`using the default: ${fallback}`);
    }
    // nothing else on stderr
    expect(result.stderr.trim().split('\n')).toHaveLength(BAD.length);
  });

  it('a taken metrics port gives one warning and the app runs normally', async () => {
    const blocker = createServer().listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    try {
      const port = (blocker.address() as { port: number }).port;
      const result = await run(NODE24, ['--import', PRELOAD, fixture('app-leak.mjs')], {
        env: cleanEnv({ OTEL_EXPORTER_PROMETHEUS_PORT: String(port) }),
      });
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/app done, instrumented=true/);
      expect(warnings(result.stderr)).toEqual([
        `trustflow: metrics endpoint not started: 127.0.0.1:${port} is already in use; the application runs without it (set OTEL_EXPORTER_PROMETHEUS_PORT to another port, or 0 for any free port)`,
      ]);
    } finally {
      blocker.close();
    }
  });
});

describe('libp2pInstalled', () => {
  it('looks for node_modules/libp2p from each folder up to the root', () => {
    const seen: string[] = [];
    const exists = (path: string) => {
      seen.push(path);
      return path === '/srv/node_modules/libp2p/package.json';
    };
    expect(libp2pInstalled(['/srv/app/lib'], exists)).toBe(true);
    expect(seen).toEqual([
      '/srv/app/lib/node_modules/libp2p/package.json',
      '/srv/app/node_modules/libp2p/package.json',
      '/srv/node_modules/libp2p/package.json',
    ]);
    seen.length = 0;
    expect(libp2pInstalled(['/a'], exists)).toBe(false);
    expect(seen).toEqual([
      '/a/node_modules/libp2p/package.json',
      '/node_modules/libp2p/package.json',
    ]);
  });
});

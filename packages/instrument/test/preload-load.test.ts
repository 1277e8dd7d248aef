import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cleanEnv,
  fixture,
  killChildren,
  lineOf,
  NODE22,
  NODE24,
  PRELOAD,
  readReport,
  run,
  runForReport,
  tempDir,
  warnings,
} from './preload-helpers.js';

afterEach(killChildren);

const nodes = [
  ['Node 24', NODE24],
  ['Node 22', NODE22],
] as const;

it('the build left the bundle ASCII only, as the loader reads it as latin1', () => {
  const bundle = readFileSync(join(PRELOAD, '..', 'internal', 'preload.cjs'), 'utf8');
  expect(bundle.length).toBeGreaterThan(10_000);
  expect(bundle.match(/[\u0080-\uffff]/g) ?? []).toEqual([]);
});

describe.each(nodes)('the preload on %s', (_name, node) => {
  it.runIf(node !== undefined).each([
    ['CommonJS', 'app-leak.cjs', '--require'],
    ['CommonJS', 'app-leak.cjs', '--import'],
    ['ESM', 'app-leak.mjs', '--require'],
    ['ESM', 'app-leak.mjs', '--import'],
  ])('instruments a %s app loaded with %s %s', async (_kind, app, flag) => {
    // (metrics on, as the application would run)
    const { result, report } = await runForReport(node!, [flag, PRELOAD, fixture(app)], {
      OTEL_METRICS_EXPORTER: undefined,
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/app done, instrumented=true/);
    const fds = report.leaks.filter((l) => l.kind === 'fs.fd');
    const line = await lineOf(fixture(app), 'LEAK:fd');
    // exactly the descriptor left open, at its line; the closed one is not a leak
    expect(fds.map((l) => [l.count, l.site?.replace(/:\d+$/, '')])).toEqual([
      [1, `${fixture(app)}:${line}`],
    ]);
    expect(report.opened['fs.fd']).toBeGreaterThanOrEqual(2);
    expect(report.leaks.filter((l) => l.kind !== 'fs.fd')).toEqual([]);
  });

  it.runIf(node !== undefined).each(['--import', '--require'])(
    'instruments the main thread only, not the worker threads that inherit %s',
    async (flag) => {
      const result = await run(node!, [flag, PRELOAD, fixture('app-worker.mjs')], {
        env: cleanEnv({ OTEL_METRICS_EXPORTER: 'none' }),
      });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout.trim()).toBe('main=true worker=false');
    },
  );

  it.runIf(node !== undefined)('TRUSTFLOW_DISABLED=1 loads nothing', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'report.json');
      const result = await run(
        node!,
        [
          '--require',
          PRELOAD,
          '-e',
          "console.log(['@trustflow/instrument', 'opentelemetry.js.api.1'].map((k) => k + '=' + (globalThis[Symbol.for(k)] !== undefined)).join(' '))",
        ],
        {
          env: cleanEnv({
            TRUSTFLOW_DISABLED: '1',
            TRUSTFLOW_REPORT: 'exit',
            TRUSTFLOW_REPORT_FILE: file,
          }),
        },
      );
      expect(result.code).toBe(0);
      expect(result.stderr).toBe('');
      // neither the instrumentation nor the OpenTelemetry API was loaded
      expect(result.stdout.trim()).toBe('@trustflow/instrument=false opentelemetry.js.api.1=false');
      await expect(readReport(file)).rejects.toThrow(/ENOENT/);
    } finally {
      await dir.remove();
    }
  });

  it.runIf(node !== undefined && node === NODE24).each(['--import', '--require'])(
    'a program that does nothing loads one file of the preload with %s: no bundle, no SDK',
    async (flag) => {
      // The preload starts when the program is about to make its first resource (src/register.ts;
      // preload-start.test.ts): one that makes none loads register.js only, not the bundle of
      // core and the plugins (nor what they patch once asked for: preload-lazy.test.ts), and
      // never reaches the SDK. (The timing itself is in `pnpm bench instrument`.)
      const result = await run(
        node!,
        ['--require', fixture('record-loads.cjs'), flag, PRELOAD, fixture('app-noop.mjs')],
        { env: cleanEnv() },
      );
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const { files, builtins, started } = JSON.parse(result.stdout.trim()) as {
        files: string[];
        builtins: string[];
        started: boolean;
      };
      const ours = files.filter((f) => !f.endsWith('/app-noop.mjs'));
      expect(ours.map((f) => f.slice(f.indexOf('/dist/')))).toEqual(['/dist/register.js']);
      // the bundle is compiled by bundle-loader.js (vm.Script), which no module loader sees: the
      // instrumentation it starts was not running at exit
      expect(started).toBe(false);
      for (const heavy of ['tls', 'http', 'https', 'net', 'stream', 'fs/promises', 'perf_hooks']) {
        expect(builtins).not.toContain(heavy);
      }
    },
  );

  it.runIf(node !== undefined)(
    'loads the trace SDK and the OTLP exporters only when they are configured',
    async () => {
      const script =
        "globalThis[Symbol.for('@trustflow/instrument')].ready.then(() => { console.log(Object.keys(require.cache).filter((k) => /@opentelemetry[\\/](sdk-trace|exporter-trace-otlp-http|exporter-metrics-otlp-http|context-async-hooks)[\\/]/.test(k)).length); process.exit(0); })";
      const loaded = async (env: Record<string, string>) => {
        const result = await run(node!, ['--require', PRELOAD, '-e', script], {
          env: cleanEnv({ OTEL_EXPORTER_PROMETHEUS_PORT: '0', ...env }),
        });
        expect(result.stderr).toBe('');
        return Number(result.stdout.trim());
      };
      expect(await loaded({})).toBe(0);
      expect(
        await loaded({
          OTEL_METRICS_EXPORTER: 'otlp',
          OTEL_TRACES_EXPORTER: 'otlp',
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
        }),
      ).toBeGreaterThan(0);
    },
  );

  it.runIf(node !== undefined)('the build left a code cache that this Node accepts', async () => {
    const loader = pathToFileURL(join(PRELOAD, '..', 'internal', 'bundle-loader.js')).href;
    const bundle = join(PRELOAD, '..', 'internal', 'preload.cjs');
    const result = await run(
      node!,
      [
        '--input-type=module',
        '-e',
        `const { loadBundle } = await import(${JSON.stringify(loader)}); console.log(loadBundle(${JSON.stringify(bundle)}).cache);`,
      ],
      { env: cleanEnv({ OTEL_METRICS_EXPORTER: 'none' }) },
    );
    expect(result.stderr).toBe('');
    // The cache is made by the Node that ran the build (the pinned Node 24); another V8 rejects
    // it and the bundle is compiled as usual.
    expect(result.stdout.trim()).toBe(node === NODE24 ? 'used' : 'rejected');
  });

  it.runIf(node !== undefined)(
    'a program that does nothing ends on its own, whatever is configured',
    async () => {
      // Every part that could hold the event loop: the endpoint, push exporters with a long
      // interval, traces, signal and exit handling.
      const result = await run(node!, ['--import', PRELOAD, fixture('app-noop.mjs')], {
        env: cleanEnv({
          OTEL_METRICS_EXPORTER: 'prometheus,otlp',
          OTEL_TRACES_EXPORTER: 'otlp',
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
          TRUSTFLOW_REPORT: 'signal',
        }),
        timeoutMs: 15_000,
      });
      expect(result.signal).toBeNull();
      expect(result.code).toBe(0);
      expect(warnings(result.stderr)).toEqual([]);
    },
  );
});

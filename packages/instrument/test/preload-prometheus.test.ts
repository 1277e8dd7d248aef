import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { promtoolSafe } from '../src/internal/sdk.js';
import {
  cleanEnv,
  eventually,
  fixture,
  freePort,
  get,
  killChildren,
  NODE24,
  PRELOAD,
  run,
  start,
  tempDir,
} from './preload-helpers.js';

afterEach(killChildren);

const hasPrometheus =
  (await run('sh', ['-c', 'command -v prometheus && command -v promtool'])).code === 0;

async function instrumentedApp(env: Record<string, string> = {}) {
  const port = await freePort();
  const app = start(NODE24, ['--import', PRELOAD, fixture('app-serve.mjs')], {
    env: cleanEnv({ OTEL_EXPORTER_PROMETHEUS_PORT: String(port), ...env }),
  });
  await app.line(/^ready$/);
  const base = `http://127.0.0.1:${port}`;
  const metrics = await eventually(async () => {
    const r = await get(`${base}/metrics`);
    return r.status === 200 && r.body.includes('trustflow_resource_active') ? r.body : undefined;
  }, 'the metrics endpoint');
  return { app, port, base, metrics };
}

describe('the metrics endpoint', () => {
  it('serves Prometheus text on 127.0.0.1 only, and the JSON report', async () => {
    const { base, port, metrics, app } = await instrumentedApp();
    expect(metrics).toMatch(
      /^trustflow_resource_active\{trustflow_resource_kind="fs\.fd",[^}]*\} 1$/m,
    );
    expect(metrics).toMatch(/^process_open_fds\{[^}]*\} \d+$/m);
    // the lifetime histogram (kept by the tracker, read through a MetricProducer) counts exactly
    // the descriptors closed so far (the app closes one), bucket by bucket
    const value = (pattern: RegExp) => Number(metrics.match(pattern)?.[1] ?? Number.NaN);
    const closed = value(
      /^trustflow_resource_closed_total\{trustflow_resource_kind="fs\.fd",[^}]*\} (\d+)$/m,
    );
    expect(closed).toBeGreaterThan(0);
    expect(
      value(/^trustflow_resource_lifetime_count\{trustflow_resource_kind="fs\.fd",[^}]*\} (\d+)$/m),
    ).toBe(closed);
    expect(
      value(
        /^trustflow_resource_lifetime_bucket\{trustflow_resource_kind="fs\.fd",[^}]*le="\+Inf"\} (\d+)$/m,
      ),
    ).toBe(closed);
    expect(metrics.match(/^# TYPE trustflow_resource_lifetime histogram$/gm)).toHaveLength(1);

    expect(metrics).toMatch(/^nodejs_eventloop_utilization\{/m);
    expect(metrics).toMatch(/^target_info\{[^}]*service_name="unknown_service:[^"]*"/m);
    // bound to 127.0.0.1, not to every interface
    const refused = await new Promise<string>((resolve) => {
      const socket = connect(port, '127.0.0.2');
      socket.on('connect', () => resolve('connected'));
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');

    const report = await get(`${base}/trustflow/report`);
    expect(report.status).toBe(200);
    expect(report.headers.get('content-type')).toMatch(/^application\/json/);
    const live = JSON.parse(report.body);
    expect(live.schema).toBe('trustflow.report/v1');
    expect(live.pid).toBe(app.child.pid);
    expect(live.active['fs.fd']).toBe(1);
    // live: only stale/collected leaks; with ?open=1 every open resource
    expect(live.leaks).toEqual([]);
    const open = JSON.parse((await get(`${base}/trustflow/report?open=1`)).body);
    expect(open.leaks.map((l: { kind: string }) => l.kind)).toContain('fs.fd');
    // the endpoint's own server and connections are not the application's
    expect(open.active['net.server'] ?? 0).toBe(0);
    expect(open.active['net.socket'] ?? 0).toBe(0);
    expect((await get(`${base}/nothing-here`)).status).toBe(404);
  });

  it('listens while the program waits on a timer and does nothing else (no I/O to wake the loop)', async () => {
    // The endpoint starts in the first event-loop turn. From an unref'd setImmediate it did not:
    // that runs only once something else wakes the loop, here the program's timer 15 s later.
    const port = await freePort();
    const app = start(NODE24, ['--import', PRELOAD, fixture('app-sleep.mjs'), '15000'], {
      env: cleanEnv({ OTEL_EXPORTER_PROMETHEUS_PORT: String(port) }),
    });
    let ended = false;
    void app.exited.then(() => {
      ended = true;
    });
    const status = await eventually(
      async () => (await get(`http://127.0.0.1:${port}/metrics`)).status,
      'the metrics endpoint',
      10_000,
    );
    expect(status).toBe(200);
    expect(ended).toBe(false);
  });

  it('TRUSTFLOW_REPORT_ENDPOINT=off leaves only /metrics', async () => {
    const { base } = await instrumentedApp({ TRUSTFLOW_REPORT_ENDPOINT: 'off' });
    expect((await get(`${base}/trustflow/report`)).status).toBe(404);
    expect((await get(`${base}/metrics`)).status).toBe(200);
  });

  it.runIf(hasPrometheus)(
    'promtool check metrics accepts the exposition without warnings',
    async () => {
      const { metrics } = await instrumentedApp();
      expect(await promtool(metrics)).toEqual({ code: 0, output: '' });
    },
  );

  it.runIf(hasPrometheus)(
    "promtool accepts a libp2p service's exposition too (libp2p's own metrics included)",
    async () => {
      const port = await freePort();
      const service = start(
        NODE24,
        ['--import', PRELOAD, LEAKY_SERVICE, '--run-for', '20s', '--every', '50ms'],
        { env: cleanEnv({ OTEL_EXPORTER_PROMETHEUS_PORT: String(port) }) },
      );
      await service.line(/running/);
      const metrics = await eventually(async () => {
        const r = await get(`http://127.0.0.1:${port}/metrics`);
        return /^libp2p_/m.test(r.body) && /libp2p\.stream/.test(r.body) ? r.body : undefined;
      }, 'libp2p metrics');
      expect(await promtool(metrics)).toEqual({ code: 0, output: '' });
    },
  );

  it.runIf(hasPrometheus)(
    'a real Prometheus server scrapes it, and its query API returns trustflow_resource_active for a kind',
    async () => {
      const { port } = await instrumentedApp();
      const dir = await tempDir('tf-prometheus-');
      try {
        const config = join(dir.path, 'prometheus.yml');
        await writeFile(
          config,
          [
            'global:',
            '  scrape_interval: 1s',
            'scrape_configs:',
            '  - job_name: app',
            '    static_configs:',
            `      - targets: ['127.0.0.1:${port}']`,
            '',
          ].join('\n'),
        );
        const promPort = await freePort();
        start(
          'prometheus',
          [
            `--config.file=${config}`,
            `--storage.tsdb.path=${join(dir.path, 'data')}`,
            `--web.listen-address=127.0.0.1:${promPort}`,
          ],
          { env: cleanEnv() },
        );
        const query = encodeURIComponent(
          'trustflow_resource_active{trustflow_resource_kind="fs.fd"}',
        );
        const result = await eventually(
          async () => {
            const r = await get(`http://127.0.0.1:${promPort}/api/v1/query?query=${query}`);
            const body = JSON.parse(r.body);
            return body.data?.result?.length > 0 ? body.data.result : undefined;
          },
          'Prometheus to scrape the endpoint',
          40_000,
        );
        expect(result[0].metric).toMatchObject({
          __name__: 'trustflow_resource_active',
          trustflow_resource_kind: 'fs.fd',
          job: 'app',
        });
        expect(result[0].value[1]).toBe('1');
      } finally {
        await killChildren();
        await dir.remove();
      }
    },
    60_000,
  );
});

const LEAKY_SERVICE = fileURLToPath(
  new URL('../../../examples/leaky-service/service.mjs', import.meta.url),
);

async function promtool(metrics: string): Promise<{ code: number; output: string }> {
  const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });
  child.stdin.end(metrics);
  const code = await new Promise<number>((resolve) => child.on('close', resolve));
  return { code, output };
}

describe('promtoolSafe', () => {
  it('renames the fd count and drops reserved suffixes of gauges, and nothing else', () => {
    const text = [
      '# HELP process_unix_file_descriptor_count Open fds.',
      '# TYPE process_unix_file_descriptor_count gauge',
      'process_unix_file_descriptor_count{a="1"} 3',
      '# TYPE libp2p_protocol_streams_total gauge',
      'libp2p_protocol_streams_total{protocol="x"} 4',
      '# TYPE trustflow_resource_opened_total counter',
      'trustflow_resource_opened_total 5',
      '# TYPE trustflow_resource_lifetime histogram',
      'trustflow_resource_lifetime_count 1',
      'trustflow_resource_lifetime_sum 0.5',
      '',
    ].join('\n');
    expect(promtoolSafe(text)).toBe(
      [
        '# HELP process_open_fds Open fds.',
        '# TYPE process_open_fds gauge',
        'process_open_fds{a="1"} 3',
        '# TYPE libp2p_protocol_streams gauge',
        'libp2p_protocol_streams{protocol="x"} 4',
        '# TYPE trustflow_resource_opened_total counter',
        'trustflow_resource_opened_total 5',
        '# TYPE trustflow_resource_lifetime histogram',
        'trustflow_resource_lifetime_count 1',
        'trustflow_resource_lifetime_sum 0.5',
        '',
      ].join('\n'),
    );
  });
});

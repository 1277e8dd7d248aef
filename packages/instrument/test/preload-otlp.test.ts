import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cleanEnv, fixture, killChildren, NODE24, PRELOAD, run } from './preload-helpers.js';

interface Received {
  path: string;
  contentType: string | undefined;
  body: any;
}

let server: Server;
let received: Received[] = [];
let endpoint = '';

beforeEach(async () => {
  received = [];
  // An OTLP/HTTP receiver (JSON encoding), as a collector would be.
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      received.push({
        path: req.url ?? '',
        contentType: req.headers['content-type'],
        body: JSON.parse(body),
      });
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterEach(async () => {
  await killChildren();
  await new Promise((resolve) => server.close(resolve));
});

function metricNames(): Set<string> {
  const names = new Set<string>();
  for (const r of received.filter((x) => x.body.resourceMetrics)) {
    for (const rm of r.body.resourceMetrics ?? []) {
      for (const sm of rm.scopeMetrics ?? []) for (const m of sm.metrics ?? []) names.add(m.name);
    }
  }
  return names;
}

function spans(): { name: string; attributes: Record<string, unknown> }[] {
  const out: { name: string; attributes: Record<string, unknown> }[] = [];
  for (const r of received.filter((x) => x.path === '/v1/traces')) {
    for (const rs of r.body.resourceSpans ?? []) {
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          const attributes: Record<string, unknown> = {};
          for (const a of s.attributes ?? []) attributes[a.key] = Object.values(a.value)[0];
          out.push({ name: s.name, attributes });
        }
      }
    }
  }
  return out;
}

function resourceAttribute(path: string, key: string): unknown {
  const r = received.find((x) => x.path === path);
  const list =
    r?.body.resourceMetrics?.[0]?.resource?.attributes ??
    r?.body.resourceSpans?.[0]?.resource?.attributes;
  const attr = list?.find((a: { key: string }) => a.key === key);
  return attr ? Object.values(attr.value)[0] : undefined;
}

describe('OTLP export', () => {
  it('metrics and traces reach an OTLP/HTTP receiver with the expected names', async () => {
    const result = await run(NODE24, ['--import', PRELOAD, fixture('app-work.mjs'), '800'], {
      env: cleanEnv({
        OTEL_SERVICE_NAME: 'otlp-test',
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
        OTEL_METRIC_EXPORT_INTERVAL: '200',
      }),
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(received.every((r) => r.contentType === 'application/json')).toBe(true);

    const names = metricNames();
    for (const name of [
      'trustflow.resource.active',
      'trustflow.resource.opened',
      'trustflow.resource.closed',
      'trustflow.resource.lifetime',
      'process.unix.file_descriptor.count',
      'process.memory.usage',
      'nodejs.eventloop.utilization',
      'v8js.memory.heap.used',
    ]) {
      expect(names, name).toContain(name);
    }
    expect(resourceAttribute('/v1/metrics', 'service.name')).toBe('otlp-test');

    // a lifetime span per file descriptor opened once the SDK was up
    const fdSpans = spans().filter((s) => s.name === 'fs.fd');
    expect(fdSpans.length).toBeGreaterThan(5);
    expect(fdSpans[0]!.attributes['trustflow.resource.kind']).toBe('fs.fd');
    expect(resourceAttribute('/v1/traces', 'service.name')).toBe('otlp-test');
  });

  it('the last metrics are pushed when the program ends, even with a long interval', async () => {
    const result = await run(NODE24, ['--import', PRELOAD, fixture('app-work.mjs'), '300'], {
      env: cleanEnv({
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${endpoint}/custom/metrics`,
      }),
    });
    expect(result.code).toBe(0);
    expect(received.map((r) => r.path)).toEqual(['/custom/metrics']);
    expect(metricNames()).toContain('trustflow.resource.opened');
  });
});

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Meter } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

export interface Endpoint {
  readonly url: string;
  readonly meter: Meter;
  close(): Promise<void>;
}

export interface EndpointOptions {
  host: string;
  port: number;
  /** `/health` body; `ok: false` answers 503. */
  health: () => { ok: boolean };
  /** `/report` body (the tracker's report). */
  report: () => unknown;
}

/**
 * One loopback HTTP server for the node: `/metrics` (Prometheus text, from an OTel meter provider
 * with the runtime metrics of `@opentelemetry/instrumentation-runtime-node`), `/report` (the
 * tracker's JSON report) and `/health`. Nothing else; no stack dumps, no forced GC.
 */
export async function startEndpoint(options: EndpointOptions): Promise<Endpoint> {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [exporter] });
  const runtime = new RuntimeNodeInstrumentation({ monitoringPrecision: 5_000 });
  runtime.setMeterProvider(provider);
  runtime.enable();
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    try {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET') {
        res.writeHead(405, { allow: 'GET' }).end();
      } else if (path === '/metrics') {
        exporter.getMetricsRequestHandler(req, res);
      } else if (path === '/health') {
        const health = options.health();
        json(res, health.ok ? 200 : 503, health);
      } else if (path === '/report') {
        json(res, 200, options.report());
      } else {
        json(res, 404, { error: 'not found', paths: ['/metrics', '/report', '/health'] });
      }
    } catch (error) {
      json(res, 500, { error: String(error) });
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${host}:${address.port}`,
    meter: provider.getMeter('trustflow-node'),
    close() {
      closed ??= (async () => {
        runtime.disable();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await provider.shutdown();
      })();
      return closed;
    },
  };
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Meter } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

export interface Endpoint {
  readonly meter: Meter;
  /** Starts the HTTP server; resolves with its base URL. */
  listen(options: EndpointOptions): Promise<string>;
  close(): Promise<void>;
}

export interface EndpointOptions {
  host: string;
  port: number;
  /** `/health` body; `ok: false` answers 503. */
  health: () => { ok: boolean };
  /** `/report` body (the tracker's report). */
  report: () => unknown;
  /** Runs the server's creation (the node passes `tracker.untracked`: it is not the application). */
  wrap?: <R>(fn: () => R) => R;
  /** Called with the server once it exists (the node tells its tracker to ignore it). */
  onServer?: (server: object) => void;
}

/**
 * One loopback HTTP server for the node: `/metrics` (Prometheus text, from an OTel meter provider
 * with the runtime metrics of `@opentelemetry/instrumentation-runtime-node`), `/report` (the
 * tracker's JSON report) and `/health`. Nothing else; no stack dumps, no forced GC. The meter
 * exists before the server, so that the tracker can report to it from the start.
 */
export function createEndpoint(): Endpoint {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [exporter] });
  const runtime = new RuntimeNodeInstrumentation({ monitoringPrecision: 5_000 });
  runtime.setMeterProvider(provider);
  runtime.enable();
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
  };
  let server: Server | undefined;
  let closed: Promise<void> | undefined;
  return {
    meter: provider.getMeter('trustflow-node'),
    async listen(options) {
      const wrap = options.wrap ?? ((fn) => fn());
      const created = wrap(() =>
        createServer((req: IncomingMessage, res: ServerResponse) => {
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
        }),
      );
      server = created;
      created.keepAliveTimeout = 5_000;
      options.onServer?.(created);
      await wrap(
        () =>
          new Promise<void>((resolve, reject) => {
            created.once('error', reject);
            created.listen(options.port, options.host, () => {
              created.off('error', reject);
              resolve();
            });
          }),
      );
      const handle = (created as unknown as { _handle?: object })._handle;
      if (handle) options.onServer?.(handle);
      const address = created.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return `http://${host}:${address.port}`;
    },
    close() {
      closed ??= (async () => {
        runtime.disable();
        const s = server;
        if (s?.listening) {
          await new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          });
        }
        await provider.shutdown();
      })();
      return closed;
    },
  };
}

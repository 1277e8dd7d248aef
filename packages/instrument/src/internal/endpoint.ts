import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Report, ResourceTracker } from '@trustflow/core';

export interface EndpointOptions {
  host: string;
  port: number;
  /** Serves `/trustflow/report` (to loopback clients only). */
  reportEndpoint: boolean;
  tracker: ResourceTracker;
  /** Answers `/metrics`; undefined until the SDK is loaded (requests wait for `metricsReady`). */
  metrics: () => ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  metricsReady: Promise<void>;
  report: (open: boolean) => Report;
  warn: (line: string) => void;
  reportError: (where: string, error: unknown) => void;
}

export interface Endpoint {
  /** `http://host:port` once listening, else undefined. */
  readonly url: string | undefined;
  /** Settles when listening or given up (port in use...). */
  readonly listening: Promise<void>;
  close(): Promise<void>;
}

export const METRICS_PATH = '/metrics';
export const REPORT_PATH = '/trustflow/report';

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * The metrics endpoint: Prometheus text at `/metrics`, the JSON leak report at `/trustflow/report`.
 * It is instrumentation, not application: created inside `tracker.untracked()` and ignored, so
 * neither its server nor its connections show up as the application's resources. It never keeps
 * the process alive, answers every request with `Connection: close` (no idle scrape connection is
 * ever left open), and a port in use is a warning, not a failure.
 */
export function startEndpoint(o: EndpointOptions): Endpoint {
  const { tracker } = o;
  let url: string | undefined;
  let server: Server | undefined;

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    try {
      res.setHeader('connection', 'close');
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.statusCode = 405;
        res.setHeader('allow', 'GET, HEAD');
        res.end();
        return;
      }
      if (path === METRICS_PATH) {
        const serve = o.metrics();
        if (serve) {
          serve(req, res);
          return;
        }
        o.metricsReady.then(
          () => {
            const late = o.metrics();
            if (late) late(req, res);
            else {
              res.statusCode = 503;
              res.end('# metrics are not available\n');
            }
          },
          () => {
            res.statusCode = 503;
            res.end();
          },
        );
        return;
      }
      if (path === REPORT_PATH && o.reportEndpoint) {
        if (!isLoopback(req.socket.remoteAddress)) {
          res.statusCode = 403;
          res.end('the report is served to loopback clients only\n');
          return;
        }
        const open = new URL(req.url ?? '/', 'http://x').searchParams.get('open');
        const body = JSON.stringify(o.report(open === '1' || open === 'true'), null, 2);
        res.setHeader('content-type', 'application/json; charset=utf-8');
        res.end(body);
        return;
      }
      res.statusCode = 404;
      res.end();
    } catch (error) {
      o.reportError('endpoint request', error);
      if (!res.headersSent) res.statusCode = 500;
      res.end();
    }
  };

  const listening = new Promise<void>((resolve) => {
    tracker.untracked(() => {
      // Not a static import: the ES module facade of node:http loads undici (tens of ms at startup).
      const { createServer } = process.getBuiltinModule('node:http');
      const s = createServer(handle);
      server = s;
      tracker.ignore(s);
      s.unref();
      // Runs before http's own listener: the accepted socket is ours before anything tracks it.
      s.prependListener('connection', (socket: Socket) => {
        tracker.ignore(socket);
        const h = (socket as unknown as { _handle?: object })._handle;
        if (h) tracker.ignore(h);
      });
      s.once('error', (error: NodeJS.ErrnoException) => {
        const where = `${hostForUrl(o.host)}:${o.port}`;
        const why =
          error.code === 'EADDRINUSE'
            ? `${where} is already in use`
            : `cannot listen on ${where} (${error.code ?? error.message})`;
        o.warn(
          `trustflow: metrics endpoint not started: ${why}; the application runs without it (set OTEL_EXPORTER_PROMETHEUS_PORT to another port, or 0 for any free port)`,
        );
        server = undefined;
        resolve();
      });
      // node:http starts a connection-checking interval when the server listens, from a
      // 'listening' listener of its own, a tick after listen(): outside untracked(), so it would
      // count as one of the application's timers. Run that listener ourselves, inside.
      const checker = s
        .listeners('listening')
        .find((l) => (l as { name?: string }).name === 'setupConnectionsTracking');
      if (checker !== undefined) s.removeListener('listening', checker as () => void);
      s.once('listening', () => {
        if (checker !== undefined) tracker.untracked(() => Reflect.apply(checker, s, []));
        const h = (s as unknown as { _handle?: object })._handle;
        if (h) tracker.ignore(h);
        const address = s.address() as AddressInfo;
        url = `http://${hostForUrl(o.host)}:${address.port}`;
        resolve();
      });
      s.listen(o.port, o.host);
    });
  });

  return {
    get url() {
      return url;
    },
    listening,
    close() {
      const s = server;
      server = undefined;
      url = undefined;
      if (!s) return Promise.resolve();
      // A listen still in progress finishes first, or the port would be taken after close().
      return listening.then(
        () =>
          new Promise<void>((resolve) => {
            if (!s.listening) {
              resolve();
              return;
            }
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      );
    },
  };
}

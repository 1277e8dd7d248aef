import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  cleanEnv,
  eventually,
  fixture,
  freePort,
  get,
  killChildren,
  NODE22,
  NODE24,
  PRELOAD,
  readReport,
  start,
  tempDir,
} from './preload-helpers.js';

let receiver: Server;
let receiverUrl = '';
beforeEach(async () => {
  receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{}'));
  });
  receiver.listen(0, '127.0.0.1');
  await once(receiver, 'listening');
  receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
});
afterEach(async () => {
  await killChildren();
  await new Promise((resolve) => receiver.close(resolve));
});

// Timers come from the handles source by default, from the async-hooks source when it is named.
describe.each([
  ['Node 24', NODE24, 'fs,net,async-hooks,buffer-pool'],
  ['Node 22', NODE22, 'fs,net,async-hooks,buffer-pool'],
  ['Node 24, default plugins', NODE24, undefined],
  ['Node 22, default plugins', NODE22, undefined],
] as const)("the preload's own resources on %s", (_name, node, plugins) => {
  it.runIf(node !== undefined)(
    "its endpoint, scrapes, exporter connections, signal handlers and stdio are not the application's",
    async () => {
      const dir = await tempDir();
      try {
        const file = join(dir.path, 'report.json');
        const port = await freePort();
        const app = start(node!, ['--import', PRELOAD, fixture('app-quiet.mjs'), '2500'], {
          env: cleanEnv({
            TRUSTFLOW_REPORT: 'exit',
            TRUSTFLOW_REPORT_FILE: file,
            TRUSTFLOW_STACKS: 'all',
            ...(plugins ? { TRUSTFLOW_PLUGINS: plugins } : {}),
            OTEL_EXPORTER_PROMETHEUS_PORT: String(port),
            OTEL_METRICS_EXPORTER: 'prometheus,otlp',
            OTEL_TRACES_EXPORTER: 'otlp',
            OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
            OTEL_METRIC_EXPORT_INTERVAL: '100',
          }),
        });
        await app.line(/^ready$/);
        const base = `http://127.0.0.1:${port}`;
        // scrapes while it runs: the live report sees none of the endpoint's sockets
        const live = await eventually(async () => {
          const r = await get(`${base}/trustflow/report?open=1`);
          return r.status === 200 ? JSON.parse(r.body) : undefined;
        }, 'the endpoint');
        for (let i = 0; i < 3; i++) expect((await get(`${base}/metrics`)).status).toBe(200);
        // open now: only the application's own sleep timer
        expect(
          live.leaks.map((l: { kind: string; site: string }) => [
            l.kind,
            l.site?.replace(/:\d+:\d+$/, ''),
          ]),
        ).toEqual([['timer', fixture('app-quiet.mjs')]]);
        expect(live.opened['net.server'] ?? 0).toBe(0);
        expect(live.opened['net.socket'] ?? 0).toBe(0);
        const end = await app.exited;
        expect(end.code).toBe(0);
        expect(end.stdout).toContain('bye');
        const report = await readReport(file);
        expect(report.leaks).toEqual([]);
        expect(report.opened['net.server'] ?? 0).toBe(0);
        expect(report.opened['net.socket'] ?? 0).toBe(0);
        expect(Object.keys(report.opened).filter((k) => k.startsWith('async.'))).toEqual([]);
      } finally {
        await dir.remove();
      }
    },
  );
});

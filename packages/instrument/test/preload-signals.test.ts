import { once } from 'node:events';
import { watch } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanEnv,
  fixture,
  killChildren,
  lineOf,
  NODE24,
  PRELOAD,
  readReport,
  start,
  tempDir,
} from './preload-helpers.js';

const APP = fixture('app-serve.mjs');
let fdLine = 0;
let receiver: Server;
let receiverUrl = '';
/** OTLP requests received so far (the receiver emits 'push' for each). */
let pushes = 0;

beforeAll(async () => {
  fdLine = await lineOf(APP, 'LEAK:fd');
  // An OTLP endpoint that accepts everything, so the push exporters have somewhere to flush.
  receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      pushes++;
      receiver.emit('push');
      res.end('{}');
    });
  });
  receiver.listen(0, '127.0.0.1');
  await once(receiver, 'listening');
  receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
  return () => new Promise<void>((resolve) => receiver.close(() => resolve()));
});
afterEach(killChildren);

/** Resolves when `name` appears (or is replaced) in `dir`: the report is written by rename. */
function fileWritten(dir: string, name: string): Promise<void> {
  return new Promise((resolve) => {
    const watcher = watch(dir, (_event, file) => {
      if (file === name) {
        watcher.close();
        resolve();
      }
    });
  });
}

async function started(mode: string[], env: Record<string, string>, preload = true) {
  const app = start(NODE24, [...(preload ? ['--import', PRELOAD] : []), APP, ...mode], {
    env: cleanEnv(env),
  });
  await app.line(/^ready$/);
  return app;
}

function fdSites(report: { leaks: { kind: string; site: string | null }[] }): string[] {
  return report.leaks
    .filter((l) => l.kind === 'fs.fd')
    .map((l) => l.site?.replace(/:\d+$/, '') ?? 'null');
}

describe('signals under the preload', () => {
  it('an app without a SIGTERM handler still dies by SIGTERM, after its exit report and a flush', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'report.json');
      const plain = await started([], {}, false);
      plain.child.kill('SIGTERM');
      const plainEnd = await plain.exited;

      const app = await started([], {
        TRUSTFLOW_REPORT: 'exit',
        TRUSTFLOW_REPORT_FILE: file,
        TRUSTFLOW_STACKS: 'all',
        // a push exporter: the preload flushes it (bounded) before the signal takes effect
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
        OTEL_METRIC_EXPORT_INTERVAL: '100',
      });
      // once the exporter runs, SIGTERM: the flush pushes once more before the process ends
      await once(receiver, 'push');
      const before = pushes;
      app.child.kill('SIGTERM');
      const end = await app.exited;
      expect(pushes).toBeGreaterThan(before);
      expect(plainEnd.signal).toBe('SIGTERM');
      expect([end.code, end.signal]).toEqual([plainEnd.code, plainEnd.signal]);
      expect(end.stderr).toBe('');
      expect(fdSites(await readReport(file))).toEqual([`${APP}:${fdLine}`]);
    } finally {
      await dir.remove();
    }
  });

  it('SIGINT without a handler ends the app by SIGINT, as without the preload', async () => {
    const app = await started([], {
      TRUSTFLOW_REPORT: 'exit',
      TRUSTFLOW_REPORT_FILE: join(await tempDirPath(), 'r.json'),
    });
    app.child.kill('SIGINT');
    const end = await app.exited;
    expect([end.code, end.signal]).toEqual([null, 'SIGINT']);
  });

  it('an app with its own SIGTERM handler keeps control: its exit code, and its exit report', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'report.json');
      const app = await started(['exit'], {
        TRUSTFLOW_REPORT: 'exit',
        TRUSTFLOW_REPORT_FILE: file,
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
      });
      app.child.kill('SIGTERM');
      const end = await app.exited;
      expect([end.code, end.signal]).toEqual([7, null]);
      expect(end.stdout).toContain('app: SIGTERM, exiting with 7');
      expect((await readReport(file)).leaks.map((l) => l.kind)).toContain('fs.fd');
    } finally {
      await dir.remove();
    }
  });

  it('an app whose SIGTERM handler does not exit keeps running', async () => {
    const app = await started(['ignore'], {
      TRUSTFLOW_REPORT: 'exit',
      TRUSTFLOW_REPORT_FILE: join(await tempDirPath(), 'r.json'),
      OTEL_METRICS_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
    });
    app.child.kill('SIGTERM');
    await app.line(/^app: SIGTERM ignored$/);
    const ticks = app
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('tick')).length;
    await app.line(new RegExp(`^tick ${ticks + 2}$`));
    expect(app.child.exitCode).toBeNull();
    expect(app.child.signalCode).toBeNull();
  });

  it('SIGUSR2 writes a report and the app keeps running', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'report.json');
      const app = await started([], {
        TRUSTFLOW_REPORT: 'signal',
        TRUSTFLOW_REPORT_FILE: file,
        TRUSTFLOW_STACKS: 'all',
      });
      const first = fileWritten(dir.path, 'report.json');
      app.child.kill('SIGUSR2');
      await first;
      const report = await readReport(file);
      expect(report.pid).toBe(app.child.pid);
      expect(fdSites(report)).toEqual([`${APP}:${fdLine}`]);
      const ticks = app
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('tick')).length;
      await app.line(new RegExp(`^tick ${ticks + 2}$`));
      // again: a new report replaces the first
      const second = fileWritten(dir.path, 'report.json');
      app.child.kill('SIGUSR2');
      await second;
      expect((await readReport(file)).generatedAt).not.toBe(report.generatedAt);
      expect(app.child.exitCode).toBeNull();
      // no SIGTERM handler was installed for this configuration: the signal acts as usual
      app.child.kill('SIGTERM');
      const end = await app.exited;
      expect([end.code, end.signal]).toEqual([null, 'SIGTERM']);
      expect(end.stderr).toBe('');
    } finally {
      await dir.remove();
    }
  });
});

const dirs: { remove(): Promise<void> }[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await d.remove();
});
async function tempDirPath(): Promise<string> {
  const d = await tempDir();
  dirs.push(d);
  return d.path;
}

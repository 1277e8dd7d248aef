import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMetricsHarness, createTracingHarness } from '@trustflow/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { instrument } from '../src/index.js';
import type { Instrumentation } from '../src/types.js';
import {
  cleanEnv,
  fixture,
  get,
  killChildren,
  lineOf,
  NODE24,
  readReport,
  run,
  tempDir,
} from './preload-helpers.js';

const self = fileURLToPath(import.meta.url);
const running: Instrumentation[] = [];
afterEach(async () => {
  for (const i of running.splice(0)) await i.shutdown();
  await killChildren();
});

describe('instrument() (programmatic)', () => {
  it('returns the tracker the plugins report to, and shutdown() undoes everything', async () => {
    const inst = instrument({
      env: {},
      plugins: ['fs'],
      metricsExporters: [],
      report: 'off',
      signals: false,
    });
    running.push(inst);
    expect(instrument()).toBe(inst); // one per process
    const fd = openSync(self, 'r');
    expect(inst.tracker.snapshot().active['fs.fd']).toBe(1);
    closeSync(fd);
    expect(inst.tracker.snapshot().active['fs.fd']).toBe(0);
    expect(inst.report().schema).toBe('trustflow.report/v1');
    await inst.shutdown();
    expect(inst.tracker.isShutdown).toBe(true);
    closeSync(openSync(self, 'r'));
    expect(inst.tracker.snapshot().opened['fs.fd']).toBe(1);
    // a new one can start after shutdown
    const again = instrument({ env: {}, plugins: [], metricsExporters: [], signals: false });
    running.push(again);
    expect(again).not.toBe(inst);
  });

  it('serves metrics when asked, once ready', async () => {
    const inst = instrument({
      env: {},
      plugins: ['fs'],
      prometheusPort: 0,
      signals: false,
    });
    running.push(inst);
    await inst.ready;
    const url = inst.metricsUrl;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const fd = openSync(self, 'r');
    try {
      const { body } = await get(url!);
      expect(body).toMatch(
        /^trustflow_resource_active\{trustflow_resource_kind="fs\.fd",[^}]*\} 1$/m,
      );
    } finally {
      closeSync(fd);
    }
  });

  it("feeds the application's own meter and tracer providers, and starts no exporter", async () => {
    const metricsHarness = createMetricsHarness();
    const tracing = createTracingHarness();
    const inst = instrument({
      env: {},
      plugins: ['fs'],
      signals: false,
      meterProvider: metricsHarness.provider,
      tracerProvider: tracing.provider,
    });
    running.push(inst);
    await inst.ready;
    expect(inst.metricsUrl).toBeUndefined();
    const fd = openSync(self, 'r');
    const active = await metricsHarness.find('trustflow.resource.active');
    expect(
      active?.dataPoints.find((p) => p.attributes['trustflow.resource.kind'] === 'fs.fd')?.value,
    ).toBe(1);
    closeSync(fd);
    expect(tracing.spans().map((s) => s.name)).toContain('fs.fd');
    await inst.shutdown();
    await metricsHarness.shutdown();
    await tracing.shutdown();
  });

  it('a bad option is a TypeError naming it', () => {
    expect(() => instrument({ env: {}, stacks: 'every' as never })).toThrow(
      "instrument: option stacks must be 'off', 'sampled' or 'all', got every",
    );
    expect(() => instrument({ env: {}, meterProvider: {} as never })).toThrow(
      'instrument: option meterProvider must be an OpenTelemetry MeterProvider',
    );
  });

  it('works from an application imported as @trustflow/instrument/api', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'report.json');
      const app = fixture('app-programmatic.mjs');
      const result = await run(NODE24, [app], {
        env: cleanEnv({ TRUSTFLOW_REPORT_FILE: file }),
      });
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe('tracked fds: 1\n');
      const report = await readReport(file);
      expect(report.leaks.map((l) => [l.kind, l.site?.replace(/:\d+$/, '')])).toEqual([
        ['fs.fd', `${app}:${await lineOf(app, 'LEAK:fd')}`],
      ]);
    } finally {
      await dir.remove();
    }
  });
});

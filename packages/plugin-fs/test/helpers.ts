import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createResourceTracker, type ResourceTracker, type TrustflowPlugin } from '@trustflow/core';
import {
  createMetricsHarness,
  createTracingHarness,
  type MetricsHarness,
  type TracingHarness,
} from '@trustflow/test-utils';
import { fsPlugin } from '../src/index.js';
import type { FsPluginOptions } from '../src/types.js';

export interface Fixture {
  dir: string;
  tracker: ResourceTracker;
  plugin: TrustflowPlugin;
  metrics: MetricsHarness;
  tracing: TracingHarness;
  cleanup(): Promise<void>;
}

/** A temp directory, a tracker with in-memory metrics and spans, and the fs plugin enabled. */
export function setup(
  options: FsPluginOptions = {},
  trackerOptions: Parameters<typeof createResourceTracker>[0] = {},
): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'trustflow-fs-'));
  const metrics = createMetricsHarness();
  const tracing = createTracingHarness();
  const tracker = createResourceTracker({
    stacks: 'all',
    scanIntervalMs: 0,
    meter: metrics.meter,
    tracer: tracing.tracer,
    ...trackerOptions,
  });
  const plugin = fsPlugin(options);
  plugin.enable({ tracker, meter: metrics.meter, tracer: tracing.tracer });
  return {
    dir,
    tracker,
    plugin,
    metrics,
    tracing,
    async cleanup() {
      plugin.disable();
      tracker.shutdown();
      await metrics.shutdown();
      await tracing.shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Line number (1-based) of the first line of `file` containing `marker`. */
export function lineOf(file: string, marker: string): number {
  const lines = readFileSync(file, 'utf8').split('\n');
  const index = lines.findIndex((l) => l.includes(marker) && !l.includes('lineOf('));
  if (index < 0) throw new Error(`marker ${marker} not found in ${file}`);
  return index + 1;
}

/** A `file:line:` regular expression for a marker line of `file`. */
export function siteOf(file: string, marker: string): RegExp {
  return new RegExp(`^${escapeRegExp(file)}:${lineOf(file, marker)}:\\d+$`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

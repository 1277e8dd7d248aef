import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Server, Socket } from 'node:net';
import { createResourceTracker, type ResourceTracker, type TrustflowPlugin } from '@trustflow/core';
import {
  createMetricsHarness,
  createTracingHarness,
  type MetricsHarness,
  type TracingHarness,
} from '@trustflow/test-utils';
import { netPlugin } from '../src/index.js';
import type { NetPluginOptions } from '../src/types.js';

export interface Fixture {
  tracker: ResourceTracker;
  plugin: TrustflowPlugin;
  metrics: MetricsHarness;
  tracing: TracingHarness;
  cleanup(): Promise<void>;
}

/** A tracker with in-memory metrics and spans, and the net plugin enabled. */
export function setup(
  options: NetPluginOptions = {},
  trackerOptions: Parameters<typeof createResourceTracker>[0] = {},
): Fixture {
  const metrics = createMetricsHarness();
  const tracing = createTracingHarness();
  const tracker = createResourceTracker({
    stacks: 'all',
    scanIntervalMs: 0,
    meter: metrics.meter,
    tracer: tracing.tracer,
    ...trackerOptions,
  });
  const plugin = netPlugin(options);
  plugin.enable({ tracker, meter: metrics.meter, tracer: tracing.tracer });
  return {
    tracker,
    plugin,
    metrics,
    tracing,
    async cleanup() {
      plugin.disable();
      tracker.shutdown();
      await metrics.shutdown();
      await tracing.shutdown();
    },
  };
}

export const tlsFiles = {
  key: readFileSync(new URL('./fixtures/localhost-key.pem', import.meta.url)),
  cert: readFileSync(new URL('./fixtures/localhost-cert.pem', import.meta.url)),
};

export function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

/**
 * Resolves when the socket has emitted 'close' (at once if it already has). `socket.closed` turns
 * true a tick before the event, so the stream state's `closeEmitted` is read instead.
 */
export function closed(socket: Socket): Promise<void> {
  const state = (socket as unknown as { _readableState?: { closeEmitted?: boolean } })
    ._readableState;
  if (state?.closeEmitted) return Promise.resolve();
  return once(socket, 'close').then(() => undefined);
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

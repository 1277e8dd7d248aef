import { readFile } from 'node:fs/promises';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Libp2p, Metrics, Stream } from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import { createResourceTracker, type ResourceTracker } from '@trustflow/core';
import { createMetricsHarness, type MetricsHarness } from '@trustflow/test-utils';
import { createLibp2p, type Libp2pOptions } from 'libp2p';
import { libp2pMetrics } from '../src/index.js';
import type { Libp2pMetricsComponents, Libp2pMetricsInit } from '../src/types.js';

const cleanups: (() => Promise<void> | void)[] = [];

/** Runs every registered cleanup, last first (call from afterEach). */
export async function cleanup(): Promise<void> {
  for (const fn of cleanups.splice(0).reverse()) await fn();
}

export interface Instrumented {
  node: Libp2p;
  /** The node's Metrics object (ours). */
  metrics: Metrics;
  tracker: ResourceTracker;
  /** Collects the tracker's metrics (trustflow.resource.*). */
  trackerMetrics: MetricsHarness;
  /** Collects what the libp2p metrics export (byte counters and libp2p's own metrics). */
  libp2p: MetricsHarness;
}

const base = (): Libp2pOptions => ({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  // no periodic pings: every stream in a test is one the test opened
  connectionMonitor: { enabled: false },
});

/** A plain libp2p node (no metrics) on 127.0.0.1. */
export async function plainNode(): Promise<Libp2p> {
  const node = await createLibp2p(base());
  cleanups.push(() => node.stop());
  return node;
}

/** A libp2p node using our metrics, with its own tracker and in-memory readers. */
export async function instrumentedNode(
  options: {
    tracker?: Parameters<typeof createResourceTracker>[0];
    init?: Libp2pMetricsInit;
    libp2p?: Partial<Libp2pOptions>;
  } = {},
): Promise<Instrumented> {
  const trackerMetrics = createMetricsHarness('tracker');
  const libp2p = createMetricsHarness('libp2p');
  const tracker = createResourceTracker({
    scanIntervalMs: 0,
    stacks: 'all',
    meter: trackerMetrics.meter,
    ...options.tracker,
  });
  const factory = libp2pMetrics({ tracker, meter: libp2p.meter, ...options.init });
  const node = await createLibp2p({
    ...base(),
    ...options.libp2p,
    metrics: (components: Libp2pMetricsComponents) => factory(components),
  });
  cleanups.push(async () => {
    await node.stop();
    tracker.shutdown();
    await trackerMetrics.shutdown();
    await libp2p.shutdown();
  });
  return { node, metrics: node.metrics as Metrics, tracker, trackerMetrics, libp2p };
}

/** Resolves when the stream has emitted 'close' (at once if it already has). */
export function closed(stream: Stream): Promise<void> {
  if (stream.status !== 'open' && stream.status !== 'closing') return Promise.resolve();
  return new Promise((resolve) =>
    stream.addEventListener('close', () => resolve(), { once: true }),
  );
}

/** Sends `data` in chunks, honouring back-pressure. */
export async function sendAll(stream: Stream, data: Uint8Array, chunk = 64 * 1024): Promise<void> {
  for (let offset = 0; offset < data.length; offset += chunk) {
    if (!stream.send(data.subarray(offset, offset + chunk))) await stream.onDrain();
  }
}

/** Reads until the remote closes its write side. */
export async function readAll(stream: Stream): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk.subarray());
  return Buffer.concat(chunks);
}

/** Echoes everything back, then closes. */
export async function echo(stream: Stream): Promise<void> {
  for await (const chunk of stream) {
    if (!stream.send(chunk)) await stream.onDrain();
  }
  await stream.close();
}

export function randomBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** The data points of a metric as { attributes, value }. */
export async function points(harness: MetricsHarness, name: string) {
  const metric = await harness.find(name);
  return (metric?.dataPoints ?? []).map((d) => ({ attributes: d.attributes, value: d.value }));
}

/** The value of the data point whose attributes include `match`. */
export async function pointValue(
  harness: MetricsHarness,
  name: string,
  match: Record<string, unknown>,
): Promise<unknown> {
  const all = await points(harness, name);
  return all.find((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))?.value;
}

/** Line number (1-based) of the first line of `file` containing `marker`. */
export async function lineOf(file: string, marker: string): Promise<number> {
  const lines = (await readFile(file, 'utf8')).split('\n');
  const index = lines.findIndex((l) => l.includes(marker) && !l.includes('lineOf('));
  if (index < 0) throw new Error(`marker ${marker} not found`);
  return index + 1;
}

export function register(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

// Shared by the libp2p and buffer-pool workloads: loads packages from the plugin packages' own
// dependencies (the bench package does not depend on libp2p), and sets up OpenTelemetry the way
// the preload would (an SDK meter provider whose reader only collects when scraped, with the
// tracker's lifetime histogram through a MetricProducer).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { root } from '../lib.mjs';

/** Imports `name` as installed for packages/<pkg> (the ESM `import` entry of its exports). */
export async function load(name, pkg = 'plugin-libp2p') {
  const dir = join(root, 'packages', pkg, 'node_modules', name);
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const dot = manifest.exports?.['.'] ?? manifest.exports ?? manifest.main ?? 'index.js';
  const entry = typeof dot === 'string' ? dot : (dot.import ?? dot.default);
  return import(pathToFileURL(join(dir, typeof entry === 'string' ? entry : entry.default)).href);
}

/** Our own packages, from their built dist/. */
export function own(pkg) {
  return import(pathToFileURL(join(root, 'packages', pkg, 'dist', 'index.js')).href);
}

/**
 * Registers an SDK meter provider globally (collected only on demand, like a scrape). Its reader
 * takes the default tracker's lifetime histogram from core's lifetimeProducer(), as the preload's
 * readers do and as the core README recommends to applications with an SDK of their own.
 * `stacks` replaces the default tracker by one with that stack mode.
 */
export async function installMeterProvider({ stacks } = {}) {
  // sdk-metrics alone, as the preload loads it when traces are off (test-utils would bring the
  // trace SDK too: a bigger heap, which every major GC of a buffer-heavy workload walks)
  const { MeterProvider, MetricReader } = await load('@opentelemetry/sdk-metrics', 'test-utils');
  const { metrics } = await load('@opentelemetry/api');
  class OnDemandReader extends MetricReader {
    async onForceFlush() {}
    async onShutdown() {}
  }
  let producer;
  const reader = new OnDemandReader({ metricProducers: [{ collect: () => producer.collect() }] });
  const provider = new MeterProvider({ readers: [reader] });
  metrics.setGlobalMeterProvider(provider);
  const { createResourceTracker, lifetimeProducer, setDefaultTracker } = await own('core');
  // another stack mode than the default tracker's (sampled): a default tracker of its own
  if (stacks)
    setDefaultTracker(
      createResourceTracker({ stacks, meter: metrics.getMeter('@trustflow/core') }),
    );
  producer = lifetimeProducer();
  return { provider, collect: () => reader.collect() };
}

/** Observes GC pauses: returns a function giving the total GC time (ms) since the last call. */
export async function gcClock() {
  const { PerformanceObserver } = await import('node:perf_hooks');
  let total = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) total += entry.duration;
  });
  observer.observe({ entryTypes: ['gc'] });
  return {
    take() {
      const t = total;
      total = 0;
      return t;
    },
    stop() {
      observer.disconnect();
    },
  };
}

/**
 * Two libp2p nodes in this process (TCP on 127.0.0.1, noise, yamux) with an `/echo/1` handler on
 * the server, connected. `modules` are the loaded libp2p, @libp2p/tcp, noise and yamux modules;
 * `metricsFor()` gives each node its `metrics` (or undefined). `oneStream()` opens a stream,
 * sends 64 bytes, reads the echo and closes.
 */
export async function echoPair({ createLibp2p, tcp, noise, yamux }, metricsFor = () => undefined) {
  const node = () => {
    const metrics = metricsFor();
    return createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionMonitor: { enabled: false },
      ...(metrics ? { metrics } : {}),
    });
  };
  const server = await node();
  const client = await node();
  const echo = async (stream) => {
    for await (const chunk of stream) {
      if (!stream.send(chunk)) await stream.onDrain();
    }
    await stream.close();
  };
  await server.handle('/echo/1', (stream) => void echo(stream).catch(() => {}), {
    maxInboundStreams: 64,
  });
  const target = server.getMultiaddrs()[0];
  await client.dial(target);
  const small = new Uint8Array(64).fill(7);
  const oneStream = async () => {
    const stream = await client.dialProtocol(target, '/echo/1');
    stream.send(small);
    await stream.close();
    let got = 0;
    for await (const chunk of stream) got += chunk.byteLength;
    if (got !== small.length) throw new Error(`echoed ${got} bytes`);
    return 1;
  };
  return { server, client, target, oneStream };
}

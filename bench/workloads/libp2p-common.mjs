// Shared by the libp2p and buffer-pool workloads: loads packages from the plugin packages' own
// dependencies (the bench package does not depend on libp2p), and sets up OpenTelemetry the way
// the preload would (an SDK meter provider whose reader only collects when scraped).
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

/** Registers an SDK meter provider globally (collected only on demand, like a scrape). */
export async function installMeterProvider() {
  const { createMetricsHarness } = await own('test-utils');
  const { metrics } = await load('@opentelemetry/api');
  const harness = createMetricsHarness('bench');
  metrics.setGlobalMeterProvider(harness.provider);
  return harness;
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

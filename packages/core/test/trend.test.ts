import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createMetricsHarness } from '@trustflow/test-utils';
import { describe, expect, it } from 'vitest';
import {
  createResourceTracker,
  createTrendMonitor,
  estimateGrowth,
  type GrowthPoint,
  type TrendEvent,
} from '../src/index.js';

const MB = 1024 * 1024;
const HOUR = 3_600_000;
const MINUTE = 60_000;
const SEEDS = 20;

/** Deterministic PRNG (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

type Shape = 'leak' | 'sawtooth' | 'step' | 'warm-up' | 'flat';

/**
 * A heap-used series sampled every 30 s: 80 MB base, 0.5 MB noise, and (except `flat`) a GC
 * sawtooth of 20 MB whose period varies between 7 and 13 minutes. On top: `leak` adds 3 MB/h,
 * `step` adds 30 MB once at a random time, `warm-up` adds 40 MB approached with a 20-minute time
 * constant.
 */
function heapSeries(shape: Shape, seed: number, hours = 6): GrowthPoint[] {
  const r = random(seed);
  const points: GrowthPoint[] = [];
  let period = 10 * MINUTE * (0.7 + 0.6 * r());
  let sinceGc = r() * period;
  const stepAt = (0.1 + 0.8 * r()) * hours * HOUR;
  for (let t = 0; t <= hours * HOUR; t += 30_000) {
    sinceGc += 30_000;
    if (sinceGc >= period) {
      sinceGc = 0;
      period = 10 * MINUTE * (0.7 + 0.6 * r());
    }
    let v = 80 * MB + gaussian(r) * 0.5 * MB;
    if (shape !== 'flat') v += 20 * MB * (sinceGc / period);
    if (shape === 'leak') v += 3 * MB * (t / HOUR);
    if (shape === 'step' && t >= stepAt) v += 30 * MB;
    if (shape === 'warm-up') v += 40 * MB * (1 - Math.exp(-t / (20 * MINUTE)));
    points.push({ t, v });
  }
  return points;
}

describe('estimateGrowth', () => {
  it('calls 3 MB/h under a GC sawtooth a leak, with the right slope and a useful confidence', () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const e = estimateGrowth(heapSeries('leak', seed), { minSlopePerHour: MB });
      expect(e.verdict, `seed ${seed}: ${e.reason}`).toBe('growing');
      expect(e.slopePerHour / MB).toBeGreaterThan(2.7);
      expect(e.slopePerHour / MB).toBeLessThan(3.3);
      expect(e.confidence).toBeGreaterThanOrEqual(0.95);
      expect(e.points).toBe(721);
      expect(e.spanMs).toBe(6 * HOUR);
      expect(e.reason).toMatch(/^grows 3\.\d\de\+6\/h over 6\.0 h, in every third of the window/);
    }
  });

  it('does not call a GC sawtooth, a step or a warm-up a leak', () => {
    for (const shape of ['sawtooth', 'step', 'warm-up', 'flat'] as const) {
      for (let seed = 1; seed <= SEEDS; seed++) {
        const e = estimateGrowth(heapSeries(shape, seed), { minSlopePerHour: MB });
        expect(e.verdict, `${shape} seed ${seed}: ${e.reason}`).toBe('stable');
        expect(e.confidence, `${shape} seed ${seed}`).toBeLessThan(0.95);
      }
    }
    // The step is still seen as growth overall; the verdict says why it is not a leak.
    const step = estimateGrowth(heapSeries('step', 3), { minSlopePerHour: MB });
    expect(step.slopePerHour).toBeGreaterThan(0);
    expect(step.reason).toMatch(/^growth not sustained: the thirds of the window grew/);
  });

  it('finds a slow fd leak under bursts (the Go node swung from 13 to 138 fds)', () => {
    const r = random(7);
    const leak: GrowthPoint[] = [];
    const clean: GrowthPoint[] = [];
    for (let t = 0; t <= 6 * HOUR; t += 30_000) {
      const burst = r() < 0.1 ? Math.floor(r() * 125) : Math.floor(r() * 5);
      clean.push({ t, v: 13 + burst });
      leak.push({ t, v: 13 + burst + Math.floor((6 * t) / HOUR) });
    }
    const found = estimateGrowth(leak, { minSlopePerHour: 1 });
    expect(found.verdict, found.reason).toBe('growing');
    expect(found.slopePerHour).toBeCloseTo(6, 0);
    expect(estimateGrowth(clean, { minSlopePerHour: 1 }).verdict).toBe('stable');
  });

  it('sorts its input, honours the minimums, and says when there is not enough data', () => {
    const points = heapSeries('leak', 1).reverse();
    expect(estimateGrowth(points).verdict).toBe('growing');
    expect(estimateGrowth(points, { minSlopePerHour: 10 * MB })).toMatchObject({
      verdict: 'stable',
      reason: expect.stringMatching(/under the minimum of 1\.05e\+7\/h/),
    });
    expect(estimateGrowth(points.slice(0, 5))).toMatchObject({
      verdict: 'insufficient-data',
      reason: 'only 5 points (need 12)',
      points: 5,
    });
    expect(estimateGrowth(points, { minSpanMs: 8 * HOUR })).toMatchObject({
      verdict: 'insufficient-data',
      reason: 'the points span 6.0 h (need 8.0 h)',
    });
    expect(estimateGrowth([])).toMatchObject({ verdict: 'insufficient-data', spanMs: 0 });
    const sameTime = Array.from({ length: 20 }, (_, i) => ({ t: 5, v: i }));
    expect(estimateGrowth(sameTime).verdict).toBe('insufficient-data');
  });

  it('rejects bad input with a one-line error naming the point', () => {
    expect(() => estimateGrowth('x' as never)).toThrow('estimateGrowth: points must be an array');
    expect(() =>
      estimateGrowth([
        { t: 0, v: 1 },
        { t: 1, v: Number.NaN },
      ]),
    ).toThrow('estimateGrowth: point 1 must have finite numbers t and v, got {"t":1,"v":null}');
    expect(() => estimateGrowth([], { minConfidence: 2 })).toThrow(
      'estimateGrowth: option minConfidence must be a number in [0.5, 1], got 2',
    );
  });
});

describe('createTrendMonitor', () => {
  it('fires trend once for a leaking series, not for a sawtooth, and publishes growth rates', async () => {
    const metrics = createMetricsHarness();
    const leak = heapSeries('leak', 11, 8);
    const saw = heapSeries('sawtooth', 12, 8);
    let i = 0;
    let now = 0;
    const monitor = createTrendMonitor({
      intervalMs: 0,
      builtins: false,
      now: () => now,
      meter: metrics.meter,
      source: () => ({ 'app.leaky.bytes': leak[i]!.v, 'app.sawtooth.bytes': saw[i]!.v }),
    });
    const events: TrendEvent[] = [];
    monitor.on('trend', (e) => events.push(e));
    for (; i < leak.length; i++) {
      now = leak[i]!.t;
      monitor.sample();
    }
    expect(events.map((e) => e.series)).toEqual(['app.leaky.bytes']);
    const [event] = events;
    expect(event!.verdict).toBe('growing');
    expect(event!.slopePerHour / MB).toBeGreaterThan(2.5);
    expect(event!.slopePerHour / MB).toBeLessThan(3.5);
    expect(event!.confidence).toBeGreaterThanOrEqual(0.95);
    // Not before the minimum span of 2 h.
    expect(event!.spanMs).toBeGreaterThanOrEqual(2 * HOUR);
    expect(event!.value).toBeGreaterThan(80 * MB);

    const estimates = monitor.estimates();
    expect(estimates['app.leaky.bytes']?.verdict).toBe('growing');
    expect(estimates['app.sawtooth.bytes']?.verdict).toBe('stable');
    // The window slid: 6 h of 30 s samples.
    expect(estimates['app.leaky.bytes']?.points).toBe(721);

    const rate = await metrics.find('trustflow.trend.growth_rate');
    expect(rate?.descriptor.unit).toBe('{value}/h');
    const bySeries = Object.fromEntries(
      (rate?.dataPoints ?? []).map((p) => [p.attributes['trustflow.trend.series'], p.value]),
    );
    expect(Object.keys(bySeries).sort()).toEqual(['app.leaky.bytes', 'app.sawtooth.bytes']);
    expect((bySeries['app.leaky.bytes'] as number) / MB).toBeCloseTo(3, 0);
    const confidence = await metrics.find('trustflow.trend.confidence');
    expect(confidence?.descriptor.unit).toBe('1');
    monitor.stop();
    await metrics.shutdown();
  });

  it('samples active resources per kind from a tracker', () => {
    const tracker = createResourceTracker({ scanIntervalMs: 0 });
    let now = 0;
    const monitor = createTrendMonitor({ intervalMs: 0, tracker, now: () => now });
    const events: TrendEvent[] = [];
    monitor.on('trend', (e) => events.push(e));
    const kept: object[] = [];
    const spec = { kind: 'test.socket', gc: false };
    // 12 leaked sockets an hour while 50 more open and close between samples.
    for (let step = 0; step <= 6 * 120; step++) {
      now = step * 30_000;
      const churn = Array.from({ length: 50 }, () => tracker.track({}, spec));
      if (step % 10 === 0) kept.push(tracker.track({}, spec));
      monitor.sample();
      for (const handle of churn) handle.release();
    }
    const estimates = monitor.estimates();
    expect(Object.keys(estimates)).toEqual(
      expect.arrayContaining(['heap.used', 'process.rss', 'resource.test.socket']),
    );
    expect(estimates['resource.test.socket']?.verdict).toBe('growing');
    expect(estimates['resource.test.socket']?.slopePerHour).toBeCloseTo(12, 0);
    expect(events.filter((e) => e.series === 'resource.test.socket')).toHaveLength(1);
    monitor[Symbol.dispose]();
    tracker.shutdown();
  });

  it('rejects bad options with a one-line error', () => {
    expect(() => createTrendMonitor({ windowMs: 0 })).toThrow(
      'createTrendMonitor: option windowMs must be a positive number, got 0',
    );
    expect(() => createTrendMonitor({ windowMs: 1000, minSpanMs: 2000 })).toThrow(
      /option minSpanMs must be a number in \[0, windowMs 1000\], got 2000/,
    );
    expect(() => createTrendMonitor({ tracker: {} as never })).toThrow(
      'createTrendMonitor: option tracker must be a resource tracker',
    );
  });

  it('finds the heap growth of a real leaking process and not of a clean one', async () => {
    const child = fileURLToPath(new URL('./fixtures/prevention-trend.mjs', import.meta.url));
    const run = async (mode: string) => {
      const { stdout } = await promisify(execFile)(process.execPath, [child, mode, '6000']);
      return stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { event: string; series?: string });
    };
    const [leaking, clean] = await Promise.all([run('leak'), run('clean')]);
    expect(leaking.filter((e) => e.event === 'trend').map((e) => e.series)).toContain('heap.used');
    // RSS of a process a few seconds old still grows while V8 and malloc commit pages; on this
    // compressed clock that looks like a leak, so only the heap is judged here.
    expect(clean.filter((e) => e.event === 'trend' && e.series === 'heap.used')).toEqual([]);
    expect(clean.at(-1)?.event).toBe('end');
  }, 30_000);
});

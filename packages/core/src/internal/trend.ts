import { getHeapStatistics } from 'node:v8';
import { type BatchObservableCallback, metrics, type ObservableGauge } from '@opentelemetry/api';
import type {
  GrowthEstimate,
  GrowthOptions,
  GrowthPoint,
  ResourceTracker,
  TrendEvent,
  TrendMonitor,
  TrendMonitorOptions,
} from '../types.js';
import { ErrorSink } from './errors.js';
import { Listeners, numberOption } from './events.js';
import { openFdCount } from './proc.js';

/*
 * Growth estimation, in four steps:
 *
 * 1. Lower envelope. The window is cut into at most 48 equal time bins and each bin is reduced to
 *    its lowest point. Memory that is only garbage (a GC sawtooth, a burst of fds that get closed)
 *    is not in the floor; memory that is never given back raises it.
 * 2. Slope. Theil-Sen: the median of the slopes between every pair of envelope points. Half the
 *    points can be outliers before it moves, and it assumes nothing about the noise.
 * 3. Confidence. The Mann-Kendall statistic S (sum of the signs of every later-minus-earlier
 *    difference) is about normal with a known variance (corrected for ties) when the series has
 *    no trend; Phi(z) is the one-sided confidence that the series goes up (0.5: no evidence).
 * 4. Sustained. A leak keeps growing; a step (a cache filled once) or a warm-up grows in one
 *    place. The envelope is cut into thirds, and each third must grow on its own (its own
 *    Mann-Kendall confidence, and a Theil-Sen slope of at least a quarter of the overall one).
 *    A single step leaves two thirds flat, a warm-up leaves the last thirds flat; and the last
 *    third must grow at least a quarter as fast as the first (a warm-up fades out, a leak does
 *    not). `confidence` is the smallest of the four Mann-Kendall confidences.
 */

const HOUR_MS = 3_600_000;
const MAX_BINS = 48;
const THIRD_SLOPE_SHARE = 0.25;

interface Series2 {
  t: number[];
  v: number[];
}

/** Lowest point of each of at most `bins` equal time bins (time order kept). */
function envelope(t: readonly number[], v: readonly number[], bins: number): Series2 {
  const n = t.length;
  if (n <= bins) return { t: [...t], v: [...v] };
  const t0 = t[0]!;
  const width = (t[n - 1]! - t0) / bins;
  const outT: number[] = [];
  const outV: number[] = [];
  let bin = -1;
  for (let i = 0; i < n; i++) {
    const b = width > 0 ? Math.min(bins - 1, Math.floor((t[i]! - t0) / width)) : 0;
    if (b !== bin) {
      bin = b;
      outT.push(t[i]!);
      outV.push(v[i]!);
    } else if (v[i]! < outV[outV.length - 1]!) {
      outT[outT.length - 1] = t[i]!;
      outV[outV.length - 1] = v[i]!;
    }
  }
  return { t: outT, v: outV };
}

/** Median of pairwise slopes (per ms); 0 when no pair has distinct times. */
function theilSen(t: readonly number[], v: readonly number[], from: number, to: number): number {
  const slopes: number[] = [];
  for (let i = from; i < to; i++) {
    for (let j = i + 1; j < to; j++) {
      const dt = t[j]! - t[i]!;
      if (dt > 0) slopes.push((v[j]! - v[i]!) / dt);
    }
  }
  if (slopes.length === 0) return 0;
  slopes.sort((a, b) => a - b);
  const mid = slopes.length >> 1;
  return slopes.length % 2 === 1 ? slopes[mid]! : (slopes[mid - 1]! + slopes[mid]!) / 2;
}

/** Complementary error function (Numerical Recipes' erfcc, |error| < 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const k = 1 / (1 + z / 2);
  const r =
    k *
    Math.exp(
      -z * z -
        1.26551223 +
        k *
          (1.00002368 +
            k *
              (0.37409196 +
                k *
                  (0.09678418 +
                    k *
                      (-0.18628806 +
                        k *
                          (0.27886807 +
                            k *
                              (-1.13520398 +
                                k * (1.48851587 + k * (-0.82215223 + k * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** One-sided Mann-Kendall confidence of an upward trend of v[from..to) (already in time order). */
function mannKendall(v: readonly number[], from: number, to: number): number {
  const n = to - from;
  if (n < 3) return 0.5;
  let s = 0;
  for (let i = from; i < to; i++) {
    for (let j = i + 1; j < to; j++) s += Math.sign(v[j]! - v[i]!);
  }
  // Tie correction: groups of equal values reduce the variance of S.
  const counts = new Map<number, number>();
  for (let i = from; i < to; i++) counts.set(v[i]!, (counts.get(v[i]!) ?? 0) + 1);
  let ties = 0;
  for (const c of counts.values()) if (c > 1) ties += c * (c - 1) * (2 * c + 5);
  const variance = (n * (n - 1) * (2 * n + 5) - ties) / 18;
  if (variance <= 0 || s === 0) return 0.5;
  const z = (s > 0 ? s - 1 : s + 1) / Math.sqrt(variance);
  return normalCdf(z);
}

function fmt(x: number): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e6 || a < 1e-2) return x.toExponential(2);
  return x.toPrecision(3);
}

function duration(ms: number): string {
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 2 * HOUR_MS) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / HOUR_MS).toFixed(1)} h`;
}

interface Resolved {
  minConfidence: number;
  minSlopePerHour: number;
  minPoints: number;
  minSpanMs: number;
}

function resolveOptions(options: GrowthOptions, where: string): Resolved {
  return {
    minConfidence: numberOption(
      where,
      'minConfidence',
      options.minConfidence,
      0.95,
      (n) => n >= 0.5 && n <= 1,
      'a number in [0.5, 1]',
    ),
    minSlopePerHour: numberOption(
      where,
      'minSlopePerHour',
      options.minSlopePerHour,
      0,
      (n) => n >= 0,
      'a non-negative number',
    ),
    minPoints: numberOption(
      where,
      'minPoints',
      options.minPoints,
      12,
      (n) => n >= 6,
      'a number >= 6',
    ),
    minSpanMs: numberOption(
      where,
      'minSpanMs',
      options.minSpanMs,
      0,
      (n) => n >= 0,
      'a non-negative number',
    ),
  };
}

/** The estimator on time-sorted parallel arrays (the monitor's hot path: no objects). */
function estimate(t: readonly number[], v: readonly number[], o: Resolved): GrowthEstimate {
  const n = t.length;
  const spanMs = n > 0 ? t[n - 1]! - t[0]! : 0;
  const base = { points: n, spanMs };
  if (n < o.minPoints) {
    return {
      ...base,
      slopePerHour: 0,
      confidence: 0.5,
      verdict: 'insufficient-data',
      reason: `only ${n} points (need ${o.minPoints})`,
    };
  }
  if (spanMs <= 0 || spanMs < o.minSpanMs) {
    return {
      ...base,
      slopePerHour: 0,
      confidence: 0.5,
      verdict: 'insufficient-data',
      reason: `the points span ${duration(spanMs)} (need ${duration(o.minSpanMs)})`,
    };
  }
  const env = envelope(t, v, MAX_BINS);
  const m = env.t.length;
  const slopePerHour = theilSen(env.t, env.v, 0, m) * HOUR_MS;
  const overall = mannKendall(env.v, 0, m);
  const cuts = [0, Math.round(m / 3), Math.round((2 * m) / 3), m];
  const thirds = [0, 1, 2].map((k) => ({
    slopePerHour: theilSen(env.t, env.v, cuts[k]!, cuts[k + 1]!) * HOUR_MS,
    confidence: mannKendall(env.v, cuts[k]!, cuts[k + 1]!),
  }));
  const confidence = Math.min(overall, ...thirds.map((x) => x.confidence));
  const thirdsText = thirds.map((x) => fmt(x.slopePerHour)).join(', ');
  const result = { ...base, slopePerHour, confidence };
  if (slopePerHour <= 0 || overall < o.minConfidence) {
    return {
      ...result,
      verdict: 'stable',
      reason: `no significant growth (${fmt(slopePerHour)}/h, confidence ${overall.toFixed(3)})`,
    };
  }
  if (slopePerHour < o.minSlopePerHour) {
    return {
      ...result,
      verdict: 'stable',
      reason: `grows ${fmt(slopePerHour)}/h, under the minimum of ${fmt(o.minSlopePerHour)}/h`,
    };
  }
  // Each third grows on its own, and the growth does not fade out the way a warm-up does.
  const sustained =
    thirds.every(
      (x) => x.confidence >= o.minConfidence && x.slopePerHour >= THIRD_SLOPE_SHARE * slopePerHour,
    ) && thirds[2]!.slopePerHour >= THIRD_SLOPE_SHARE * thirds[0]!.slopePerHour;
  if (!sustained) {
    return {
      ...result,
      verdict: 'stable',
      reason: `growth not sustained: the thirds of the window grew ${thirdsText} per hour (a step or a warm-up, not a steady leak)`,
    };
  }
  return {
    ...result,
    verdict: 'growing',
    reason: `grows ${fmt(slopePerHour)}/h over ${duration(spanMs)}, in every third of the window (${thirdsText} per hour)`,
  };
}

/**
 * Estimates the growth of a series: a robust slope per hour, a confidence, and a verdict that
 * calls sustained growth (a leak) but not a GC sawtooth, a step or a warm-up. Pure: the
 * `trustflow analyze` CLI runs it on recorded CSV columns.
 */
export function estimateGrowth(
  points: readonly GrowthPoint[],
  options: GrowthOptions = {},
): GrowthEstimate {
  if (!Array.isArray(points)) throw new TypeError('estimateGrowth: points must be an array');
  const o = resolveOptions(options, 'estimateGrowth');
  const sorted = points.map((p, i) => {
    const t = p?.t;
    const v = p?.v;
    if (
      typeof t !== 'number' ||
      !Number.isFinite(t) ||
      typeof v !== 'number' ||
      !Number.isFinite(v)
    ) {
      throw new TypeError(
        `estimateGrowth: point ${i} must have finite numbers t and v, got ${JSON.stringify(p)}`,
      );
    }
    return p;
  });
  sorted.sort((a, b) => a.t - b.t);
  return estimate(
    sorted.map((p) => p.t),
    sorted.map((p) => p.v),
    o,
  );
}

// ---------------------------------------------------------------------------------------------
// The monitor: samples series on a timer into sliding windows and evaluates each one.

const ATTR_SERIES = 'trustflow.trend.series';
const MAX_SERIES = 64;
const MAX_POINTS = 4096;

/** A sliding window of (t, v) with a moving head, compacted now and then. */
class Window {
  t: number[] = [];
  v: number[] = [];
  head = 0;
  estimate: GrowthEstimate | undefined;
  growing = false;
  stableSince: number | undefined;
  constructor(
    readonly name: string,
    readonly memory: boolean,
  ) {}

  add(t: number, v: number, windowMs: number): void {
    this.t.push(t);
    this.v.push(v);
    const from = t - windowMs;
    while (this.head < this.t.length && (this.t[this.head]! < from || this.size > MAX_POINTS)) {
      this.head++;
    }
    if (this.head > 256 && this.head * 2 > this.t.length) {
      this.t = this.t.slice(this.head);
      this.v = this.v.slice(this.head);
      this.head = 0;
    }
  }

  get size(): number {
    return this.t.length - this.head;
  }

  view(): Series2 {
    return this.head === 0
      ? { t: this.t, v: this.v }
      : { t: this.t.slice(this.head), v: this.v.slice(this.head) };
  }

  latest(): number {
    return this.v[this.v.length - 1] ?? 0;
  }
}

function isMemorySeries(name: string): boolean {
  return name === 'heap.used' || name === 'process.rss' || name.endsWith('.bytes');
}

const WHERE = 'createTrendMonitor';

class Monitor implements TrendMonitor {
  private readonly sink = new ErrorSink('@trustflow/core');
  private readonly listeners = new Listeners<'trend', TrendEvent>(
    ['trend'],
    this.sink,
    'trend monitor',
  );
  private readonly windows = new Map<string, Window>();
  private readonly windowMs: number;
  private readonly memoryOptions: Resolved;
  private readonly countOptions: Resolved;
  private readonly tracker: ResourceTracker | undefined;
  private readonly source: (() => Record<string, number>) | undefined;
  private readonly builtins: boolean;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private readonly unobserve: () => void;
  private stopped = false;

  constructor(options: TrendMonitorOptions) {
    const interval = numberOption(
      WHERE,
      'intervalMs',
      options.intervalMs,
      30_000,
      (n) => n >= 0,
      'a non-negative number',
    );
    this.windowMs = numberOption(
      WHERE,
      'windowMs',
      options.windowMs,
      6 * HOUR_MS,
      (n) => n > 0,
      'a positive number',
    );
    const minSpanMs = numberOption(
      WHERE,
      'minSpanMs',
      options.minSpanMs,
      Math.min(2 * HOUR_MS, this.windowMs / 2),
      (n) => n >= 0 && n <= this.windowMs,
      `a number in [0, windowMs ${this.windowMs}]`,
    );
    const common = { minConfidence: options.minConfidence, minSpanMs };
    this.memoryOptions = resolveOptions(
      {
        ...common,
        minSlopePerHour: numberOption(
          WHERE,
          'minBytesPerHour',
          options.minBytesPerHour,
          1024 * 1024,
          (n) => n >= 0,
          'a non-negative number',
        ),
      },
      WHERE,
    );
    this.countOptions = resolveOptions(
      {
        ...common,
        minSlopePerHour: numberOption(
          WHERE,
          'minCountPerHour',
          options.minCountPerHour,
          1,
          (n) => n >= 0,
          'a non-negative number',
        ),
      },
      WHERE,
    );
    if (options.source !== undefined && typeof options.source !== 'function') {
      throw new TypeError(`${WHERE}: option source must be a function`);
    }
    if (options.tracker !== undefined && typeof options.tracker?.snapshot !== 'function') {
      throw new TypeError(`${WHERE}: option tracker must be a resource tracker`);
    }
    this.tracker = options.tracker;
    this.source = options.source;
    this.builtins = options.builtins !== false;
    this.now = options.now ?? Date.now;

    const meter = options.meter ?? metrics.getMeter('@trustflow/core');
    const rate: ObservableGauge = meter.createObservableGauge('trustflow.trend.growth_rate', {
      unit: '{value}/h',
      description:
        'Estimated sustained growth per hour of each sampled series (bytes per hour for memory series, a count per hour for fds and resources).',
    });
    const confidence: ObservableGauge = meter.createObservableGauge('trustflow.trend.confidence', {
      unit: '1',
      description:
        'Confidence (0..1) that the series grows in a sustained way; 0.5 is no evidence.',
    });
    const callback: BatchObservableCallback = (result) => {
      for (const w of this.windows.values()) {
        const e = w.estimate;
        if (!e || e.verdict === 'insufficient-data') continue;
        const attributes = { [ATTR_SERIES]: w.name };
        result.observe(rate, e.slopePerHour, attributes);
        result.observe(confidence, e.confidence, attributes);
      }
    };
    meter.addBatchObservableCallback(callback, [rate, confidence]);
    this.unobserve = () => meter.removeBatchObservableCallback(callback, [rate, confidence]);

    if (interval > 0) {
      this.timer = setInterval(() => {
        try {
          this.sample();
        } catch (error) {
          this.sink.report('trend sample', error);
        }
      }, interval);
      this.timer.unref();
    }
  }

  on(event: 'trend', listener: (event: TrendEvent) => void): () => void {
    return this.listeners.on(event, listener);
  }

  private values(): Record<string, number> {
    const out: Record<string, number> = {};
    if (this.builtins) {
      out['heap.used'] = getHeapStatistics().used_heap_size;
      out['process.rss'] = process.memoryUsage.rss();
      const fds = openFdCount();
      if (fds !== null) out['process.fds'] = fds;
    }
    if (this.tracker && !this.tracker.isShutdown) {
      try {
        const active = this.tracker.snapshot().active;
        for (const kind of Object.keys(active)) out[`resource.${kind}`] = active[kind]!;
      } catch (error) {
        this.sink.report('trend tracker counts', error);
      }
    }
    if (this.source) {
      const extra = this.source();
      for (const name of Object.keys(extra ?? {})) {
        const value = extra[name];
        if (typeof value === 'number' && Number.isFinite(value)) out[name] = value;
        else
          this.sink.report(`trend source ${name}`, new TypeError(`not a finite number: ${value}`));
      }
    }
    return out;
  }

  sample(): Record<string, GrowthEstimate> {
    if (this.stopped) return this.estimates();
    const t = this.now();
    const values = this.values();
    const events: TrendEvent[] = [];
    for (const name of Object.keys(values)) {
      let w = this.windows.get(name);
      if (!w) {
        if (this.windows.size >= MAX_SERIES) {
          this.sink.report('trend series cap', new Error(`more than ${MAX_SERIES} series`));
          continue;
        }
        w = new Window(name, isMemorySeries(name));
        this.windows.set(name, w);
      }
      w.add(t, values[name]!, this.windowMs);
    }
    for (const w of this.windows.values()) {
      // A series that stopped reporting (a source that dropped it) goes once its window is empty.
      if (w.t[w.t.length - 1]! < t - this.windowMs) {
        this.windows.delete(w.name);
        continue;
      }
      const view = w.view();
      const e = estimate(view.t, view.v, w.memory ? this.memoryOptions : this.countOptions);
      w.estimate = e;
      if (e.verdict === 'growing' && !w.growing) {
        w.growing = true;
        events.push({ ...e, series: w.name, value: w.latest() });
        w.stableSince = undefined;
      } else if (e.verdict === 'stable' && w.growing) {
        // Re-armed only after a third of a window without growth, so that a leak whose verdict
        // wobbles at the edge does not fire again and again.
        w.stableSince ??= t;
        if (t - w.stableSince >= this.windowMs / 3) w.growing = false;
      } else if (e.verdict === 'growing') {
        w.stableSince = undefined;
      }
    }
    for (const event of events) this.listeners.emit('trend', event);
    return this.estimates();
  }

  estimates(): Record<string, GrowthEstimate> {
    const out: Record<string, GrowthEstimate> = {};
    for (const w of this.windows.values()) if (w.estimate) out[w.name] = w.estimate;
    return out;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    try {
      this.unobserve();
    } catch (error) {
      this.sink.report('trend stop', error);
    }
    this.listeners.clear();
  }

  [Symbol.dispose](): void {
    this.stop();
  }
}

/**
 * Samples heap used, RSS, open fds, active resources per kind (with a tracker) and any series of
 * `source` into sliding windows, publishes the estimated growth per hour of each, and fires
 * `trend` when one grows in a sustained way.
 */
export function createTrendMonitor(options: TrendMonitorOptions = {}): TrendMonitor {
  return new Monitor(options);
}

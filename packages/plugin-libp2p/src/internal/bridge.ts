import type {
  CalculateMetric,
  Counter,
  CounterGroup,
  Histogram,
  HistogramGroup,
  Metric,
  MetricGroup,
  StopTimer,
} from '@libp2p/interface';
import type {
  Attributes,
  Meter,
  Observable,
  ObservableCallback,
  Histogram as OtelHistogram,
} from '@opentelemetry/api';

/**
 * libp2p's own metrics (`registerMetric`, `registerCounter`, histograms, summaries and their
 * groups) as OpenTelemetry instruments. Values that libp2p updates (gauges, counters) live in
 * plain numbers and are read by observable instruments at collection time, so libp2p's hot paths
 * (noise counts every packet) pay one addition. Histograms and summaries record into OTel
 * histograms (OTel has no summary).
 */

export const OTHER = 'other';

interface Hooks {
  readonly active: boolean;
  reportError(where: string, error: unknown): void;
}

/** One observable instrument and its callback, attached while the metrics are enabled. */
interface Attachment {
  instrument: Observable;
  callback: ObservableCallback;
}

type Kind = 'metric' | 'metric group' | 'counter' | 'counter group' | 'histogram' | 'summary';

export class MetricBridge {
  private readonly registered = new Map<string, { kind: Kind; value: unknown }>();
  private readonly attachments: Attachment[] = [];
  private attached = false;

  constructor(
    private readonly meter: Meter,
    private readonly hooks: Hooks,
    private readonly maxGroupKeys: number,
  ) {}

  /** Adds every observable callback (on enable). */
  attach(): void {
    if (this.attached) return;
    this.attached = true;
    for (const a of this.attachments) a.instrument.addCallback(a.callback);
  }

  /** Removes every observable callback (on disable): no telemetry afterwards. */
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    for (const a of this.attachments) a.instrument.removeCallback(a.callback);
  }

  /**
   * Registers (or returns the already registered) metric `name`. Returns undefined for a
   * calculated metric, as the libp2p interface says.
   */
  register(kind: Kind, name: string, options: BridgeOptions | undefined): unknown {
    if (typeof name !== 'string' || name.trim() === '') {
      throw new TypeError(`libp2pMetrics: a ${kind} needs a non-empty name, got ${String(name)}`);
    }
    const opts = options ?? {};
    const existing = this.registered.get(name);
    if (existing !== undefined) {
      if (existing.kind !== kind) {
        throw new TypeError(
          `libp2pMetrics: ${name} is already registered as a ${existing.kind}, not a ${kind}`,
        );
      }
      return opts.calculate ? undefined : existing.value;
    }
    const value = this.create(kind, name, opts);
    this.registered.set(name, { kind, value });
    return opts.calculate ? undefined : value;
  }

  private create(kind: Kind, name: string, opts: BridgeOptions): unknown {
    const description = opts.help ?? name;
    const label = opts.label ?? name;
    switch (kind) {
      case 'metric':
        return this.gauge(name, description, opts.calculate);
      case 'metric group':
        return this.gaugeGroup(name, description, label, opts.calculate);
      case 'counter':
        return this.counter(name, description, opts.calculate);
      case 'counter group':
        return this.counterGroup(name, description, label, opts.calculate);
      case 'histogram':
      case 'summary':
        return this.histogram(name, description, label, kind, opts);
    }
  }

  private observe(name: string, instrument: Observable, callback: ObservableCallback): void {
    const guarded: ObservableCallback = async (result) => {
      try {
        await callback(result);
      } catch (error) {
        this.hooks.reportError(`collect ${name}`, error);
      }
    };
    this.attachments.push({ instrument, callback: guarded });
    if (this.attached) instrument.addCallback(guarded);
  }

  private gauge(name: string, description: string, calculate?: CalculateMetric): Metric {
    const instrument = this.meter.createObservableGauge(name, { description });
    const cell = new Cell();
    this.observe(name, instrument, async (result) => {
      if (calculate) result.observe(await calculate());
      else if (cell.seen) result.observe(cell.value);
    });
    const hooks = this.hooks;
    return {
      update(value) {
        cell.set(value);
      },
      increment(value = 1) {
        cell.add(value);
      },
      decrement(value = 1) {
        cell.add(-value);
      },
      reset() {
        cell.set(0);
      },
      timer() {
        const start = performance.now();
        return () => {
          if (hooks.active) cell.set((performance.now() - start) / 1000);
        };
      },
    };
  }

  private gaugeGroup(
    name: string,
    description: string,
    label: string,
    calculate?: CalculateMetric<Record<string, number>>,
  ): MetricGroup {
    const instrument = this.meter.createObservableGauge(name, { description });
    const cells = new Cells(label, this.maxGroupKeys);
    this.observe(name, instrument, async (result) => {
      if (calculate) {
        const values = await calculate();
        for (const key of Object.keys(values)) {
          const value = values[key];
          if (typeof value === 'number') result.observe(value, cells.attributes(key));
        }
        return;
      }
      for (const [attributes, cell] of cells.entries()) result.observe(cell.value, attributes);
    });
    const hooks = this.hooks;
    return {
      update(values) {
        for (const key in values) cells.get(key).set(num(values[key], 0));
      },
      increment(values) {
        for (const key in values) cells.get(key).add(num(values[key], 1));
      },
      decrement(values) {
        for (const key in values) cells.get(key).add(-num(values[key], 1));
      },
      reset() {
        cells.reset();
      },
      timer(key) {
        const start = performance.now();
        return () => {
          if (hooks.active) cells.get(key).set((performance.now() - start) / 1000);
        };
      },
    };
  }

  private counter(name: string, description: string, calculate?: CalculateMetric): Counter {
    const instrument = this.meter.createObservableCounter(name, { description });
    const cell = new Cell();
    this.observe(name, instrument, async (result) => {
      // a calculated counter returns the increase since the last collection
      if (calculate) cell.add(num(await calculate(), 0));
      result.observe(cell.value);
    });
    return {
      increment(value = 1) {
        cell.add(value);
      },
      reset() {
        cell.set(0);
      },
    };
  }

  private counterGroup(
    name: string,
    description: string,
    label: string,
    calculate?: CalculateMetric<Record<string, number>>,
  ): CounterGroup {
    const instrument = this.meter.createObservableCounter(name, { description });
    const cells = new Cells(label, this.maxGroupKeys);
    this.observe(name, instrument, async (result) => {
      if (calculate) {
        const values = await calculate();
        for (const key of Object.keys(values)) cells.get(key).add(num(values[key], 0));
      }
      for (const [attributes, cell] of cells.entries()) result.observe(cell.value, attributes);
    });
    return {
      increment(values) {
        for (const key in values) cells.get(key).add(num(values[key], 1));
      },
      reset() {
        cells.reset();
      },
    };
  }

  private histogram(
    name: string,
    description: string,
    label: string,
    kind: 'histogram' | 'summary',
    opts: BridgeOptions,
  ): (Histogram & HistogramGroup) | undefined {
    const keys = new Cells(label, this.maxGroupKeys);
    const calculate = opts.calculate;
    if (calculate) {
      // OTel has no observable histogram: a calculated one is exported as a gauge of its value.
      const gauge = this.meter.createObservableGauge(name, { description });
      this.observe(name, gauge, async (result) => {
        const value = await calculate();
        if (typeof value === 'number') {
          result.observe(value);
          return;
        }
        for (const key of Object.keys(value ?? {})) {
          const v = (value as Record<string, unknown>)[key];
          if (typeof v === 'number') result.observe(v, keys.attributes(key));
        }
      });
      return undefined;
    }
    const buckets = kind === 'histogram' ? opts.buckets : undefined;
    const instrument: OtelHistogram = this.meter.createHistogram(name, {
      description,
      ...(buckets && buckets.length > 0 ? { advice: { explicitBucketBoundaries: buckets } } : {}),
    });
    const hooks = this.hooks;
    const record = (value: number, attributes?: Attributes) => {
      if (hooks.active && typeof value === 'number') instrument.record(value, attributes);
    };
    return {
      observe(values: number | Partial<Record<string, number>>) {
        if (typeof values === 'number') {
          record(values);
          return;
        }
        for (const key in values) record(num(values[key], Number.NaN), keys.attributes(key));
      },
      // OTel histograms cannot be reset: what was recorded stays recorded.
      reset() {},
      timer(key?: string): StopTimer {
        const start = performance.now();
        return () => {
          const seconds = (performance.now() - start) / 1000;
          record(seconds, key === undefined ? undefined : keys.attributes(key));
        };
      },
    } as Histogram & HistogramGroup;
  }
}

export interface BridgeOptions {
  label?: string;
  help?: string;
  buckets?: number[];
  calculate?: CalculateMetric<any>;
}

class Cell {
  value = 0;
  seen = false;
  set(value: number): void {
    if (typeof value !== 'number') return;
    this.value = value;
    this.seen = true;
  }
  add(value: number): void {
    if (typeof value !== 'number') return;
    this.value += value;
    this.seen = true;
  }
}

/** Keyed cells of a group, with their attribute sets, capped at `max` keys (then `other`). */
class Cells {
  private readonly map = new Map<string, { attributes: Attributes; cell: Cell }>();
  constructor(
    private readonly label: string,
    private readonly max: number,
  ) {}

  private slot(key: string): { attributes: Attributes; cell: Cell } {
    let slot = this.map.get(key);
    if (slot === undefined) {
      if (this.map.size >= this.max && key !== OTHER) return this.slot(OTHER);
      slot = { attributes: Object.freeze({ [this.label]: key }), cell: new Cell() };
      this.map.set(key, slot);
    }
    return slot;
  }

  get(key: string): Cell {
    return this.slot(key).cell;
  }

  attributes(key: string): Attributes {
    return this.slot(key).attributes;
  }

  *entries(): Iterable<[Attributes, Cell]> {
    for (const slot of this.map.values()) if (slot.cell.seen) yield [slot.attributes, slot.cell];
  }

  reset(): void {
    for (const slot of this.map.values()) slot.cell.set(0);
  }
}

function num(value: unknown, fallback: number): number {
  return typeof value === 'number' ? value : fallback;
}

import type {
  BatchObservableCallback,
  BatchObservableResult,
  Counter,
  Histogram,
  Meter,
  MeterOptions,
  MeterProvider,
  MetricOptions,
  Observable,
  ObservableCallback,
} from '@opentelemetry/api';

/**
 * A meter provider that hands out meters at once and connects them to the SDK's provider later.
 *
 * The preload must not load the OpenTelemetry SDK before the application starts (a program that
 * does nothing would pay for it), but the tracker and the plugins need a meter from the first
 * line. Instruments created before `attach()` are re-created on the real meter when it comes;
 * values recorded before that are dropped (observable counts are read at collection time, so
 * they lose nothing).
 */
export class DeferredMeterProvider implements MeterProvider {
  private readonly meters = new Map<string, DeferredMeter>();
  private delegate: MeterProvider | undefined;

  getMeter(name: string, version?: string, options?: MeterOptions): Meter {
    if (this.delegate) return this.delegate.getMeter(name, version, options);
    const key = `${name}\n${version ?? ''}`;
    let meter = this.meters.get(key);
    if (!meter) {
      meter = new DeferredMeter(name, version, options);
      this.meters.set(key, meter);
    }
    return meter;
  }

  get attached(): boolean {
    return this.delegate !== undefined;
  }

  attach(provider: MeterProvider): void {
    if (this.delegate) return;
    this.delegate = provider;
    for (const meter of this.meters.values()) meter.attach(provider);
  }
}

type SyncMethod = 'createCounter' | 'createUpDownCounter' | 'createHistogram' | 'createGauge';
type ObservableMethod =
  | 'createObservableCounter'
  | 'createObservableUpDownCounter'
  | 'createObservableGauge';

class DeferredSync implements Counter, Histogram {
  real: (Counter & Histogram) | undefined;
  constructor(
    readonly method: SyncMethod,
    readonly name: string,
    readonly options: MetricOptions | undefined,
  ) {}
  add(
    value: number,
    attributes?: Parameters<Counter['add']>[1],
    ctx?: Parameters<Counter['add']>[2],
  ) {
    this.real?.add(value, attributes, ctx);
  }
  record(
    value: number,
    attributes?: Parameters<Histogram['record']>[1],
    ctx?: Parameters<Histogram['record']>[2],
  ) {
    this.real?.record(value, attributes, ctx);
  }
}

class DeferredObservable implements Observable {
  real: Observable | undefined;
  readonly callbacks = new Set<ObservableCallback>();
  constructor(
    readonly method: ObservableMethod,
    readonly name: string,
    readonly options: MetricOptions | undefined,
  ) {}
  addCallback(callback: ObservableCallback): void {
    if (this.real) this.real.addCallback(callback);
    else this.callbacks.add(callback);
  }
  removeCallback(callback: ObservableCallback): void {
    if (this.real) this.real.removeCallback(callback);
    else this.callbacks.delete(callback);
  }
}

function realOf(observable: Observable): Observable {
  return observable instanceof DeferredObservable ? (observable.real ?? observable) : observable;
}

interface Batch {
  callback: BatchObservableCallback;
  observables: Observable[];
  /** The callback given to the real meter: it maps deferred observables to real ones. */
  wrapped: BatchObservableCallback;
}

class DeferredMeter implements Meter {
  private real: Meter | undefined;
  private readonly syncs: DeferredSync[] = [];
  private readonly observables: DeferredObservable[] = [];
  private readonly batches: Batch[] = [];

  constructor(
    private readonly name: string,
    private readonly version: string | undefined,
    private readonly options: MeterOptions | undefined,
  ) {}

  attach(provider: MeterProvider): void {
    const real = provider.getMeter(this.name, this.version, this.options);
    this.real = real;
    for (const s of this.syncs)
      s.real = (real[s.method] as Meter['createCounter'])(s.name, s.options) as never;
    for (const o of this.observables) {
      o.real = (real[o.method] as Meter['createObservableGauge'])(o.name, o.options);
      for (const callback of o.callbacks) o.real.addCallback(callback);
      o.callbacks.clear();
    }
    for (const b of this.batches)
      real.addBatchObservableCallback(b.wrapped, b.observables.map(realOf));
  }

  private sync(method: SyncMethod, name: string, options?: MetricOptions): DeferredSync {
    if (this.real) return (this.real[method] as Meter['createCounter'])(name, options) as never;
    const instrument = new DeferredSync(method, name, options);
    this.syncs.push(instrument);
    return instrument;
  }

  private observable(method: ObservableMethod, name: string, options?: MetricOptions): Observable {
    if (this.real) return (this.real[method] as Meter['createObservableGauge'])(name, options);
    const instrument = new DeferredObservable(method, name, options);
    this.observables.push(instrument);
    return instrument;
  }

  createCounter(name: string, options?: MetricOptions) {
    return this.sync('createCounter', name, options);
  }
  createUpDownCounter(name: string, options?: MetricOptions) {
    return this.sync('createUpDownCounter', name, options);
  }
  createHistogram(name: string, options?: MetricOptions) {
    return this.sync('createHistogram', name, options);
  }
  createGauge(name: string, options?: MetricOptions) {
    return this.sync('createGauge', name, options);
  }
  createObservableCounter(name: string, options?: MetricOptions) {
    return this.observable('createObservableCounter', name, options);
  }
  createObservableUpDownCounter(name: string, options?: MetricOptions) {
    return this.observable('createObservableUpDownCounter', name, options);
  }
  createObservableGauge(name: string, options?: MetricOptions) {
    return this.observable('createObservableGauge', name, options);
  }

  addBatchObservableCallback(callback: BatchObservableCallback, observables: Observable[]): void {
    const wrapped: BatchObservableCallback = (result) =>
      callback({
        observe: (observable, value, attributes) =>
          result.observe(realOf(observable), value, attributes),
      } as BatchObservableResult);
    const batch: Batch = { callback, observables, wrapped };
    this.batches.push(batch);
    this.real?.addBatchObservableCallback(wrapped, observables.map(realOf));
  }

  removeBatchObservableCallback(
    callback: BatchObservableCallback,
    observables: Observable[],
  ): void {
    const index = this.batches.findIndex(
      (b) => b.callback === callback && sameList(b.observables, observables),
    );
    if (index < 0) {
      this.real?.removeBatchObservableCallback(callback, observables.map(realOf));
      return;
    }
    const [batch] = this.batches.splice(index, 1);
    this.real?.removeBatchObservableCallback(batch!.wrapped, batch!.observables.map(realOf));
  }
}

function sameList(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

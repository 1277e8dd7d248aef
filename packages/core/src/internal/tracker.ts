import { executionAsyncId } from 'node:async_hooks';
import {
  context,
  metrics,
  type Attributes as OtelAttributes,
  ProxyTracerProvider,
  type Span,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type {
  Attributes,
  CloseStaleOptions,
  CloseStaleResult,
  CreationSite,
  LeakEvent,
  LeakGroup,
  LeakReason,
  OpenResource,
  ReleaseOptions,
  Report,
  ReportOptions,
  ResourceHandle,
  ResourceTracker,
  ResourceTrackerOptions,
  Snapshot,
  StackMode,
  TrackOptions,
} from '../types.js';
import { ErrorSink } from './errors.js';
import { processFigures } from './proc.js';
import { type CapturedStack, codeFolders, StackFormatter } from './stacks.js';
import {
  ATTR_KIND,
  ATTR_REASON,
  ATTR_SITE,
  LIFETIME,
  type LifetimeHistogram,
  type LifetimeTarget,
  metricAttributes,
  type SeriesView,
  TrackerTelemetry,
} from './telemetry.js';

/** This package's src/ and dist/ folders: their frames are never user code. */
const PACKAGE_DIRS = codeFolders(import.meta.url);

/** The provider the global API falls back to while no SDK is registered. */
const NOOP_TRACER_PROVIDER = new ProxyTracerProvider().getDelegate();

// A monotonic clock in ms. Not `performance.now()`: the first read of the `performance` global
// loads node:perf_hooks (about 1 ms of a preloaded program's start-up), and this is as fast.
const hrtime = process.hrtime;
const ORIGIN = hrtime();
const monotonicMs = (): number => {
  const t = hrtime();
  return (t[0] - ORIGIN[0]) * 1e3 + (t[1] - ORIGIN[1]) / 1e6;
};

const RELEASED = 1;
const COLLECTED = 2;
const STALE_REPORTED = 4;
const REGISTERED = 8;
/** In its series' list of open entries. */
const LINKED = 16;

const DEFAULTS = {
  stacks: 'sampled' as StackMode,
  stackSampleFirst: 10,
  stackSampleEvery: 100,
  stackFrames: 12,
  staleAfterMs: 30 * 60_000,
  idleAfterMs: 5 * 60_000,
  scanIntervalMs: 60_000,
  maxTracked: 100_000,
  maxLeakGroups: 500,
  maxSeries: 2_000,
};

/** Open resources of one kind and one low-cardinality attribute set. */
class Series implements SeriesView, LifetimeTarget {
  /**
   * Open entries, oldest first: a list threaded through the entries themselves (no node object
   * per resource, as a plugin's LiveList has). Opening and closing a resource then writes a few
   * fields of objects it touches anyway, where a Map keyed by id would hash into a table that
   * churns with every open and close.
   */
  head: Entry | undefined = undefined;
  tail: Entry | undefined = undefined;
  size = 0;
  opened = 0;
  closed = 0;
  /** Only when the tracker collects lifetimes itself (collectLifetimes()). */
  lifetime: LifetimeHistogram | undefined = undefined;
  /** Live resources past the cap (counted, not tracked). */
  untracked = 0;
  readonly metricAttributes: OtelAttributes;
  constructor(
    readonly kind: string,
    readonly attributes: Attributes | undefined,
    readonly kindState: KindState,
  ) {
    this.metricAttributes = metricAttributes(kind, attributes);
  }
  get active(): number {
    return this.size + this.untracked;
  }
  oldestOpenedAt(): number | undefined {
    return this.head?.openedAt;
  }
  add(entry: Entry): void {
    entry.state |= LINKED;
    const tail = this.tail;
    entry.prev = tail;
    if (tail === undefined) this.head = entry;
    else tail.next = entry;
    this.tail = entry;
    this.size++;
  }
  /** Unlinks an entry; false if it was not in the list. */
  remove(entry: Entry): boolean {
    if ((entry.state & LINKED) === 0) return false;
    entry.state &= ~LINKED;
    const { prev, next } = entry;
    if (prev === undefined) this.head = next;
    else prev.next = next;
    if (next === undefined) this.tail = prev;
    else next.prev = prev;
    entry.prev = undefined;
    entry.next = undefined;
    this.size--;
    return true;
  }
  clear(): void {
    for (let e = this.head; e !== undefined; ) {
      const next: Entry | undefined = e.next;
      e.prev = undefined;
      e.next = undefined;
      e.state &= ~LINKED;
      e = next;
    }
    this.head = undefined;
    this.tail = undefined;
    this.size = 0;
  }
}

/** Stacks a kind may take: up to `burst` at once, refilled at `perMs` a millisecond. */
class StackBudget {
  private tokens: number;
  private at = Number.NEGATIVE_INFINITY;
  constructor(
    private readonly burst: number,
    private readonly perMs: number,
  ) {
    this.tokens = burst;
  }
  /** Takes one stack from the budget; false when it is spent. */
  take(now: number): boolean {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.at) * this.perMs);
      this.at = now;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

/**
 * New-high stacks: 100 at once, 100 a second per kind. A leak that piles up slowly (the point of
 * the rule) gets a stack for every leaked resource; a burst (10,000 timers or sockets created in
 * one tick, each a new high) does not pay 10,000 captures.
 */
const NEW_HIGH_BURST = 100;
const NEW_HIGH_PER_MS = 0.1;
/**
 * One-in-`stackSampleEvery` stacks: at most 20 a second per kind. A capture costs 10-100 µs (more
 * with deep async stacks), so a kind opened and closed 10,000 times a second would otherwise spend
 * several percent of a core on stacks of resources that are closed a moment later. Leaks that pile
 * up still get theirs from the new-high rule.
 */
const SAMPLE_BURST = 20;
const SAMPLE_PER_MS = 0.02;

class KindState {
  seen = 0;
  /** Open tracked entries of this kind, and the most there ever were at once. */
  live = 0;
  highWater = 0;
  readonly newHighs = new StackBudget(NEW_HIGH_BURST, NEW_HIGH_PER_MS);
  readonly samples = new StackBudget(SAMPLE_BURST, SAMPLE_PER_MS);
  readonly plain: Series;
  readonly byObject = new WeakMap<Attributes, Series>();
  readonly byKey = new Map<string, Series>();
  constructor(readonly kind: string) {
    this.plain = new Series(kind, undefined, this);
  }
}

/** A tracked resource; it is also the handle returned by `track()`. */
class Entry implements ResourceHandle {
  state = 0;
  /** WeakRef to an object resource, or the primitive resource itself (an fd number). */
  target: WeakRef<object> | unknown;
  lastActive: number;
  /** Last value of the activity probe; resources start at 0 (nothing read or written). */
  activityMark = 0;
  details: Attributes | undefined;
  stack: CapturedStack | undefined;
  span: Span | undefined;
  prev: Entry | undefined = undefined;
  next: Entry | undefined = undefined;

  constructor(
    readonly id: number,
    readonly spec: TrackOptions<any>,
    readonly series: Series,
    readonly openedAt: number,
    readonly tracker: Tracker,
  ) {
    this.lastActive = openedAt;
    this.details = spec.details;
  }

  get kind(): string {
    return this.series.kind;
  }

  get released(): boolean {
    return (this.state & (RELEASED | COLLECTED)) !== 0;
  }

  get recording(): boolean {
    return this.span !== undefined;
  }

  release(options?: ReleaseOptions): void {
    if ((this.state & (RELEASED | COLLECTED)) !== 0) return;
    if (options?.collected === true) {
      this.tracker.collected(this, true);
      return;
    }
    this.state |= RELEASED;
    this.tracker.settle(this, options);
  }

  touch(): void {
    this.lastActive = this.tracker.now();
    this.state &= ~STALE_REPORTED;
  }

  annotate(details: Attributes): void {
    if (this.released) return;
    this.details = { ...this.details, ...details };
    this.span?.setAttributes(details);
  }

  [Symbol.dispose](): void {
    this.release();
  }

  resource(): unknown {
    const t = this.target;
    return t instanceof WeakRef ? t.deref() : t;
  }
}

/** Handle for a resource past the cap: it keeps the counts right and nothing else. */
class UntrackedHandle implements ResourceHandle {
  released = false;
  readonly recording = false;
  constructor(
    readonly id: number,
    private readonly series: Series,
  ) {}
  get kind(): string {
    return this.series.kind;
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.series.untracked--;
    this.series.closed++;
  }
  touch(): void {}
  annotate(): void {}
  [Symbol.dispose](): void {
    this.release();
  }
}

const DETACHED: ResourceHandle = Object.freeze({
  id: 0,
  kind: 'detached',
  released: true,
  recording: false,
  release() {},
  touch() {},
  annotate() {},
  [Symbol.dispose]() {},
});

/** A stack taken by `captureSite()` for resources tracked later; shared by all that use it. */
class Site implements CreationSite {
  constructor(readonly stack: CapturedStack | undefined) {}
  get sampled(): boolean {
    return this.stack !== undefined;
  }
}

const NOT_SAMPLED: CreationSite = new Site(undefined);
const SITE_SPEC = { kind: '' };

interface GcGroup extends LeakGroup {
  lastId: number;
}

// Registered (Symbol.for) so that a second copy of core, such as the one bundled into the
// @trustflow/instrument preload, reaches the internals of a tracker the other copy created.
export const kInternal: unique symbol = Symbol.for('@trustflow/core.tracker-internal');

export class Tracker implements ResourceTracker {
  readonly errors = new ErrorSink('@trustflow/core');
  readonly stacks: StackFormatter;
  readonly now: () => number;
  private readonly kinds = new Map<string, KindState>();
  private readonly allSeries: Series[] = [];
  private readonly gcGroups = new Map<string, GcGroup>();
  private readonly listeners = new Set<(leak: LeakEvent) => void>();
  private readonly sections = new Map<string, () => unknown>();
  private readonly registry: FinalizationRegistry<Entry>;
  private readonly telemetry: TrackerTelemetry;
  private readonly tracer: Tracer | undefined;
  /**
   * The global provider when spans go through the global API: while no SDK is behind it, no span
   * is started at all (a no-op span still costs an allocation per resource).
   */
  private readonly globalTracing: ProxyTracerProvider | undefined;
  private readonly mode: StackMode;
  private readonly first: number;
  private readonly every: number;
  private readonly staleAfter: number;
  private readonly idleAfter: number;
  private readonly maxTracked: number;
  private readonly maxLeakGroups: number;
  private timer: NodeJS.Timeout | undefined;
  private nextId = 1;
  private live = 0;
  private overflow = 0;
  private droppedGroups = 0;
  private shut = false;
  /** Depth of `untracked()` calls running now. */
  private quiet = 0;
  private readonly ignored = new WeakSet<object>();
  private ignoring = false;
  /**
   * Async ids of instrumentation's own async resources: what runs in their callbacks is not the
   * application's. Filled by `ignore()` and by the async-hooks source, which also empties it.
   */
  readonly ownedIds = new Set<number>();

  constructor(options: ResourceTrackerOptions = {}) {
    this.mode = pick(options.stacks, DEFAULTS.stacks);
    this.first = count(options.stackSampleFirst, DEFAULTS.stackSampleFirst, 'stackSampleFirst');
    this.every = Math.max(
      1,
      count(options.stackSampleEvery, DEFAULTS.stackSampleEvery, 'stackSampleEvery'),
    );
    this.staleAfter = count(options.staleAfterMs, DEFAULTS.staleAfterMs, 'staleAfterMs');
    this.idleAfter = count(options.idleAfterMs, DEFAULTS.idleAfterMs, 'idleAfterMs');
    this.maxTracked = count(options.maxTracked, DEFAULTS.maxTracked, 'maxTracked');
    this.maxLeakGroups = count(options.maxLeakGroups, DEFAULTS.maxLeakGroups, 'maxLeakGroups');
    this.now = options.now ?? monotonicMs;
    this.stacks = new StackFormatter(
      count(options.stackFrames, DEFAULTS.stackFrames, 'stackFrames'),
      [...PACKAGE_DIRS, ...(options.internalPaths ?? [])],
    );
    this.registry = new FinalizationRegistry((entry) => this.collected(entry));
    this.tracer =
      options.spans === false ? undefined : (options.tracer ?? trace.getTracer('@trustflow/core'));
    const provider = trace.getTracerProvider();
    this.globalTracing =
      this.tracer && !options.tracer && provider instanceof ProxyTracerProvider
        ? provider
        : undefined;
    const meter = options.meter ?? metrics.getMeter('@trustflow/core');
    this.telemetry = new TrackerTelemetry(meter, {
      series: () => this.allSeries,
      overflow: () => this.overflow,
      errors: () => this.errors.count,
      now: this.now,
    });
    const interval = count(options.scanIntervalMs, DEFAULTS.scanIntervalMs, 'scanIntervalMs');
    if (interval > 0) {
      this.timer = setInterval(() => this.scan(), interval);
      this.timer.unref();
    }
  }

  get stackMode(): StackMode {
    return this.mode;
  }

  get isShutdown(): boolean {
    return this.shut;
  }

  /** True inside `untracked()`. */
  get isQuiet(): boolean {
    return this.quiet > 0;
  }

  untracked<R>(fn: () => R): R {
    this.quiet++;
    try {
      return fn();
    } finally {
      this.quiet--;
    }
  }

  ignore(resource: object): void {
    if (resource === null || (typeof resource !== 'object' && typeof resource !== 'function')) {
      return;
    }
    this.ignored.add(resource);
    this.ignoring = true;
    try {
      const id = (resource as { getAsyncId?: () => number }).getAsyncId?.();
      // 1 is the top level: everything would look owned.
      if (typeof id === 'number' && id > 1) this.ownedIds.add(id);
    } catch (error) {
      this.errors.report('tracker.ignore', error);
    }
  }

  /** A resource created now belongs to instrumentation, not to the application. */
  private isOwned(resource: unknown): boolean {
    if (this.quiet > 0) return true;
    if (this.ownedIds.size !== 0 && this.ownedIds.has(executionAsyncId())) return true;
    return this.ignoring && typeof resource === 'object' && resource !== null
      ? this.ignored.has(resource)
      : false;
  }

  track<T>(resource: T, spec: TrackOptions<T>): ResourceHandle {
    if (this.shut || this.isOwned(resource)) return DETACHED;
    try {
      return this.trackUnsafe(resource, spec);
    } catch (error) {
      this.errors.report('tracker.track', error);
      return DETACHED;
    }
  }

  private trackUnsafe<T>(resource: T, spec: TrackOptions<T>): ResourceHandle {
    const series = this.seriesFor(spec.kind, spec.attributes);
    const id = this.nextId++;
    series.opened++;
    if (this.live >= this.maxTracked) {
      this.overflow++;
      series.untracked++;
      return new UntrackedHandle(id, series);
    }
    const now = this.now();
    const entry = new Entry(id, spec, series, now, this);
    const isObject =
      (typeof resource === 'object' && resource !== null) || typeof resource === 'function';
    if (isObject) {
      if (spec.close || spec.activity || spec.inspect) entry.target = new WeakRef(resource);
      if (spec.gc !== false) {
        this.registry.register(resource, entry, entry);
        entry.state |= REGISTERED;
      }
    } else if (resource !== undefined) {
      entry.target = resource;
    }
    if (spec.site instanceof Site) {
      entry.stack = spec.site.stack;
    } else if (this.shouldCapture(series.kindState, spec)) {
      entry.stack = this.stacks.capture(this.track);
    }
    if (
      this.tracer &&
      spec.span !== false &&
      this.globalTracing?.getDelegate() !== NOOP_TRACER_PROVIDER
    ) {
      const span = this.tracer.startSpan(
        spec.kind,
        { attributes: spanAttributes(series, spec.details) },
        context.active(),
      );
      if (span.isRecording()) entry.span = span;
    }
    series.add(entry);
    series.kindState.live++;
    this.live++;
    return entry;
  }

  captureSite(kind: string): CreationSite {
    if (this.shut) return NOT_SAMPLED;
    try {
      const state = this.seriesFor(kind, undefined).kindState;
      if (!this.shouldCapture(state, SITE_SPEC)) return NOT_SAMPLED;
      return new Site(this.stacks.capture(this.captureSite));
    } catch (error) {
      this.errors.report('tracker.captureSite', error);
      return NOT_SAMPLED;
    }
  }

  private shouldCapture(kind: KindState, spec: TrackOptions<any>): boolean {
    const seen = kind.seen++;
    if (spec.captureStack) return true;
    switch (this.mode) {
      case 'off':
        return false;
      case 'all':
        return true;
      default: {
        // Leaked resources pile up: one that takes the kind's open count to a new high is worth a
        // stack, while open/close churn (module loads, request sockets) never does.
        if (kind.live >= kind.highWater) {
          kind.highWater = kind.live + 1;
          if (kind.newHighs.take(this.now())) return true;
        }
        if (seen < this.first) return true;
        return (seen - this.first) % this.every === 0 && kind.samples.take(this.now());
      }
    }
  }

  private seriesFor(kind: string, attributes: Attributes | undefined): Series {
    let state = this.kinds.get(kind);
    if (state === undefined) {
      state = new KindState(kind);
      this.kinds.set(kind, state);
      this.allSeries.push(state.plain);
    }
    if (attributes === undefined) return state.plain;
    let series = state.byObject.get(attributes);
    if (series !== undefined) return series;
    const key = attributeKey(attributes);
    series = state.byKey.get(key);
    if (series === undefined) {
      if (this.allSeries.length >= DEFAULTS.maxSeries) {
        this.errors.report('tracker.series-cap', new Error('too many attribute sets; merged'));
        return state.plain;
      }
      series = new Series(kind, { ...attributes }, state);
      state.byKey.set(key, series);
      this.allSeries.push(series);
    }
    state.byObject.set(attributes, series);
    return series;
  }

  /** Called once per entry by `release()`. */
  settle(entry: Entry, options: ReleaseOptions | undefined): void {
    try {
      const series = entry.series;
      if (series.remove(entry)) {
        series.kindState.live--;
        this.live--;
      }
      series.closed++;
      if ((entry.state & REGISTERED) !== 0) this.registry.unregister(entry);
      const lifetime = (this.now() - entry.openedAt) / 1000;
      this.telemetry.recordLifetime(lifetime, series);
      const span = entry.span;
      if (span) {
        if (options?.details) span.setAttributes(options.details);
        if (options?.error !== undefined) recordError(span, options.error);
        span.end();
        entry.span = undefined;
      }
      entry.target = undefined;
      entry.stack = undefined;
      entry.details = undefined;
    } catch (error) {
      this.errors.report('tracker.release', error);
    }
  }

  /**
   * The object went away without release: the FinalizationRegistry callback, or (`told`) a plugin
   * that learned it otherwise and called `release({ collected: true })`.
   */
  collected(entry: Entry, told = false): void {
    if (this.shut || (entry.state & (RELEASED | COLLECTED)) !== 0) return;
    entry.state |= COLLECTED;
    try {
      if (told && (entry.state & REGISTERED) !== 0) this.registry.unregister(entry);
      const series = entry.series;
      if (series.remove(entry)) {
        series.kindState.live--;
        this.live--;
      }
      const event = this.describe(entry, 'gc-unreleased', this.now());
      this.recordGcGroup(event, entry.id);
      this.leakFound(entry, event);
      entry.span?.end();
      entry.span = undefined;
      entry.stack = undefined;
      this.emit([event]);
    } catch (error) {
      this.errors.report('tracker.finalization', error);
    }
  }

  private recordGcGroup(event: LeakEvent, id: number): void {
    const key = `${event.kind}\n${event.stack.join('\n')}`;
    let group = this.gcGroups.get(key);
    if (group === undefined) {
      if (this.gcGroups.size >= this.maxLeakGroups) {
        this.droppedGroups++;
        return;
      }
      group = {
        kind: event.kind,
        reason: 'gc-unreleased',
        count: 0,
        site: event.site,
        stack: event.stack,
        oldestAgeMs: 0,
        sample: { attributes: event.attributes },
        lastId: 0,
      };
      this.gcGroups.set(key, group);
    }
    group.count++;
    group.lastId = id;
    if (event.ageMs > group.oldestAgeMs) group.oldestAgeMs = event.ageMs;
  }

  private leakFound(entry: Entry, event: LeakEvent): void {
    this.telemetry.leaked.add(1, { ...entry.series.metricAttributes, [ATTR_REASON]: event.reason });
    const span = entry.span;
    if (span) {
      span.addEvent('trustflow.leak', {
        [ATTR_REASON]: event.reason,
        ...(event.site ? { [ATTR_SITE]: event.site } : {}),
      });
      span.setStatus({ code: SpanStatusCode.ERROR, message: `leak: ${event.reason}` });
    }
  }

  private describe(entry: Entry, reason: LeakReason, now: number): LeakEvent {
    const stack = entry.stack;
    if (stack) this.stacks.resolve(stack);
    return {
      kind: entry.series.kind,
      reason,
      id: entry.id,
      site: stack?.site ?? null,
      stack: stack?.frames ?? [],
      ageMs: now - entry.openedAt,
      attributes: this.attributesOf(entry),
    };
  }

  private attributesOf(entry: Entry): Attributes {
    const inspect = entry.spec.inspect;
    let inspected: Attributes | undefined;
    if (inspect) {
      const resource = entry.resource();
      if (resource !== undefined) {
        try {
          inspected = inspect(resource);
        } catch (error) {
          this.errors.report(`inspect ${entry.series.kind}`, error);
        }
      }
    }
    return { ...entry.series.attributes, ...entry.details, ...inspected };
  }

  private emit(events: LeakEvent[]): void {
    if (events.length === 0 || this.listeners.size === 0) return;
    const listeners = [...this.listeners];
    for (const event of events) {
      for (const listener of listeners) {
        try {
          listener(event);
        } catch (error) {
          this.errors.report('onLeak listener', error);
        }
      }
    }
  }

  onLeak(listener: (leak: LeakEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Every live entry, oldest first within each series (a copy: safe against mutation). */
  private liveEntries(filter?: (entry: Entry) => boolean): Entry[] {
    const out: Entry[] = [];
    for (const series of this.allSeries) {
      for (let e = series.head; e !== undefined; e = e.next) if (!filter || filter(e)) out.push(e);
    }
    return out;
  }

  /** Refreshes activity through the entry's probe; a changed value counts as a touch. */
  private probe(entry: Entry, now: number): void {
    const activity = entry.spec.activity;
    if (!activity) return;
    const resource = entry.resource();
    if (resource === undefined) return;
    try {
      const mark = activity(resource);
      if (mark !== entry.activityMark) {
        entry.activityMark = mark;
        entry.lastActive = now;
        entry.state &= ~STALE_REPORTED;
      }
    } catch (error) {
      this.errors.report(`activity ${entry.series.kind}`, error);
    }
  }

  private isStale(entry: Entry, now: number, olderThan: number, idleFor: number): boolean {
    return now - entry.openedAt >= olderThan && now - entry.lastActive >= idleFor;
  }

  scan(): void {
    if (this.shut) return;
    try {
      const now = this.now();
      const cutoff = now - this.staleAfter;
      // Entries of a series are in opening order: stop at the first one too young to be stale.
      const candidates: Entry[] = [];
      for (const series of this.allSeries) {
        for (let e = series.head; e !== undefined; e = e.next) {
          if (e.openedAt > cutoff) break;
          candidates.push(e);
        }
      }
      const events: LeakEvent[] = [];
      for (const entry of candidates) {
        if (entry.released) continue;
        this.probe(entry, now);
        if ((entry.state & STALE_REPORTED) !== 0) continue;
        if (entry.released || !this.isStale(entry, now, this.staleAfter, this.idleAfter)) continue;
        entry.state |= STALE_REPORTED;
        const event = this.describe(entry, 'stale', now);
        this.leakFound(entry, event);
        events.push(event);
      }
      this.emit(events);
    } catch (error) {
      this.errors.report('tracker.scan', error);
    }
  }

  async closeStale(options: CloseStaleOptions = {}): Promise<CloseStaleResult> {
    const olderThan = options.olderThan ?? this.staleAfter;
    const idleFor = options.idleFor ?? this.idleAfter;
    const kinds = options.kinds ? new Set(options.kinds) : undefined;
    const now = this.now();
    const selected = this.liveEntries(
      (entry) => entry.spec.close !== undefined && (!kinds || kinds.has(entry.series.kind)),
    );
    const result: CloseStaleResult = { closed: 0, errors: [] };
    const pending: Promise<void>[] = [];
    for (const entry of selected) {
      if (entry.released) continue;
      this.probe(entry, now);
      if (!this.isStale(entry, now, olderThan, idleFor)) continue;
      const resource = entry.resource();
      if (resource === undefined && entry.target instanceof WeakRef) continue;
      const done = () => {
        result.closed++;
        entry.release({ details: { 'trustflow.close.cause': 'close-stale' } });
      };
      try {
        const outcome = entry.spec.close!(resource);
        if (outcome instanceof Promise) {
          pending.push(outcome.then(done, (error) => void result.errors.push(error)));
        } else {
          done();
        }
      } catch (error) {
        result.errors.push(error);
      }
    }
    await Promise.all(pending);
    for (const error of result.errors) this.errors.report('closeStale closer', error);
    return result;
  }

  snapshot(): Snapshot {
    this.stacks.flush();
    const now = this.now();
    const resources: OpenResource[] = [];
    for (const entry of this.liveEntries()) {
      const stack = entry.stack;
      if (stack) this.stacks.resolve(stack);
      resources.push({
        id: entry.id,
        kind: entry.series.kind,
        ageMs: now - entry.openedAt,
        idleMs: now - entry.lastActive,
        site: stack?.site ?? null,
        stack: stack?.frames ?? [],
        attributes: this.attributesOf(entry),
      });
    }
    const counts = this.counts();
    return { lastId: this.nextId - 1, ...counts, overflow: this.overflow, resources };
  }

  private counts(): Pick<Snapshot, 'active' | 'opened' | 'closed'> {
    const active: Record<string, number> = {};
    const opened: Record<string, number> = {};
    const closed: Record<string, number> = {};
    for (const s of this.allSeries) {
      active[s.kind] = (active[s.kind] ?? 0) + s.active;
      opened[s.kind] = (opened[s.kind] ?? 0) + s.opened;
      closed[s.kind] = (closed[s.kind] ?? 0) + s.closed;
    }
    return { active, opened, closed };
  }

  report(options: ReportOptions = {}): Report {
    this.stacks.flush();
    const now = this.now();
    const since = options.sinceId ?? 0;
    const kinds = options.kinds ? new Set(options.kinds) : undefined;
    const wanted = (kind: string) => !kinds || kinds.has(kind);
    const groups = new Map<string, LeakGroup>();
    for (const entry of this.liveEntries((e) => e.id > since && wanted(e.series.kind))) {
      this.probe(entry, now);
      const stale = this.isStale(entry, now, this.staleAfter, this.idleAfter);
      if (!stale && !options.includeOpen) continue;
      const reason: LeakReason = stale ? 'stale' : 'open-at-exit';
      const stack = entry.stack;
      if (stack) this.stacks.resolve(stack);
      const fingerprint = stack?.fingerprint ?? '';
      const key = `${reason}\n${entry.series.kind}\n${fingerprint}`;
      const age = now - entry.openedAt;
      const group = groups.get(key);
      if (group) {
        group.count++;
        if (age > group.oldestAgeMs) group.oldestAgeMs = age;
        continue;
      }
      groups.set(key, {
        kind: entry.series.kind,
        reason,
        count: 1,
        site: stack?.site ?? null,
        stack: stack?.frames ?? [],
        oldestAgeMs: age,
        sample: { attributes: this.attributesOf(entry) },
      });
    }
    const leaks: LeakGroup[] = [...groups.values()];
    for (const group of this.gcGroups.values()) {
      if (group.lastId <= since || !wanted(group.kind)) continue;
      const { lastId: _ignored, ...rest } = group;
      leaks.push(rest);
    }
    leaks.sort((a, b) => b.count - a.count || b.oldestAgeMs - a.oldestAgeMs);
    const report: Report = {
      schema: 'trustflow.report/v1',
      pid: process.pid,
      generatedAt: new Date().toISOString(),
      process: processFigures(),
      ...this.counts(),
      leaks,
      overflow: this.overflow,
      instrumentationErrors: this.errors.count,
    };
    if (this.droppedGroups > 0) report.droppedLeakGroups = this.droppedGroups;
    if (this.sections.size > 0) {
      const extra: Record<string, unknown> = {};
      for (const [name, build] of this.sections) {
        try {
          extra[name] = build();
        } catch (error) {
          this.errors.report(`report section ${name}`, error);
        }
      }
      report.extra = extra;
    }
    return report;
  }

  /**
   * Gives a tracked resource the creation stack captured earlier by `stacks.capture()`, for
   * resources created in a callback after the user's call (a server's handle is created after an
   * address lookup, so its own stack has no user frame). Keeps an existing stack that has a site.
   */
  attachStack(handle: ResourceHandle, stack: CapturedStack): void {
    if (!(handle instanceof Entry) || handle.released) return;
    const current = handle.stack;
    if (current) {
      this.stacks.resolve(current);
      if (current.site) return;
    }
    handle.stack = stack;
  }

  addReportSection(name: string, build: () => unknown): () => void {
    this.sections.set(name, build);
    return () => {
      if (this.sections.get(name) === build) this.sections.delete(name);
    };
  }

  shutdown(): void {
    if (this.shut) return;
    this.shut = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    try {
      this.telemetry.stop();
    } catch (error) {
      this.errors.report('tracker.shutdown', error);
    }
    for (const entry of this.liveEntries()) {
      const span = entry.span;
      if (span) {
        span.setAttribute('trustflow.resource.open_at_shutdown', true);
        span.end();
      }
      if ((entry.state & REGISTERED) !== 0) this.registry.unregister(entry);
      entry.state |= RELEASED;
    }
    for (const series of this.allSeries) series.clear();
    this.live = 0;
    this.listeners.clear();
    this.sections.clear();
  }

  /**
   * Keep the lifetime histogram here, per series, for lifetimeProducer() to hand to readers,
   * instead of one SDK record() per release. Call before anything is released; returns false
   * (and changes nothing) after.
   */
  collectLifetimes(): boolean {
    return this.telemetry.collectLifetimesHere();
  }

  /** Name, unit, description and bucket boundaries of the lifetime histogram. */
  get lifetimeMetric(): typeof LIFETIME {
    return LIFETIME;
  }

  /** The collected lifetime histograms, one per series that has released something. */
  lifetimes(): { attributes: OtelAttributes; histogram: LifetimeHistogram }[] {
    const out: { attributes: OtelAttributes; histogram: LifetimeHistogram }[] = [];
    for (const series of this.allSeries) {
      if (series.lifetime)
        out.push({ attributes: series.metricAttributes, histogram: series.lifetime });
    }
    return out;
  }

  /** Internal access for plugin hosts in this package. */
  get [kInternal](): Tracker {
    return this;
  }
}

function spanAttributes(series: Series, details: Attributes | undefined): OtelAttributes {
  return details ? { ...series.metricAttributes, ...details } : series.metricAttributes;
}

function recordError(span: Span, error: unknown): void {
  const err = error instanceof Error ? error : new Error(String(error));
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  span.setAttribute('error.type', err.name || 'Error');
}

function attributeKey(attributes: Attributes): string {
  const keys = Object.keys(attributes).sort();
  let key = '';
  for (const k of keys) key += `${k}=${String(attributes[k])};`;
  return key;
}

/** Reads a numeric option; a bad value is a one-line TypeError naming the option. */
function count(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  throw new TypeError(
    `createResourceTracker: option ${name} must be a non-negative number, got ${String(value)}`,
  );
}

function pick(value: StackMode | undefined, fallback: StackMode): StackMode {
  if (value === undefined) return fallback;
  if (value === 'off' || value === 'sampled' || value === 'all') return value;
  throw new TypeError(
    `createResourceTracker: option stacks must be 'off', 'sampled' or 'all', got ${String(value)}`,
  );
}

export { ATTR_KIND };

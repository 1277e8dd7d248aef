import type { DiagLogger, Meter, Tracer } from '@opentelemetry/api';

/** Why a resource is reported as leaked. (contract) */
export type LeakReason = 'gc-unreleased' | 'stale' | 'open-at-exit';

/** How creation stacks are captured: never, the first N of each kind then 1 in M, or always. */
export type StackMode = 'off' | 'sampled' | 'all';

/** Attribute values allowed on metrics, spans and reports. */
export type AttributeValue = string | number | boolean;
export type Attributes = Record<string, AttributeValue>;

export interface TrackOptions<T = unknown> {
  /** Resource kind, e.g. `fs.fd`, `net.socket`, `timer`, `async.TCPSERVERWRAP`. */
  kind: string;
  /**
   * Low-cardinality attributes (protocol, direction, transport). They go on metrics, spans and
   * reports. Pass the same object for the same set when you can: it is cached by identity.
   */
  attributes?: Attributes;
  /**
   * High-cardinality attributes (path, address, peer id). They go on the lifetime span and in
   * reports, never on metrics.
   */
  details?: Attributes;
  /**
   * Closes the resource when `closeStale()` selects it. It receives the resource: do not capture
   * the resource in the closure, or it can never be garbage-collected (and never reported as
   * `gc-unreleased`).
   */
  close?: (resource: T) => unknown;
  /**
   * Activity probe run by the periodic scan: returns a number that changes when the resource was
   * used (for example bytesRead + bytesWritten). A change counts as `touch()`. Same rule as
   * `close`: use the argument, do not capture the resource.
   */
  activity?: (resource: T) => number;
  /** Extra attributes computed when a report or snapshot is taken (for example `hasRef`). */
  inspect?: (resource: T) => Attributes | undefined;
  /**
   * Report the object as `gc-unreleased` if it is collected before release. Default: true for
   * objects. Turn off for objects whose collection is normal (async-hooks handles).
   */
  gc?: boolean;
  /** Capture the creation stack whatever the sampling says. */
  captureStack?: boolean;
  /** Start a lifetime span for this resource. Default true (when the tracker has spans on). */
  span?: boolean;
  /**
   * A creation stack taken earlier with `tracker.captureSite()`, used instead of the stack at
   * `track()` time: for a resource that only exists after an asynchronous open, or a socket
   * accepted by a server (whose site is the server's). Several resources may share one site.
   */
  site?: CreationSite;
}

/**
 * A creation stack taken before the resource exists (see `ResourceTracker.captureSite`). Opaque:
 * only the tracker that made it can use it.
 */
export interface CreationSite {
  /** False when sampling decided not to capture a stack. */
  readonly sampled: boolean;
}

export interface ReleaseOptions {
  /** Attributes recorded on the span at release (bytes read, close cause...). */
  details?: Attributes;
  /** An error that ended the resource; recorded on the span. */
  error?: unknown;
  /**
   * The resource was garbage-collected without being closed, and the caller learned it some way
   * other than the tracker's own watch (a resource tracked with `gc: false` whose runtime reports
   * the collection, such as Node's warning for a FileHandle closed on garbage collection). It is
   * reported as a `gc-unreleased` leak, exactly as if the tracker had seen it collected.
   */
  collected?: boolean;
}

/** What `track()` returns. `release()` is idempotent and safe to call from inside a closer. */
export interface ResourceHandle extends Disposable {
  readonly id: number;
  readonly kind: string;
  readonly released: boolean;
  /**
   * True while the resource has a lifetime span that records (an SDK is registered and sampled
   * it). Details that only a span would show can be skipped when it is false.
   */
  readonly recording: boolean;
  release(options?: ReleaseOptions): void;
  /** Marks activity: an active resource is never `stale`. */
  touch(): void;
  /** Adds high-cardinality details (span and report only), e.g. a path known after open. */
  annotate(details: Attributes): void;
}

export interface ResourceTrackerOptions {
  /** Stack capture mode. Default `sampled`. */
  stacks?: StackMode;
  /** With `sampled`: capture the first N resources of each kind. Default 10. */
  stackSampleFirst?: number;
  /** With `sampled`: after the first N, capture 1 in M. Default 100. */
  stackSampleEvery?: number;
  /** User frames kept per stack. Default 12. */
  stackFrames?: number;
  /** A resource open longer than this (ms) and idle longer than `idleAfterMs` is `stale`. Default 30 min. */
  staleAfterMs?: number;
  /** Idle time (ms) for `stale`. Default 5 min. */
  idleAfterMs?: number;
  /** Period of the stale scan in ms (unref'd timer); 0 turns the timer off. Default 60 s. */
  scanIntervalMs?: number;
  /** Cap on live tracked entries; resources past it are counted, not tracked. Default 100 000. */
  maxTracked?: number;
  /** Cap on distinct leak groups kept for reports. Default 500. */
  maxLeakGroups?: number;
  /** Meter for the tracker's metrics. Default: the global meter provider's `@trustflow/core` meter. */
  meter?: Meter;
  /** Tracer for lifetime spans. Default: the global tracer provider's. */
  tracer?: Tracer;
  /** Lifetime spans on or off. Default true (with no SDK registered they cost next to nothing). */
  spans?: boolean;
  /** Extra path fragments whose stack frames are not user code (your own wrappers). */
  internalPaths?: string[];
  /** Monotonic clock in ms, for tests. Default: `process.hrtime()` based. */
  now?: () => number;
}

/** A leak group in a report: resources of one kind and reason created at the same stack. */
export interface LeakGroup {
  kind: string;
  reason: LeakReason;
  count: number;
  /** First user frame `file:line:column`, or null when no stack was sampled. */
  site: string | null;
  stack: string[];
  oldestAgeMs: number;
  sample: { attributes: Attributes };
}

/** The report, schema `trustflow.report/v1`. (contract) */
export interface Report {
  schema: 'trustflow.report/v1';
  pid: number;
  generatedAt: string;
  process: { rssBytes: number; heapUsedBytes: number; openFds: number | null };
  active: Record<string, number>;
  opened: Record<string, number>;
  closed: Record<string, number>;
  leaks: LeakGroup[];
  /** Resources not tracked because `maxTracked` was reached. */
  overflow: number;
  /** Errors caught inside instrumentation. */
  instrumentationErrors: number;
  /** Leak groups not kept because `maxLeakGroups` was reached. */
  droppedLeakGroups?: number;
  /** Extra sections contributed by plugins (for example the fd inventory). */
  extra?: Record<string, unknown>;
}

export interface ReportOptions {
  /** Also list every open resource as an `open-at-exit` leak (exit reports, leak checks). */
  includeOpen?: boolean;
  /** Only resources with an id greater than this (see `snapshot().lastId`). */
  sinceId?: number;
  /** Only these kinds. */
  kinds?: string[];
}

/** One live tracked resource, as seen by `snapshot()`. */
export interface OpenResource {
  id: number;
  kind: string;
  ageMs: number;
  idleMs: number;
  site: string | null;
  stack: string[];
  attributes: Attributes;
}

export interface Snapshot {
  /** Highest id handed out so far: pass it as `sinceId` to look only at what came after. */
  lastId: number;
  active: Record<string, number>;
  opened: Record<string, number>;
  closed: Record<string, number>;
  overflow: number;
  resources: OpenResource[];
}

export interface LeakEvent {
  kind: string;
  reason: LeakReason;
  id: number;
  site: string | null;
  stack: string[];
  ageMs: number;
  attributes: Attributes;
}

export interface CloseStaleOptions {
  /** Only resources open at least this long (ms). Default: `staleAfterMs`. */
  olderThan?: number;
  /** Only resources idle at least this long (ms). Default: `idleAfterMs`. */
  idleFor?: number;
  /** Only these kinds. Default: all kinds. */
  kinds?: string[];
}

export interface CloseStaleResult {
  closed: number;
  /** Errors thrown or rejected by closers (they never escape). */
  errors: unknown[];
}

export interface ResourceTracker {
  track<T>(resource: T, options: TrackOptions<T>): ResourceHandle;
  /**
   * Takes the creation stack now, for a resource of `kind` that is tracked later (pass the result
   * as `TrackOptions.site`). Sampled like `track()`, and the decision counts for `kind`. Cheap
   * when not sampled.
   */
  captureSite(kind: string): CreationSite;
  /**
   * Runs `fn` as instrumentation rather than application: resources created while it runs are not
   * tracked, nor (where the async-hooks source runs) resources created later by what it started,
   * such as an exporter's server, its connections and its timers. Returns what `fn` returns.
   */
  untracked<R>(fn: () => R): R;
  /**
   * Never tracks this object. If it is an async resource (it has `getAsyncId()`, like a server's
   * `_handle`), resources created in its callbacks are not tracked either.
   */
  ignore(resource: object): void;
  report(options?: ReportOptions): Report;
  snapshot(): Snapshot;
  /** Listen for leaks as they are found. Returns an unsubscribe function. */
  onLeak(listener: (leak: LeakEvent) => void): () => void;
  /** Run the stale scan now (the timer runs it every `scanIntervalMs`). */
  scan(): void;
  /** Close resources that are open and idle past the thresholds, through their `close`. */
  closeStale(options?: CloseStaleOptions): Promise<CloseStaleResult>;
  /** Adds a section to every report (plugins use it). Returns a remove function. */
  addReportSection(name: string, build: () => unknown): () => void;
  /** Stops the timer, ends open spans and forgets every entry. Idempotent. */
  shutdown(): void;
  readonly isShutdown: boolean;
  /** The stack capture mode it was created with. */
  readonly stackMode: StackMode;
}

/** What a plugin gets when it is enabled. */
export interface PluginContext {
  tracker: ResourceTracker;
  meter: Meter;
  tracer: Tracer;
  diag: DiagLogger;
  /**
   * Replaces `target[key]` with `wrap(original)`, giving a function wrapper the original's `name`,
   * `length` and symbol properties (such as `util.promisify.custom`). The host restores the
   * original (identity-equal) on disable; if another library wrapped on top of ours meanwhile,
   * ours becomes a pass-through. Builtin module exports are re-synced for ESM named imports.
   */
  patch<O extends object, K extends keyof O>(
    target: O,
    key: K,
    wrap: (original: O[K]) => O[K],
  ): void;
  /** Subscribes to a diagnostics_channel; unsubscribed on disable. */
  subscribe(channel: string, listener: (message: unknown, name: string | symbol) => void): void;
  /** Runs on disable, in reverse order of registration. */
  onDisable(cleanup: () => void): void;
  /**
   * Runs `apply` (which patches builtin modules) once one of the builtins `ids` (without `node:`)
   * is needed: at once if one is loaded already, otherwise when the application first requires,
   * imports or `process.getBuiltinModule()`s one of them, before it gets it (Node >= 22.15;
   * elsewhere at once). The returned function applies it now, for other signs the plugin knows.
   * A preloaded program that never uses those builtins then never loads them.
   */
  whenLoaded(ids: readonly string[], apply: () => void): () => void;
  /** Wraps a function so that anything it throws is counted and logged, never rethrown. */
  guard<A extends unknown[], R>(
    where: string,
    fn: (...args: A) => R,
  ): (...args: A) => R | undefined;
  /** Counts and logs (once per `where`) an error caught inside instrumentation. */
  reportError(where: string, error: unknown): void;
  /** True while the plugin is enabled; wrappers check it to become pass-throughs. */
  readonly active: boolean;
}

/** What `LiveList.add` returns: the resource and its handle, both cleared once removed. */
export interface LiveNode<R> {
  readonly resource: R | undefined;
  readonly handle: ResourceHandle | undefined;
}

/** A plugin: `enable` is idempotent; `disable` restores every original. (contract) */
export interface TrustflowPlugin {
  readonly name: string;
  readonly enabled: boolean;
  enable(ctx: PluginHostContext): void;
  disable(): void;
}

/** What a plugin host passes to `enable`. */
export interface PluginHostContext {
  tracker: ResourceTracker;
  meter?: Meter;
  tracer?: Tracer;
  diag?: DiagLogger;
}

export interface PluginDefinition {
  name: string;
  /**
   * `import.meta.url` of any module of the plugin's package (under its src/ or dist/): both
   * folders are cut from creation stacks, so the plugin's wrapper frames are never a leak's site.
   */
  module?: string;
  /** More path fragments whose stack frames are instrumentation, not user code. */
  internalPaths?: string[];
  /** Installs the instrumentation through `ctx`; may return an extra cleanup. */
  setup(ctx: PluginContext): (() => void) | undefined | void;
}

export interface AsyncHooksSourceOptions {
  /**
   * Enable even where `createHook({ trackPromises: false })` is not supported. There, Node runs a
   * promise hook for every promise and await-heavy code gets several times slower.
   */
  forceWithPromiseHooks?: boolean;
  /** Handle types to track (async_hooks type names). Default: the long-lived ones. */
  types?: string[];
}

// --- prevention toolkit ---

/** A cleanup registered on a scope. It may return a promise; scopes await it when closed. */
export type Cleanup = () => unknown;

export interface ScopeOptions {
  /** The scope closes (its cleanups run) when this signal aborts. */
  signal?: AbortSignal;
  /** Shown in error messages. */
  name?: string;
}

/**
 * A LIFO list of cleanups tied to an AbortSignal. Works with `using` (synchronous cleanups) and
 * `await using` (any cleanups). Every cleanup runs once; every error a cleanup throws is kept
 * and delivered once, to the first `close()` or dispose that completes after it: as is when it
 * is the only one, as an AggregateError (in the order they happened) when there are several.
 */
export interface CleanupScope extends Disposable, AsyncDisposable {
  /** Aborts when the scope starts closing: its own close, the parent signal, or a timeout. */
  readonly signal: AbortSignal;
  readonly state: 'open' | 'closing' | 'closed';
  /**
   * Registers a cleanup; the last registered runs first. Returns a function that removes it
   * without running it (for resources closed normally before the scope ends). A cleanup added
   * while the scope closes runs next; one added after it closed runs at once.
   */
  defer(cleanup: Cleanup, name?: string): () => void;
  /** Registers `value[Symbol.asyncDispose]` or `value[Symbol.dispose]`; returns `value`. */
  use<T extends Disposable | AsyncDisposable | null | undefined>(value: T): T;
  /**
   * Aborts `signal` (with `reason`, default an AbortError), then runs the cleanups in reverse
   * order, awaiting each. Idempotent. Called from one of the scope's own cleanups, it returns at
   * once instead of waiting for itself.
   */
  close(reason?: unknown): Promise<void>;
}

export interface WithTimeoutOptions {
  /** Also abort the work when this signal aborts (the promise rejects with its reason). */
  signal?: AbortSignal;
  /** Names the operation in the timeout error. */
  name?: string;
}

export interface ShutdownOptions {
  /** How long the cleanups may take in total before the coordinator stops waiting. Default 10 s. */
  deadlineMs?: number;
  /**
   * Called with the result of a shutdown started by a signal, before the signal is re-raised.
   * Default: prints the cleanup errors and unfinished cleanups (if any) to stderr.
   */
  onResult?: (result: ShutdownResult) => void;
}

export interface ShutdownResult {
  /** The signal name, or the reason given to `shutdown()`. */
  reason: unknown;
  /** True when the deadline passed before every cleanup had finished. */
  timedOut: boolean;
  /**
   * Every error thrown or rejected by a cleanup, in the order they happened. Errors of cleanups
   * still running at the deadline are appended when they happen.
   */
  errors: unknown[];
  /** Cleanups that had not finished at the deadline, in the order they were (or would be) run. */
  unfinished: string[];
  durationMs: number;
}

/** Runs registered cleanups in reverse order at shutdown, within a deadline. */
export interface ShutdownCoordinator {
  /** Aborts when the shutdown starts. */
  readonly signal: AbortSignal;
  /**
   * Registers a cleanup; the last registered runs first. The cleanup receives a signal that
   * aborts at the deadline (pass it on to make a slow close give up). Returns a remove function.
   */
  defer(cleanup: (deadline: AbortSignal) => unknown, name?: string): () => void;
  /** Registers `value[Symbol.asyncDispose]` or `value[Symbol.dispose]`; returns `value`. */
  use<T extends Disposable | AsyncDisposable | null | undefined>(value: T): T;
  /** Runs the cleanups now (idempotent: later calls get the same result). Never rejects. */
  shutdown(reason?: unknown): Promise<ShutdownResult>;
  /**
   * Listens for the signals (default SIGTERM and SIGINT). On the first one it shuts down, calls
   * `onResult`, removes its listeners and re-raises the signal, so the process ends the way it
   * would have without the coordinator (unless the application has listeners of its own for
   * that signal). A second signal during shutdown re-raises at once. Returns an uninstall
   * function. Nothing is installed until this is called.
   */
  install(signals?: NodeJS.Signals[]): () => void;
}

/** Raw memory figures; a synthetic source returns these to drive the monitor in tests. */
export interface MemoryReading {
  heapUsedBytes: number;
  /** The V8 heap limit (`v8.getHeapStatistics().heap_size_limit`). */
  heapLimitBytes: number;
  rssBytes: number;
  /** `process.constrainedMemory()` when it reports a limit, else null. */
  containerLimitBytes: number | null;
}

/** A reading with the effective ratio. */
export interface MemoryPressureFigures extends MemoryReading {
  /** The higher of heap used / heap limit and RSS / container limit. */
  ratio: number;
  /** The figures behind `ratio`: heap used or RSS, and its limit. */
  usedBytes: number;
  limitBytes: number;
  limitSource: 'heap' | 'container';
  /** With `gcOnPressure`: the figures after the forced collection. */
  afterGc?: MemoryPressureFigures;
}

export interface MemoryPressureOptions {
  /** Ratio at which `pressure` fires. Default 0.85. */
  threshold?: number;
  /** Ratio under which `relief` fires after `pressure` (hysteresis). Default threshold - 0.1. */
  reliefThreshold?: number;
  /** Check period in ms (unref'd timer); 0 turns the timer off (call `check()`). Default 30 s. */
  intervalMs?: number;
  /**
   * Before reporting pressure, run one full GC and check again (only if `gc` is exposed, at most
   * once per 10 intervals). Default false: the monitor never forces GC on its own.
   */
  gcOnPressure?: boolean;
  /** Reading source. Default: V8 heap statistics, RSS and `process.constrainedMemory()`. */
  read?: () => MemoryReading;
  /** Meter for `trustflow.memory.pressure`. Default: the global meter provider's. */
  meter?: Meter;
}

export interface MemoryPressureMonitor extends Disposable {
  readonly underPressure: boolean;
  /** Reads now, updates the state and fires events; returns the figures. */
  check(): MemoryPressureFigures;
  /** `pressure` when the ratio reaches the threshold, `relief` when it falls back under the relief threshold. */
  on(event: 'pressure' | 'relief', listener: (figures: MemoryPressureFigures) => void): () => void;
  /** Stops the timer and the metric. Idempotent. */
  stop(): void;
}

/** One observation: `t` in milliseconds (any epoch), `v` in the series' unit. */
export interface GrowthPoint {
  t: number;
  v: number;
}

export interface GrowthOptions {
  /** Growth is reported only when `confidence` reaches this. Default 0.95. */
  minConfidence?: number;
  /** Growth is reported only when the slope reaches this (series unit per hour). Default 0. */
  minSlopePerHour?: number;
  /** Fewer points than this give `insufficient-data`. Default 12. */
  minPoints?: number;
  /** A shorter time span than this (ms) gives `insufficient-data`. Default 0. */
  minSpanMs?: number;
}

export interface GrowthEstimate {
  /** Theil-Sen slope of the series' lower envelope, in the series unit per hour. */
  slopePerHour: number;
  /**
   * How sure the growth is and sustained, 0..1: the smallest one-sided Mann-Kendall confidence
   * of an upward trend over the whole window and over each of its thirds. 0.5 means no evidence.
   */
  confidence: number;
  /** `growing`: sustained growth (a leak is likely); `stable`: anything else with enough data. */
  verdict: 'growing' | 'stable' | 'insufficient-data';
  /** One line saying why. */
  reason: string;
  points: number;
  spanMs: number;
}

export interface TrendMonitorOptions {
  /** Adds one series per resource kind (`resource.<kind>`), from the tracker's counts. */
  tracker?: ResourceTracker;
  /** Sampling period in ms (unref'd timer); 0 turns the timer off (call `sample()`). Default 30 s. */
  intervalMs?: number;
  /** Sliding window in ms. Default 6 h. */
  windowMs?: number;
  /** No verdict before the window holds this much time (ms). Default 2 h. */
  minSpanMs?: number;
  /** Default 0.95. */
  minConfidence?: number;
  /** Smallest memory growth called a leak (bytes per hour). Default 1 MiB. */
  minBytesPerHour?: number;
  /** Smallest count growth (fds, resources) called a leak (per hour). Default 1. */
  minCountPerHour?: number;
  /**
   * Extra or synthetic series: returns values by series name. Names ending in `.bytes` or
   * starting with `heap.`/`process.rss` are memory series. When given with `builtins: false`,
   * it is the only source.
   */
  source?: () => Record<string, number>;
  /** Sample the built-in series (heap used, RSS, open fds). Default true. */
  builtins?: boolean;
  /** Clock in ms. Default `Date.now`. */
  now?: () => number;
  /** Meter for `trustflow.trend.growth_rate` and `trustflow.trend.confidence`. */
  meter?: Meter;
}

export interface TrendEvent extends GrowthEstimate {
  /** `heap.used`, `process.rss`, `process.fds`, `resource.<kind>`, or a name from `source`. */
  series: string;
  /** Latest value of the series. */
  value: number;
}

export interface TrendMonitor extends Disposable {
  /** Takes a sample now and evaluates every series; returns the estimates by series. */
  sample(): Record<string, GrowthEstimate>;
  /** The latest estimate of every series. */
  estimates(): Record<string, GrowthEstimate>;
  /** Fires when a series starts growing in a sustained way (again after it stopped). */
  on(event: 'trend', listener: (event: TrendEvent) => void): () => void;
  /** Stops the timer and the metrics. Idempotent. */
  stop(): void;
}

/** A process sample from /proc (Linux); fields are null where the platform does not tell. */
export interface ProcessSample {
  pid: number;
  /** `proc` on Linux, `fallback` elsewhere (only RSS and heap). */
  source: 'proc' | 'fallback';
  rssBytes: number;
  vszBytes: number | null;
  threads: number | null;
  heapUsedBytes: number;
  /** Open descriptors by type: file, socket, pipe, anon_inode, device, other; plus total. */
  fds: { total: number; byType: Record<string, number> } | null;
  /** TCP connections of this process in ESTABLISHED state (IPv4 and IPv6), matched by socket inode. */
  tcpEstablished: number | null;
  /** TCP listening sockets of this process. */
  tcpListening: number | null;
}

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
}

/** What `track()` returns. `release()` is idempotent and safe to call from inside a closer. */
export interface ResourceHandle extends Disposable {
  readonly id: number;
  readonly kind: string;
  readonly released: boolean;
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
  /** Clock in ms, for tests. Default `performance.now()` based. */
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
}

/** What a plugin gets when it is enabled. */
export interface PluginContext {
  tracker: ResourceTracker;
  meter: Meter;
  tracer: Tracer;
  diag: DiagLogger;
  /**
   * Replaces `target[key]` with `wrap(original)`. The host restores the original (identity-equal)
   * on disable; if another library wrapped on top of ours meanwhile, ours becomes a pass-through.
   * Builtin module exports are re-synced for ESM named imports.
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
  /** Path fragments (package folders) whose stack frames are instrumentation, not user code. */
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

import type { LeakGroup, ResourceTracker } from '@trustflow/core';

/** A kind or site pattern: a string matches exactly (kinds) or as a substring (sites). */
export type Pattern = string | RegExp;

export interface LeakCheckOptions {
  /**
   * The tracker to watch. Default: the process-wide default tracker shared by Trustflow packages
   * (a buffer pool or `libp2pMetrics()` created without a tracker use it too), with every stack
   * captured, and with timers, sockets, servers, fds, FileHandles, streams and watchers tracked
   * (the async-hooks source plus `fsPlugin()` and `netPlugin()` when installed). Pass your own
   * tracker to check kinds that only your plugins see; create it with `stacks: 'all'` so every
   * leak has its site.
   */
  tracker?: ResourceTracker;
  /** Kinds not to report: exact names (`timer`) or patterns (`/^async\./`). */
  ignoreKinds?: Pattern[];
  /** Sites not to report: substrings of the site (`node_modules/undici/`) or patterns. */
  ignoreSites?: Pattern[];
  /**
   * How long to wait (ms) for resources that are closing asynchronously (a socket destroyed at
   * the end of the function, a timer about to fire) before calling them leaks. Default 1000.
   */
  timeoutMs?: number;
  /**
   * Ignore timers that do not keep the process alive (`unref()`-ed, and those behind
   * `AbortSignal.timeout()`, which libraries create for every call and cannot clear). Default
   * true, as jest's `--detectOpenHandles` and why-is-node-running do.
   */
  ignoreUnrefTimers?: boolean;
  /**
   * Ignore resources created entirely by Node internals or the test runner (no user frame in
   * their creation stack). Default: true for trackers that capture every stack (the default
   * one); false otherwise, since a sampled tracker also has resources without a stack.
   */
  ignoreUnattributed?: boolean;
}

/** Thrown by `expectNoLeaks` (and by the vitest entry after a test). */
export interface LeakErrorDetails {
  /** The leak groups found, largest first. */
  leaks: LeakGroup[];
}

export interface MemoryGrowthOptions {
  /** Calls of `fn` measured, after the warm-up. Default 300. */
  iterations?: number;
  /** Calls of `fn` before measuring (lazy initialisation, JIT). Default a tenth of `iterations`, at least 10. */
  warmup?: number;
  /** Heap readings (each after a full GC) spread over the iterations. Default 15. */
  samples?: number;
  /**
   * Sustained growth below this many bytes per call passes. Default 16. Growth is measured on
   * heap used plus external memory (Buffers) after a full GC, where a clean function reads the
   * same to the byte. Keeping a few dozen bytes per call is near the noise of 300 calls: raise
   * `iterations` to catch that reliably.
   */
  maxBytesPerIteration?: number;
  /** Confidence needed to call growth sustained (see `estimateGrowth`). Default 0.95. */
  minConfidence?: number;
}

export interface MemoryGrowthResult {
  /** Robust (Theil-Sen) growth per call, in bytes, after GC. */
  bytesPerIteration: number;
  /** Confidence that the growth is sustained (0.5: no evidence). */
  confidence: number;
  /** `growing` when the heap grows in a sustained way (whatever the size). */
  verdict: 'growing' | 'stable' | 'insufficient-data';
  /**
   * Heap plus external bytes after a full GC, with the number of calls made so far; each is the
   * lower of its own reading and the next one (a moment's retention by the runner is not growth).
   */
  samples: { iteration: number; bytes: number }[];
  /** One line saying why. */
  reason: string;
}

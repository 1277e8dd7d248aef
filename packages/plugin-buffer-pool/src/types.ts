import type { Meter } from '@opentelemetry/api';
import type { ResourceTracker } from '@trustflow/core';

/** One size class: buffers of `size` bytes, at most `max` of them kept for reuse. */
export interface SizeClassOptions {
  /** Capacity of every buffer of this class, in bytes (a positive integer). */
  size: number;
  /** Buffers of this class kept for reuse when returned; more are dropped. */
  max: number;
}

export interface BufferPoolOptions {
  /** Name, used as the `trustflow.buffer_pool.name` attribute and in error messages. Default `default`. */
  name?: string;
  /**
   * Size classes. `acquire(size)` lends a buffer from the smallest class that fits; a size larger
   * than every class gets a buffer of its own that is never kept. Default: the three pools of the
   * Go node (4 KiB x 100, 32 KiB x 50, 80 KiB x 25).
   */
  classes?: readonly SizeClassOptions[];
  /** Cap on the bytes kept for reuse across all classes. Default: the sum of `size * max`. */
  maxRetainedBytes?: number;
  /**
   * Zero every buffer when it is returned. Default true. `false` is unsafe: the next borrower
   * (possibly other code handling other users' data) sees the previous borrower's bytes.
   */
  zeroOnRelease?: boolean;
  /**
   * Tracker that records every lent buffer (kind `buffer_pool.buffer`), so that a buffer dropped
   * without release is reported `gc-unreleased` with the line that acquired it. Default: the
   * process-wide default tracker shared by Trustflow plugins.
   */
  tracker?: ResourceTracker;
  /** Meter for the pool's metrics. Default: the global meter provider's. */
  meter?: Meter;
}

/**
 * A lent buffer: a real `Buffer` (every Buffer method works, `Buffer.isBuffer` is true) of the
 * requested length, plus `release()`. After release it is detached: its length becomes 0, so a
 * stale reference can neither read the next borrower's data nor write into it.
 */
export interface PooledBuffer extends Buffer<ArrayBuffer> {
  /** Returns the buffer to its pool. Throws (and leaves the pool unchanged) when called twice. */
  release(): void;
  /** True once returned (or detached). */
  readonly released: boolean;
  /** Same as `release()`, for `using buf = pool.acquire(n)`. */
  [Symbol.dispose](): void;
}

/** Figures of one size class. `size` is 0 for buffers larger than every class (never kept). */
export interface SizeClassStats {
  size: number;
  max: number;
  inUse: number;
  available: number;
  hits: number;
  misses: number;
  released: number;
  dropped: number;
  leaked: number;
}

/**
 * Exact counts. At every moment `hits + misses === inUse + released + leaked`, and
 * `retainedBytes` is the sum of the capacities of the `available` buffers.
 */
export interface BufferPoolStats {
  /** Buffers lent and not yet returned (nor collected). */
  inUse: number;
  /** Capacity in bytes of the buffers in use. */
  inUseBytes: number;
  /** Buffers kept and ready for reuse. */
  available: number;
  /** Capacity in bytes of the available buffers. */
  retainedBytes: number;
  /** Acquisitions served from a kept buffer. */
  hits: number;
  /** Acquisitions that had to allocate (including sizes larger than every class). */
  misses: number;
  /** Buffers returned with `release()`. */
  released: number;
  /** Returned buffers not kept (class full, byte cap reached, oversize or pool closed). */
  dropped: number;
  /** Buffers garbage-collected without release (each is also a `gc-unreleased` leak). */
  leaked: number;
  classes: SizeClassStats[];
}

export interface BufferPool {
  readonly name: string;
  /** Lends a zeroed buffer of `size` bytes (a non-negative integer). */
  acquire(size: number): PooledBuffer;
  /**
   * Lends a buffer to `fn` and returns it to the pool when `fn` returns, throws, or (when `fn`
   * returns a promise) settles. Returns what `fn` returns. Do not keep the buffer past `fn`.
   */
  use<R>(size: number, fn: (buffer: PooledBuffer) => R): R;
  /** Returns a buffer lent by this pool; a foreign or already returned buffer throws. */
  release(buffer: Uint8Array): void;
  stats(): BufferPoolStats;
  /**
   * Stops the pool's metrics and drops the kept buffers. Buffers still lent stay usable and can
   * still be released (they are then dropped); `acquire` throws afterwards. Idempotent.
   */
  close(): void;
}

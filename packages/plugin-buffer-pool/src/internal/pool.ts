import type { BatchObservableCallback, Observable } from '@opentelemetry/api';
import {
  type Attributes,
  defaultTracker,
  definePlugin,
  type PluginContext,
  type ResourceTracker,
  type TrackOptions,
  type TrustflowPlugin,
} from '@trustflow/core';
import type {
  BufferPool,
  BufferPoolOptions,
  BufferPoolStats,
  PooledBuffer,
  SizeClassOptions,
  SizeClassStats,
} from '../types.js';
import { BufferPoolError, type Lender, LentBuffer, notLent, type Slot } from './pooled-buffer.js';

export const KIND = 'buffer_pool.buffer';
export const ATTR_POOL = 'trustflow.buffer_pool.name';
export const ATTR_CLASS = 'trustflow.buffer_pool.size_class';
export const ATTR_OUTCOME = 'trustflow.buffer_pool.outcome';

const KIB = 1024;

/** The three pools of the Go node, as one pool with three classes. */
export const DEFAULT_CLASSES: readonly SizeClassOptions[] = Object.freeze([
  Object.freeze({ size: 4 * KIB, max: 100 }),
  Object.freeze({ size: 32 * KIB, max: 50 }),
  Object.freeze({ size: 80 * KIB, max: 25 }),
]);

class SizeClass {
  /** Kept buffers, as views over their whole ArrayBuffer. */
  readonly free: Uint8Array<ArrayBuffer>[] = [];
  inUse = 0;
  hits = 0;
  misses = 0;
  released = 0;
  dropped = 0;
  leaked = 0;
  readonly attributes: Attributes;
  readonly hitAttributes: Attributes;
  readonly missAttributes: Attributes;
  readonly track: TrackOptions<PooledBuffer>;

  constructor(
    readonly size: number,
    readonly max: number,
    pool: string,
  ) {
    this.attributes = Object.freeze({ [ATTR_POOL]: pool, [ATTR_CLASS]: size });
    this.hitAttributes = Object.freeze({ ...this.attributes, [ATTR_OUTCOME]: 'hit' });
    this.missAttributes = Object.freeze({ ...this.attributes, [ATTR_OUTCOME]: 'miss' });
    // No lifetime span per buffer: at pool rates that would be noise (leaks still get reported).
    this.track = { kind: KIND, attributes: this.attributes, span: false };
  }

  stats(): SizeClassStats {
    return {
      size: this.size,
      max: this.max,
      inUse: this.inUse,
      available: this.free.length,
      hits: this.hits,
      misses: this.misses,
      released: this.released,
      dropped: this.dropped,
      leaked: this.leaked,
    };
  }
}

class Pool implements BufferPool, Lender {
  readonly name: string;
  private readonly classes: SizeClass[];
  /** Buffers larger than every class: allocated on demand, never kept. */
  private readonly oversize: SizeClass;
  private readonly maxRetainedBytes: number;
  private readonly zero: boolean;
  private readonly tracker: ResourceTracker;
  private readonly plugin: TrustflowPlugin;
  private readonly collected: FinalizationRegistry<Slot>;
  private retainedBytes = 0;
  /** Capacity of the oversize buffers in use (they have no class size). */
  private oversizeBytes = 0;
  private closed = false;

  constructor(options: BufferPoolOptions) {
    const o = options ?? {};
    if (typeof o !== 'object') fail('options', 'an object', o);
    this.name = o.name === undefined ? 'default' : nonEmptyString(o.name, 'name');
    const specs = o.classes === undefined ? DEFAULT_CLASSES : classList(o.classes);
    this.classes = specs.map((c) => new SizeClass(c.size, c.max, this.name));
    this.oversize = new SizeClass(0, 0, this.name);
    const total = this.classes.reduce((sum, c) => sum + c.size * c.max, 0);
    this.maxRetainedBytes =
      o.maxRetainedBytes === undefined
        ? total
        : nonNegativeInteger(o.maxRetainedBytes, 'maxRetainedBytes');
    if (o.zeroOnRelease !== undefined && typeof o.zeroOnRelease !== 'boolean') {
      fail('zeroOnRelease', 'a boolean', o.zeroOnRelease);
    }
    this.zero = o.zeroOnRelease !== false;
    this.tracker = o.tracker ?? defaultTracker();
    this.collected = new FinalizationRegistry((slot) => {
      const cls = slot.cls as SizeClass;
      cls.inUse--;
      cls.leaked++;
      if (cls === this.oversize) this.oversizeBytes -= slot.bytes;
    });
    this.plugin = definePlugin({
      name: 'plugin-buffer-pool',
      module: import.meta.url,
      setup: (ctx) => this.setupMetrics(ctx),
    });
    this.plugin.enable({ tracker: this.tracker, ...(o.meter ? { meter: o.meter } : {}) });
  }

  acquire(size: number): PooledBuffer {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new TypeError(
        `buffer pool "${this.name}": acquire(size) needs a non-negative integer, got ${describe(size)}`,
      );
    }
    if (this.closed) {
      throw new BufferPoolError('ERR_BUFFER_POOL_CLOSED', `buffer pool "${this.name}" is closed`);
    }
    const cls = this.classFor(size);
    let full = cls.free.pop();
    if (full === undefined) {
      cls.misses++;
      full = new Uint8Array(cls === this.oversize ? size : cls.size);
      if (cls === this.oversize) this.oversizeBytes += size;
    } else {
      cls.hits++;
      this.retainedBytes -= cls.size;
    }
    cls.inUse++;
    const slot: Slot = { cls, full, bytes: full.byteLength, handle: undefined };
    const buffer = new LentBuffer(full, size, this, slot) as LentBuffer & PooledBuffer;
    this.collected.register(buffer, slot, slot);
    slot.handle = this.tracker.track(buffer, cls.track);
    return buffer;
  }

  use<R>(size: number, fn: (buffer: PooledBuffer) => R): R {
    if (typeof fn !== 'function') {
      throw new TypeError(
        `buffer pool "${this.name}": use(size, fn) needs a function, got ${describe(fn)}`,
      );
    }
    const buffer = this.acquire(size);
    let result: R;
    try {
      result = fn(buffer);
    } catch (error) {
      giveBack(buffer);
      throw error;
    }
    if (isThenable(result)) {
      return Promise.resolve(result).finally(() => giveBack(buffer)) as R;
    }
    giveBack(buffer);
    return result;
  }

  release(buffer: Uint8Array): void {
    if (!LentBuffer.isLentBy(buffer, this)) {
      throw notLent(
        buffer instanceof LentBuffer ? 'a buffer from another pool' : 'a buffer',
        this.name,
      );
    }
    buffer.release();
  }

  /** Called once per lent buffer by its `release()`. */
  reclaim(_buffer: LentBuffer, slot: Slot): void {
    const cls = slot.cls as SizeClass;
    this.collected.unregister(slot);
    slot.handle?.release();
    slot.handle = undefined;
    cls.inUse--;
    cls.released++;
    if (cls === this.oversize) this.oversizeBytes -= slot.bytes;
    const full = slot.full;
    const keep =
      !this.closed &&
      cls !== this.oversize &&
      cls.free.length < cls.max &&
      this.retainedBytes + cls.size <= this.maxRetainedBytes;
    let kept: ArrayBuffer | undefined;
    try {
      if (keep) {
        if (this.zero) full.fill(0);
        // Moving the memory to a new ArrayBuffer detaches the old one: every view the borrower
        // may still hold (the buffer itself, its subarrays) now has length 0.
        kept = full.buffer.transfer();
      } else {
        full.buffer.transfer(0);
      }
    } catch {
      // The borrower detached or transferred the memory itself: nothing left to keep.
      kept = undefined;
    }
    if (kept === undefined) {
      cls.dropped++;
      return;
    }
    cls.free.push(new Uint8Array(kept));
    this.retainedBytes += cls.size;
  }

  stats(): BufferPoolStats {
    const classes = [...this.classes, this.oversize].map((c) => c.stats());
    let inUse = 0;
    let inUseBytes = 0;
    let available = 0;
    let hits = 0;
    let misses = 0;
    let released = 0;
    let dropped = 0;
    let leaked = 0;
    for (const c of classes) {
      inUse += c.inUse;
      inUseBytes += c.inUse * c.size;
      available += c.available;
      hits += c.hits;
      misses += c.misses;
      released += c.released;
      dropped += c.dropped;
      leaked += c.leaked;
    }
    // Oversize buffers have no class size (0 above): count their real capacity.
    inUseBytes += this.oversizeBytes;
    return {
      inUse,
      inUseBytes,
      available,
      retainedBytes: this.retainedBytes,
      hits,
      misses,
      released,
      dropped,
      leaked,
      classes,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.plugin.disable();
    for (const cls of this.classes) cls.free.length = 0;
    this.retainedBytes = 0;
  }

  private classFor(size: number): SizeClass {
    for (const cls of this.classes) if (size <= cls.size) return cls;
    return this.oversize;
  }

  private setupMetrics(ctx: PluginContext): void {
    const m = ctx.meter;
    const inUse = m.createObservableUpDownCounter('trustflow.buffer_pool.in_use', {
      unit: '{buffer}',
      description: 'Buffers lent by the pool and not yet returned.',
    });
    const available = m.createObservableUpDownCounter('trustflow.buffer_pool.available', {
      unit: '{buffer}',
      description: 'Buffers kept by the pool, ready for reuse.',
    });
    const retained = m.createObservableUpDownCounter('trustflow.buffer_pool.retained', {
      unit: 'By',
      description: 'Bytes kept by the pool for reuse.',
    });
    const acquired = m.createObservableCounter('trustflow.buffer_pool.acquisitions', {
      unit: '{buffer}',
      description: 'Buffers lent, by outcome: hit (reused) or miss (allocated).',
    });
    const dropped = m.createObservableCounter('trustflow.buffer_pool.dropped', {
      unit: '{buffer}',
      description: 'Returned buffers not kept (class full, byte cap, oversize, pool closed).',
    });
    const leaked = m.createObservableCounter('trustflow.buffer_pool.leaked', {
      unit: '{buffer}',
      description: 'Buffers garbage-collected without being returned.',
    });
    const observables: Observable[] = [inUse, available, retained, acquired, dropped, leaked];
    const callback: BatchObservableCallback = (result) => {
      for (const c of [...this.classes, this.oversize]) {
        result.observe(inUse, c.inUse, c.attributes);
        result.observe(available, c.free.length, c.attributes);
        result.observe(retained, c.free.length * c.size, c.attributes);
        result.observe(acquired, c.hits, c.hitAttributes);
        result.observe(acquired, c.misses, c.missAttributes);
        result.observe(dropped, c.dropped, c.attributes);
        result.observe(leaked, c.leaked, c.attributes);
      }
    };
    m.addBatchObservableCallback(callback, observables);
    ctx.onDisable(() => m.removeBatchObservableCallback(callback, observables));
  }
}

/** Returns a buffer unless its borrower already did. */
function giveBack(buffer: PooledBuffer): void {
  if (!buffer.released) buffer.release();
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

export function createPool(options: BufferPoolOptions): BufferPool {
  return new Pool(options);
}

function classList(value: unknown): SizeClassOptions[] {
  if (!Array.isArray(value) || value.length === 0) {
    fail('classes', 'a non-empty array of { size, max }', value);
  }
  const list = value.map((c: unknown, i): SizeClassOptions => {
    if (typeof c !== 'object' || c === null) fail(`classes[${i}]`, 'an object { size, max }', c);
    const { size, max } = c as Partial<SizeClassOptions>;
    if (!Number.isSafeInteger(size) || (size as number) <= 0) {
      fail(`classes[${i}].size`, 'a positive integer', size);
    }
    return { size: size as number, max: nonNegativeInteger(max, `classes[${i}].max`) };
  });
  list.sort((a, b) => a.size - b.size);
  for (let i = 1; i < list.length; i++) {
    if (list[i]!.size === list[i - 1]!.size) {
      fail('classes', 'distinct sizes', `two classes of ${list[i]!.size} bytes`);
    }
  }
  return list;
}

function nonNegativeInteger(value: unknown, option: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    fail(option, 'a non-negative integer', value);
  }
  return value as number;
}

function nonEmptyString(value: unknown, option: string): string {
  if (typeof value !== 'string' || value === '') fail(option, 'a non-empty string', value);
  return value as string;
}

function fail(option: string, expected: string, got: unknown): never {
  throw new TypeError(
    `createBufferPool: option ${option} must be ${expected}, got ${describe(got)}`,
  );
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object' && value !== null) return 'an object';
  return String(value);
}

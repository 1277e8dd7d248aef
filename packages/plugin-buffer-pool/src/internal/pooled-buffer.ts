import type { ResourceHandle } from '@trustflow/core';

/**
 * A Uint8Array whose prototype chain runs through `Buffer.prototype`, which is exactly what Node's
 * own Buffers are. Views derived from a lent buffer (`subarray`, `map`, ...) are created through
 * `Symbol.species` as BufferViews: real Buffers without `release()`.
 */
class BufferView extends Uint8Array {}
Object.setPrototypeOf(BufferView.prototype, Buffer.prototype);

/** What a lent buffer needs from its pool. */
export interface Lender {
  readonly name: string;
  reclaim(buffer: LentBuffer, slot: Slot): void;
}

/** Bookkeeping of one lent buffer, kept off the buffer's public surface. */
export interface Slot {
  /** The size class record (opaque here). */
  readonly cls: unknown;
  /** A view over the whole backing ArrayBuffer (the class capacity). */
  readonly full: Uint8Array<ArrayBuffer>;
  /** Capacity in bytes (the class size, or the requested size for oversize buffers). */
  readonly bytes: number;
  handle: ResourceHandle | undefined;
}

export class BufferPoolError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'BufferPoolError';
    this.code = code;
  }
}

export class LentBuffer extends BufferView {
  static get [Symbol.species](): typeof BufferView {
    return BufferView;
  }

  readonly #lender: Lender;
  #slot: Slot | undefined;

  /** Only the pool constructs these (derived views are BufferViews, see species). */
  constructor(full: Uint8Array<ArrayBuffer>, length: number, lender: Lender, slot: Slot) {
    super(full.buffer, 0, length);
    this.#lender = lender;
    this.#slot = slot;
  }

  get released(): boolean {
    return this.#slot === undefined;
  }

  release(): void {
    const lender = this.#lender;
    const slot = this.#slot;
    if (slot === undefined) {
      throw new BufferPoolError(
        'ERR_BUFFER_POOL_DOUBLE_RELEASE',
        `buffer pool "${lender.name}": buffer released twice; the pool is unchanged`,
      );
    }
    this.#slot = undefined;
    lender.reclaim(this, slot);
  }

  [Symbol.dispose](): void {
    this.release();
  }

  /** True when `value` is a buffer lent by `lender` (released or not). */
  static isLentBy(value: unknown, lender: Lender): value is LentBuffer {
    return typeof value === 'object' && value !== null && #lender in value
      ? (value as LentBuffer).#lender === lender
      : false;
  }
}

// Shown by util.inspect and in stack traces: `<PooledBuffer 00 00 ...>`.
Object.defineProperty(LentBuffer, 'name', { value: 'PooledBuffer' });

export function notLent(what: string, pool?: string): BufferPoolError {
  const name = pool === undefined ? 'buffer pool' : `buffer pool "${pool}"`;
  return new BufferPoolError(
    'ERR_BUFFER_POOL_FOREIGN_RELEASE',
    `${name}: ${what} that this pool did not lend cannot be released to it; the pool is unchanged`,
  );
}

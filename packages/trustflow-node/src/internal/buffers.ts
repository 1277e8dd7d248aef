import type { BufferPool } from '@trustflow/plugin-buffer-pool';

/** A buffer lent for one chunk; `release()` gives it back (idempotent). */
export interface Lease {
  readonly buffer: Uint8Array;
  release(): void;
}

export interface ChunkBuffers {
  acquire(size: number): Lease;
  /** Buffers lent and not yet returned. */
  readonly outstanding: number;
}

/** Stand-in used until a pool is given: plain allocations, same lease contract. */
export function plainBuffers(): ChunkBuffers {
  let outstanding = 0;
  return {
    get outstanding() {
      return outstanding;
    },
    acquire(size) {
      outstanding++;
      let released = false;
      return {
        buffer: new Uint8Array(size),
        release() {
          if (released) return;
          released = true;
          outstanding--;
        },
      };
    },
  };
}

/** Leases from a `@trustflow/plugin-buffer-pool` pool (zeroed on return, leaks reported). */
export function poolBuffers(pool: BufferPool): ChunkBuffers {
  return {
    get outstanding() {
      return pool.stats().inUse;
    },
    acquire(size) {
      const buffer = pool.acquire(size);
      return {
        buffer,
        release() {
          if (!buffer.released) buffer.release();
        },
      };
    },
  };
}

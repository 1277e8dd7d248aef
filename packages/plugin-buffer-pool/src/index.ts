import { createPool } from './internal/pool.js';
import type { BufferPool, BufferPoolOptions } from './types.js';

export { BufferPoolError } from './internal/pooled-buffer.js';
export type {
  BufferPool,
  BufferPoolOptions,
  BufferPoolStats,
  PooledBuffer,
  SizeClassOptions,
  SizeClassStats,
} from './types.js';

const KIB = 1024;

/**
 * The buffer pools of the Go node this project descends from, one preset each:
 * `createBufferPool(bufferPoolPresets.streamChunks)`. Without `classes`, `createBufferPool()`
 * makes one pool with all three classes.
 */
export const bufferPoolPresets = Object.freeze({
  /** 80 KiB x 25: chunks of stream payloads. */
  streamChunks: Object.freeze({
    name: 'stream-chunks',
    classes: Object.freeze([Object.freeze({ size: 80 * KIB, max: 25 })]),
  }),
  /** 32 KiB x 50: file transfers. */
  files: Object.freeze({
    name: 'files',
    classes: Object.freeze([Object.freeze({ size: 32 * KIB, max: 50 })]),
  }),
  /** 4 KiB x 100: small messages and headers. */
  small: Object.freeze({
    name: 'small',
    classes: Object.freeze([Object.freeze({ size: 4 * KIB, max: 100 })]),
  }),
}) satisfies Record<string, BufferPoolOptions>;

/**
 * Creates a size-class buffer pool that zeroes returned buffers, caps the bytes it keeps, keeps
 * exact counts, and reports (through the tracker) every buffer dropped without being returned.
 * Bad options throw a TypeError naming the option.
 */
export function createBufferPool(options: BufferPoolOptions = {}): BufferPool {
  return createPool(options);
}

import type { Stream } from '@libp2p/interface';
import { ProtocolError } from './protocol.js';

/** Anything the read side can raise, mapped to a stream end reason. */
export function asProtocolError(error: unknown, fallback: string): ProtocolError {
  if (error instanceof ProtocolError) return error;
  const name = (error as { name?: string } | undefined)?.name ?? '';
  const message = (error as { message?: string } | undefined)?.message ?? String(error);
  if (
    name === 'StreamResetError' ||
    name === 'StreamClosedError' ||
    name === 'ConnectionClosedError'
  ) {
    return new ProtocolError('peer-disconnected', `${fallback}: ${message}`);
  }
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new ProtocolError('deadline', `${fallback}: ${message}`);
  }
  return new ProtocolError('handler-error', `${fallback}: ${message}`);
}

export interface ReadLimits {
  /** A read that waits this long for a byte ends the stream as `stalled`. */
  idleMs: number;
  /** Aborted when the whole exchange's deadline passes. */
  signal?: AbortSignal;
}

/**
 * Reads a libp2p stream as bytes with backpressure: past `highWater` buffered bytes it pauses
 * the stream (yamux stops granting window to the sender) and resumes once the reader caught up.
 * Every wait is bounded by the idle limit and the deadline, so a stalled sender cannot hold a
 * worker forever. `dispose()` removes every listener.
 */
export class StreamReader {
  private readonly parts: Uint8Array[] = [];
  private head = 0;
  private buffered = 0;
  private ended: boolean;
  private failure: ProtocolError | undefined;
  private wake: (() => void) | undefined;
  private paused = false;
  /** The sender closed its write side on purpose (a FIN), as opposed to the connection dying. */
  private finished: boolean;
  /** Total payload bytes taken out of the reader. */
  consumed = 0;

  constructor(
    private readonly stream: Stream,
    private readonly limits: ReadLimits,
    private readonly highWater = 1024 * 1024,
  ) {
    this.ended = stream.readableEnded;
    this.finished = stream.remoteWriteStatus === 'closed' && stream.status === 'open';
    stream.addEventListener('message', this.onMessage);
    stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite);
    stream.addEventListener('end', this.onEnd);
    stream.addEventListener('close', this.onClose);
    if (stream.status !== 'open' && stream.status !== 'closing' && !this.ended) {
      this.failure = new ProtocolError('peer-disconnected', `stream is ${stream.status}`);
    }
  }

  private readonly onMessage = (evt: { data: Uint8Array | Iterable<Uint8Array> }): void => {
    const data = evt.data;
    if (data instanceof Uint8Array) {
      this.append(data);
    } else {
      for (const part of data) this.append(part);
    }
    if (this.buffered > this.highWater && !this.paused && this.stream.readStatus === 'readable') {
      this.paused = true;
      this.stream.pause();
    }
    this.notify();
  };

  private append(part: Uint8Array): void {
    if (part.byteLength === 0) return;
    this.parts.push(part);
    this.buffered += part.byteLength;
  }

  private readonly onRemoteCloseWrite = (): void => {
    this.finished = true;
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.lostUnlessFinished();
    this.notify();
  };

  /** The read side ended without the sender's close-write: the connection went away. */
  private lostUnlessFinished(): void {
    if (!this.finished && this.failure === undefined) {
      this.failure = new ProtocolError(
        'peer-disconnected',
        'connection lost before the sender finished',
      );
    }
  }

  private readonly onClose = (evt: Event & { error?: Error; local?: boolean }): void => {
    if (evt.error !== undefined && this.failure === undefined) {
      this.failure =
        evt.error instanceof ProtocolError
          ? evt.error
          : new ProtocolError(
              'peer-disconnected',
              evt.local ? `stream aborted: ${evt.error.message}` : 'peer reset the stream',
            );
    }
    this.ended = true;
    this.lostUnlessFinished();
    this.notify();
  };

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private maybeResume(): void {
    if (this.paused && this.buffered <= this.highWater / 2) {
      this.paused = false;
      if (this.stream.readStatus === 'paused') this.stream.resume();
    }
  }

  /** Waits for more data, the end, or a failure; throws on stall or deadline. */
  private waitForData(what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const signal = this.limits.signal;
      const finish = (error?: ProtocolError) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.wake = undefined;
        if (error) reject(error);
        else resolve();
      };
      const onAbort = () =>
        finish(
          signal?.reason instanceof ProtocolError
            ? signal.reason
            : new ProtocolError('deadline', `deadline passed while reading ${what}`),
        );
      const timer = setTimeout(
        () =>
          finish(
            new ProtocolError(
              'stalled',
              `no data for ${this.limits.idleMs} ms while reading ${what}`,
            ),
          ),
        this.limits.idleMs,
      );
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.wake = () => finish();
    });
  }

  private take(target: Uint8Array, offset: number, wanted: number): number {
    let copied = 0;
    while (copied < wanted && this.parts.length > 0) {
      const part = this.parts[0]!;
      const available = part.byteLength - this.head;
      const n = Math.min(available, wanted - copied);
      target.set(part.subarray(this.head, this.head + n), offset + copied);
      copied += n;
      this.head += n;
      if (this.head === part.byteLength) {
        this.parts.shift();
        this.head = 0;
      }
    }
    this.buffered -= copied;
    this.consumed += copied;
    this.maybeResume();
    return copied;
  }

  /**
   * Fills `target[0, length)` exactly. At the end of the stream before that, throws a
   * ProtocolError with `eofReason` (a truncated header or payload).
   */
  async readExact(
    target: Uint8Array,
    length: number,
    what: string,
    eofReason: 'truncated-header' | 'truncated-payload',
  ): Promise<Uint8Array> {
    let filled = 0;
    while (filled < length) {
      filled += this.take(target, filled, length - filled);
      if (filled === length) break;
      if (this.failure) throw this.failure;
      if (this.ended) {
        throw new ProtocolError(
          eofReason,
          `stream ended after ${filled} of ${length} bytes of ${what}`,
        );
      }
      await this.waitForData(what);
    }
    return target.subarray(0, length);
  }

  /**
   * The next bytes available (at most `max`), as a view that stays valid, or null at the end.
   */
  async readSome(max: number, what: string): Promise<Uint8Array | null> {
    while (this.buffered === 0) {
      if (this.failure) throw this.failure;
      if (this.ended) return null;
      await this.waitForData(what);
    }
    const part = this.parts[0]!;
    const n = Math.min(part.byteLength - this.head, max);
    const view = part.subarray(this.head, this.head + n);
    this.head += n;
    if (this.head === part.byteLength) {
      this.parts.shift();
      this.head = 0;
    }
    this.buffered -= n;
    this.consumed += n;
    this.maybeResume();
    return view;
  }

  /** True once the sender closed its write side and everything was read. */
  get done(): boolean {
    return this.ended && this.buffered === 0;
  }

  dispose(): void {
    this.stream.removeEventListener('message', this.onMessage as never);
    this.stream.removeEventListener('end', this.onEnd);
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite);
    this.stream.removeEventListener('close', this.onClose as never);
    this.parts.length = 0;
    this.buffered = 0;
    this.failure ??= new ProtocolError('shutdown', 'reader disposed');
    this.notify();
  }
}

/** Sends with backpressure: waits for `drain` when the muxer's buffer is full. */
export async function send(stream: Stream, data: Uint8Array, signal?: AbortSignal): Promise<void> {
  if (!stream.send(data)) {
    await stream.onDrain(signal ? { signal } : undefined);
  }
}

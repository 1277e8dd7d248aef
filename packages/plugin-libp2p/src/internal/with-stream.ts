import type { ClosableStream, WithStreamOptions } from '../types.js';

/**
 * Runs `fn(stream, signal)` and ends the stream exactly once: `close()` when fn succeeds,
 * `abort()` when fn throws, the deadline passes or the caller's signal aborts. A close that
 * fails (or is cut short by the deadline or signal) is followed by an abort so that the stream
 * never stays half-open.
 */
export async function withStream<S extends ClosableStream, R>(
  stream: S,
  fn: (stream: S, signal: AbortSignal) => R | PromiseLike<R>,
  options: WithStreamOptions = {},
): Promise<R> {
  if (
    typeof stream !== 'object' ||
    stream === null ||
    typeof stream.close !== 'function' ||
    typeof stream.abort !== 'function'
  ) {
    throw new TypeError('withStream: stream must be a libp2p stream (with close() and abort())');
  }
  if (typeof fn !== 'function') {
    throw new TypeError(`withStream: fn must be a function, got ${typeof fn}`);
  }
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('withStream: options must be an object');
  }
  const { signal: parent, timeoutMs } = options;
  if (parent !== undefined && !(parent instanceof AbortSignal)) {
    throw new TypeError('withStream: option signal must be an AbortSignal');
  }
  if (
    timeoutMs !== undefined &&
    (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0)
  ) {
    throw new TypeError(
      `withStream: option timeoutMs must be a positive number of ms, got ${String(timeoutMs)}`,
    );
  }

  let ended = false;
  const abortStream = (reason: unknown): void => {
    if (ended) return;
    ended = true;
    try {
      stream.abort(asError(reason));
    } catch {
      // a stream that cannot even be aborted is already gone
    }
  };

  if (parent?.aborted) {
    abortStream(parent.reason);
    throw parent.reason;
  }

  const controller = new AbortController();
  let cancel: (reason: unknown) => void = () => {};
  const cancelled = new Promise<never>((_, reject) => {
    cancel = reject;
  });
  // The race below handles it; this keeps an early cancel from counting as unhandled.
  cancelled.catch(() => {});
  const trip = (reason: unknown): void => {
    if (controller.signal.aborted) return;
    controller.abort(reason);
    cancel(reason);
    // end the stream now: fn may be blocked on it, and must not get to close it cleanly
    abortStream(reason);
  };
  const onParentAbort = (): void => trip(parent?.reason);
  parent?.addEventListener('abort', onParentAbort, { once: true });
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(
          () =>
            trip(new DOMException(`withStream: timed out after ${timeoutMs} ms`, 'TimeoutError')),
          timeoutMs,
        );

  try {
    let work: Promise<R>;
    try {
      work = Promise.resolve(fn(stream, controller.signal));
    } catch (error) {
      work = Promise.reject(error);
    }
    let result: R;
    try {
      result = await Promise.race([work, cancelled]);
    } catch (error) {
      const reason = controller.signal.aborted ? controller.signal.reason : error;
      abortStream(reason);
      throw reason;
    }
    if (ended) throw controller.signal.reason;
    ended = true;
    try {
      await Promise.race([stream.close({ signal: controller.signal }), cancelled]);
    } catch (error) {
      const reason = controller.signal.aborted ? controller.signal.reason : error;
      ended = false;
      abortStream(reason);
      throw reason;
    }
    return result;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    parent?.removeEventListener('abort', onParentAbort);
  }
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

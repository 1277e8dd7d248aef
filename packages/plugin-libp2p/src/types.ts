import type { Libp2pEvents, TypedEventTarget } from '@libp2p/interface';
import type { Meter, Tracer } from '@opentelemetry/api';
import type { ResourceTracker } from '@trustflow/core';

export interface Libp2pMetricsInit {
  /**
   * Tracker that records connections (`libp2p.connection`) and protocol streams
   * (`libp2p.stream`). Default: the process-wide default tracker shared by Trustflow plugins.
   */
  tracker?: ResourceTracker;
  /**
   * Meter for the byte counters and for every metric libp2p registers itself. Default: the global
   * meter provider's `@trustflow/plugin-libp2p` meter.
   */
  meter?: Meter;
  /** Tracer for the spans of `traceFunction` / `createTrace`. Default: the global tracer provider's. */
  tracer?: Tracer;
  /**
   * Distinct protocol ids used as metric attributes; streams of further protocols are counted
   * under `other`. Default 100.
   */
  maxProtocols?: number;
  /** Distinct keys per metric group registered by libp2p; further keys go to `other`. Default 100. */
  maxGroupKeys?: number;
}

/**
 * What the metrics factory needs from libp2p's components (libp2p passes all of them). The
 * registrar is used when present to learn where each protocol handler was registered.
 */
export interface Libp2pMetricsComponents {
  events: TypedEventTarget<Libp2pEvents>;
}

export interface WithStreamOptions {
  /** Aborting this signal aborts the stream and rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Deadline in ms for `fn` and the closing of the stream together; when it passes, the stream
   * is aborted and the call rejects with a `TimeoutError` DOMException.
   */
  timeoutMs?: number;
}

/** The part of a libp2p stream `withStream` uses (every libp2p `Stream` has it). */
export interface ClosableStream {
  close(options?: { signal?: AbortSignal }): Promise<void>;
  abort(error: Error): void;
}

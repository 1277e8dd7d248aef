import type { Attributes, ResourceHandle } from '@trustflow/core';

/**
 * Byte counting on libp2p message streams (protocol streams and the raw multiaddr connections),
 * without listeners and without touching the data: the stream's own `onData` (called by the
 * muxer or transport with bytes that arrived) and `sendData` (called by the stream with bytes it
 * hands to the muxer or socket) are wrapped on the instance. Both are synchronous pass-throughs
 * that return what the original returns, so flow, ordering and back-pressure are unchanged.
 *
 * A `message` listener is never added: in libp2p 3 a stream only starts delivering data once it
 * has one, so a metrics listener would consume data before the protocol handler attaches.
 */

export const ATTR_IO_DIRECTION = 'network.io.direction';

export const kIo: unique symbol = Symbol('trustflow.libp2p.io');

/** Totals of one protocol (streams) or one transport (connections). */
export class IoTotals {
  sent = 0;
  received = 0;
  readonly transmit: Attributes;
  readonly receive: Attributes;
  /** `key` is the protocol id (or transport name), the value of attribute `attribute`. */
  constructor(
    readonly key: string,
    attribute: string,
  ) {
    this.transmit = Object.freeze({ [attribute]: key, [ATTR_IO_DIRECTION]: 'transmit' });
    this.receive = Object.freeze({ [attribute]: key, [ATTR_IO_DIRECTION]: 'receive' });
  }
}

interface Owner {
  readonly active: boolean;
  reportError(where: string, error: unknown): void;
}

type OnData = (data: { byteLength: number }) => unknown;
type SendData = (data: unknown) => { sentBytes: number };

/** Per-stream state, reachable from the stream only (the tracker never holds it). */
export class Io {
  sent = 0;
  received = 0;
  onData: OnData | undefined;
  sendData: SendData | undefined;
  constructor(
    readonly handle: ResourceHandle,
    readonly totals: IoTotals,
    readonly owner: Owner,
  ) {}
}

export interface Counted {
  [kIo]?: Io;
  onData?: unknown;
  sendData?: unknown;
  readBufferLength?: number;
  addEventListener(type: 'close', listener: (event: Event) => void): void;
}

/** Attaches `io` to `target` and, where the stream has them, counts its onData/sendData. */
export function attachIo(target: Counted, io: Io): void {
  target[kIo] = io;
  // bytes that arrived before the stream was handed to us (read ahead during negotiation)
  const buffered = typeof target.readBufferLength === 'number' ? target.readBufferLength : 0;
  io.received += buffered;
  io.totals.received += buffered;
  if (typeof target.onData === 'function' && typeof target.sendData === 'function') {
    io.onData = target.onData as OnData;
    io.sendData = target.sendData as SendData;
    target.onData = countedOnData;
    target.sendData = countedSendData;
  }
  target.addEventListener('close', onClosed);
}

function countedOnData(this: Counted, data: { byteLength: number }): unknown {
  const io = this[kIo];
  if (io?.onData === undefined) return inherited<OnData>(this, 'onData').call(this, data);
  const n = data?.byteLength;
  if (io.owner.active && typeof n === 'number') {
    io.received += n;
    io.totals.received += n;
  }
  return io.onData.call(this, data);
}

function countedSendData(this: Counted, data: unknown): { sentBytes: number } {
  const io = this[kIo];
  if (io?.sendData === undefined) return inherited<SendData>(this, 'sendData').call(this, data);
  const result = io.sendData.call(this, data);
  const n = result?.sentBytes;
  if (io.owner.active && typeof n === 'number') {
    io.sent += n;
    io.totals.sent += n;
  }
  return result;
}

/** The prototype's method, for a call on an object that has our wrapper but no state (never expected). */
function inherited<F>(target: object, key: 'onData' | 'sendData'): F {
  return Reflect.get(Object.getPrototypeOf(target), key, target) as F;
}

/** The one 'close' listener of every tracked stream and connection (no closure per stream). */
function onClosed(event: Event): void {
  const target = (event.currentTarget ?? event.target) as Counted | null;
  const io = target?.[kIo];
  if (io === undefined) return;
  try {
    const { error, local } = event as Event & { error?: Error; local?: boolean };
    const handle = io.handle;
    if (!handle.recording) {
      // no span to show the figures on: skip building them
      handle.release(error ? { error } : undefined);
      return;
    }
    handle.release({
      details: {
        'libp2p.bytes_sent': io.sent,
        'libp2p.bytes_received': io.received,
        ...(typeof local === 'boolean' ? { 'libp2p.close.local': local } : {}),
      },
      ...(error ? { error } : {}),
    });
  } catch (error) {
    io.owner.reportError('close listener', error);
  }
}

/** Activity probe for the stale scan: changes whenever bytes flow. */
export function ioActivity(target: Counted): number {
  const io = target[kIo];
  return io === undefined ? 0 : io.sent + io.received;
}

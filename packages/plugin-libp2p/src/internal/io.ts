import type { Attributes, ResourceHandle } from '@trustflow/core';

/**
 * Byte counting and close detection on libp2p message streams (protocol streams and the raw
 * multiaddr connections), without listeners and without touching the data.
 *
 * libp2p calls three methods of a stream that tell us everything: `onData` (the muxer or
 * transport hands it bytes that arrived), `sendData` (the stream hands bytes to the muxer or
 * socket) and `dispatchEvent` (its 'close' event). They are wrapped once per stream class, on the
 * class's prototype, and the wrappers find the stream's counters in a WeakMap. Nothing is added
 * to the stream objects themselves: an own property on every tracked stream would give it a new
 * hidden class, and the muxer's hot functions, shared by every stream and connection class, would
 * turn megamorphic (measured: libp2p's own processSendQueue took 3x as long). Streams that nobody
 * tracks (of a node without our metrics, or before protocol negotiation) go through the same
 * wrappers as plain pass-throughs.
 *
 * Every wrapper is a synchronous pass-through returning what the original returns, so flow,
 * ordering and back-pressure are unchanged. A `message` listener is never added: in libp2p 3 a
 * stream only starts delivering data once it has one, so a metrics listener would consume data
 * before the protocol handler attaches.
 *
 * The prototypes stay wrapped while any metrics instance is enabled (`retainIo()`); when the last
 * one is disabled, every original is put back (identity-equal; an inherited method is inherited
 * again).
 */

export const ATTR_IO_DIRECTION = 'network.io.direction';

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

type OnData = (this: object, data: { byteLength: number }) => unknown;
type SendData = (this: object, data: unknown) => { sentBytes: number };
type DispatchEvent = (this: object, event: Event) => boolean;

/** Per-stream state, reachable from the stream only (the tracker never holds it). */
export class Io {
  sent = 0;
  received = 0;
  /**
   * The stream's own onData/sendData, for a stream whose class could not be wrapped (then the
   * class's wrappers, which its own methods may still call, leave the counting to these).
   */
  onData: OnData | undefined;
  sendData: SendData | undefined;
  perInstance = false;
  constructor(
    readonly handle: ResourceHandle,
    readonly totals: IoTotals,
    readonly owner: Owner,
  ) {}
}

export interface Counted {
  onData?: unknown;
  sendData?: unknown;
  dispatchEvent?: unknown;
  readBufferLength?: number;
  addEventListener(type: 'close', listener: (event: Event) => void): void;
}

/** Counters of every tracked stream and connection, by the object itself. */
const states = new WeakMap<object, Io>();

export function isCounted(target: object): boolean {
  return states.has(target);
}

// --- prototype wrappers, shared by every metrics instance of this module ---

interface ProtoPatch {
  proto: Record<string, unknown>;
  key: 'onData' | 'sendData' | 'dispatchEvent';
  own: boolean;
  original: unknown;
  wrapped: unknown;
}

const patches: ProtoPatch[] = [];
/** Prototypes whose methods are wrapped now (true) or cannot be (false). */
let hooked = new WeakMap<object, boolean>();
/** The prototype wrapped last (most streams are of one class): skips the WeakMap lookup. */
let lastHooked: object | undefined;
let users = 0;

/**
 * Keeps the prototype wrappers installed until the returned function is called (once per enabled
 * metrics instance); the last release restores every original.
 */
export function retainIo(): () => void {
  users++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    users--;
    if (users === 0) unhookAll();
  };
}

function unhookAll(): void {
  for (const p of patches.reverse()) restore(p);
  patches.length = 0;
  hooked = new WeakMap();
  lastHooked = undefined;
}

function restore(p: ProtoPatch): void {
  // someone wrapped on top of us: leave theirs (ours is a pass-through for untracked streams)
  if (!Object.hasOwn(p.proto, p.key) || p.proto[p.key] !== p.wrapped) return;
  if (p.own) p.proto[p.key] = p.original;
  else delete p.proto[p.key];
}

/**
 * Wraps the methods of `target`'s class once. False when they cannot be wrapped there: the object
 * has its own onData/sendData/dispatchEvent (set per instance), or lacks them.
 */
function hookClass(target: Counted): boolean {
  const proto = Object.getPrototypeOf(target) as Record<string, unknown> | null;
  if (proto === null || users === 0) return false;
  if (proto === lastHooked) return inheritsMethods(target, proto);
  const known = hooked.get(proto);
  if (known !== undefined) {
    if (known) lastHooked = proto;
    return known && inheritsMethods(target, proto);
  }
  const usable =
    typeof proto.onData === 'function' &&
    typeof proto.sendData === 'function' &&
    typeof proto.dispatchEvent === 'function' &&
    !Object.isFrozen(proto);
  if (!usable) {
    hooked.set(proto, false);
    return false;
  }
  const done = patches.length;
  try {
    wrap(proto, 'onData', wrapOnData);
    wrap(proto, 'sendData', wrapSendData);
    wrap(proto, 'dispatchEvent', wrapDispatchEvent);
  } catch {
    // a read-only method: put back what was wrapped and count this class's streams one by one
    for (const p of patches.splice(done).reverse()) restore(p);
    hooked.set(proto, false);
    return false;
  }
  hooked.set(proto, true);
  lastHooked = proto;
  return inheritsMethods(target, proto);
}

/** False when the object has methods of its own (wrapped per instance by someone). */
function inheritsMethods(target: Counted, proto: Record<string, unknown>): boolean {
  return (
    target.onData === proto.onData &&
    target.sendData === proto.sendData &&
    target.dispatchEvent === proto.dispatchEvent
  );
}

function wrap<F>(
  proto: Record<string, unknown>,
  key: ProtoPatch['key'],
  make: (original: F) => F,
): void {
  const original = proto[key] as F;
  const wrapped = make(original);
  copyIdentity(original as Function, wrapped as Function);
  const own = Object.hasOwn(proto, key);
  proto[key] = wrapped;
  patches.push({ proto, key, own, original, wrapped });
}

function wrapOnData(original: OnData): OnData {
  return function onData(this: object, data) {
    const io = states.get(this);
    if (io !== undefined && !io.perInstance) countReceived(io, data);
    return original.call(this, data);
  };
}

function wrapSendData(original: SendData): SendData {
  return function sendData(this: object, data) {
    const result = original.call(this, data);
    const io = states.get(this);
    if (io !== undefined && !io.perInstance) countSent(io, result);
    return result;
  };
}

function wrapDispatchEvent(original: DispatchEvent): DispatchEvent {
  return function dispatchEvent(this: object, event) {
    const result = original.call(this, event);
    if (event?.type === 'close') {
      const io = states.get(this);
      if (io !== undefined) closed(io, event);
    }
    return result;
  };
}

function countReceived(io: Io, data: { byteLength: number }): void {
  const n = data?.byteLength;
  if (typeof n === 'number' && io.owner.active) {
    io.received += n;
    io.totals.received += n;
  }
}

function countSent(io: Io, result: { sentBytes: number }): void {
  const n = result?.sentBytes;
  if (typeof n === 'number' && io.owner.active) {
    io.sent += n;
    io.totals.sent += n;
  }
}

function copyIdentity(original: Function, wrapper: Function): void {
  try {
    Object.defineProperty(wrapper, 'name', { value: original.name, configurable: true });
    Object.defineProperty(wrapper, 'length', { value: original.length, configurable: true });
  } catch {
    // cosmetic only
  }
}

// --- attaching a stream ---

/** Starts counting `target`'s bytes into `io`, and releases `io.handle` on its 'close' event. */
export function attachIo(target: Counted, io: Io): void {
  states.set(target, io);
  // bytes that arrived before the stream was handed to us (read ahead during negotiation)
  const buffered = typeof target.readBufferLength === 'number' ? target.readBufferLength : 0;
  io.received += buffered;
  io.totals.received += buffered;
  if (hookClass(target)) return;
  // A class we cannot wrap, or an instance with methods of its own: wrap this instance's methods
  // and listen for its 'close'.
  io.perInstance = true;
  // the close listener first: whatever happens below, the stream is released when it closes
  target.addEventListener('close', onCloseEvent);
  if (typeof target.onData === 'function' && typeof target.sendData === 'function') {
    const onData = target.onData as OnData;
    const sendData = target.sendData as SendData;
    try {
      target.onData = instanceOnData;
      target.sendData = instanceSendData;
    } catch (error) {
      // read-only methods: no byte counts for this stream
      if (target.onData === instanceOnData) target.onData = onData;
      io.owner.reportError('byte counting', error);
      return;
    }
    io.onData = onData;
    io.sendData = sendData;
  }
}

function instanceOnData(this: Counted, data: { byteLength: number }): unknown {
  const io = states.get(this);
  if (io?.onData === undefined) return inherited<OnData>(this, 'onData').call(this, data);
  countReceived(io, data);
  return io.onData.call(this, data);
}

function instanceSendData(this: Counted, data: unknown): { sentBytes: number } {
  const io = states.get(this);
  if (io?.sendData === undefined) return inherited<SendData>(this, 'sendData').call(this, data);
  const result = io.sendData.call(this, data);
  countSent(io, result);
  return result;
}

/** The prototype's method, for a call on an object that has our wrapper but no state (never expected). */
function inherited<F>(target: object, key: 'onData' | 'sendData'): F {
  return Reflect.get(Object.getPrototypeOf(target), key, target) as F;
}

/** The one 'close' listener of streams whose class is not wrapped (no closure per stream). */
function onCloseEvent(event: Event): void {
  const target = (event.currentTarget ?? event.target) as object | null;
  const io = target === null ? undefined : states.get(target);
  if (io !== undefined) closed(io, event);
}

function closed(io: Io, event: Event): void {
  try {
    const handle = io.handle;
    if (handle.released) return;
    const { error, local } = event as Event & { error?: Error; local?: boolean };
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
export function ioActivity(target: object): number {
  const io = states.get(target);
  return io === undefined ? 0 : io.sent + io.received;
}

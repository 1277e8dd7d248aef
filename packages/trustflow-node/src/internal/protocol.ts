/**
 * The `/trustflow-network/1.0.0` wire format.
 *
 * A sender opens a stream and writes a fixed 536-byte header (big-endian):
 *
 * | offset | size | field                                   |
 * |-------:|-----:|-----------------------------------------|
 * |      0 |    2 | message type (uint16)                   |
 * |      2 |  255 | peer id (UTF-8, zero padded)            |
 * |    257 |  255 | ordering peer id (UTF-8, zero padded)   |
 * |    512 |    8 | workflow id (int64)                     |
 * |    520 |    8 | job id (int64)                          |
 * |    528 |    8 | interface id (int64)                    |
 *
 * The receiver answers `TFREADY` (7 bytes) when it accepts the type, then reads the payload:
 * uint64 length-prefixed chunks ended by a zero length, or, for a file (type 3), raw bytes until
 * the sender closes its write side.
 */

export const PROTOCOL = '/trustflow-network/1.0.0';
export const LOOKUP_TOPIC = 'trustflow.network.lookup.service';

export const READY = new TextEncoder().encode('TFREADY');
export const ID_FIELD_SIZE = 255;
export const HEADER_SIZE = 2 + ID_FIELD_SIZE * 2 + 8 * 3;
export const CHUNK_LENGTH_SIZE = 8;
/** Largest chunk a receiver accepts (10 MiB). */
export const MAX_CHUNK_BYTES = 10 * 1024 * 1024;
/** Largest chunked payload a receiver accepts on one stream (100 MiB). */
export const MAX_STREAM_BYTES = 100 * 1024 * 1024;

/** Message types of the protocol. Type 2 is obsolete and always rejected. */
export const MessageType = {
  ServiceOfferList: 0,
  JobRunRequest: 1,
  File: 3,
  ServiceRequest: 4,
  ServiceResponse: 5,
  JobRunResponse: 6,
  JobRunStatus: 7,
  JobRunStatusRequest: 8,
  JobDataReceiptAck: 9,
  JobDataRequest: 10,
  JobCancellationRequest: 11,
  JobCancellationResponse: 12,
  ServiceLookup: 13,
} as const;
export type MessageTypeCode = (typeof MessageType)[keyof typeof MessageType];

export const OBSOLETE_TYPES: ReadonlySet<number> = new Set([2]);
const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(MessageType));

export function isKnownType(type: number): type is MessageTypeCode {
  return KNOWN_TYPES.has(type);
}

/** Why a stream was ended early. Used as the `reason` attribute of the rejection counter. */
export type StreamEndReason =
  | 'unknown-type'
  | 'obsolete-type'
  | 'unhandled-type'
  | 'truncated-header'
  | 'bad-header'
  | 'oversize-chunk'
  | 'oversize-stream'
  | 'truncated-payload'
  | 'bad-payload'
  | 'stalled'
  | 'deadline'
  | 'peer-disconnected'
  | 'dispatch-timeout'
  | 'rejected'
  | 'handler-error'
  | 'shutdown';

/** An error that ends one stream, with the reason that is logged and counted. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
  constructor(
    readonly reason: StreamEndReason,
    message: string,
  ) {
    super(message);
  }
}

export interface Header {
  type: number;
  peerId: string;
  orderingPeerId: string;
  workflowId: number;
  jobId: number;
  interfaceId: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function writeId(target: Uint8Array, offset: number, value: string, field: string): void {
  const bytes = encoder.encode(value);
  if (bytes.length > ID_FIELD_SIZE) {
    throw new RangeError(
      `header field ${field} is ${bytes.length} bytes, at most ${ID_FIELD_SIZE}`,
    );
  }
  target.set(bytes, offset);
}

function writeInt(view: DataView, offset: number, value: number, field: string): void {
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`header field ${field} must be a safe integer, got ${value}`);
  }
  view.setBigInt64(offset, BigInt(value));
}

export function encodeHeader(header: Header): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  const view = new DataView(out.buffer);
  if (!Number.isInteger(header.type) || header.type < 0 || header.type > 0xffff) {
    throw new RangeError(`header field type must be a uint16, got ${header.type}`);
  }
  view.setUint16(0, header.type);
  writeId(out, 2, header.peerId, 'peerId');
  writeId(out, 2 + ID_FIELD_SIZE, header.orderingPeerId, 'orderingPeerId');
  writeInt(view, 512, header.workflowId, 'workflowId');
  writeInt(view, 520, header.jobId, 'jobId');
  writeInt(view, 528, header.interfaceId, 'interfaceId');
  return out;
}

function readId(bytes: Uint8Array, offset: number, field: string): string {
  const slice = bytes.subarray(offset, offset + ID_FIELD_SIZE);
  let end = slice.indexOf(0);
  if (end === -1) end = slice.length;
  for (let i = end; i < slice.length; i++) {
    if (slice[i] !== 0)
      throw new ProtocolError('bad-header', `header field ${field} is not zero padded`);
  }
  try {
    return decoder.decode(slice.subarray(0, end));
  } catch {
    throw new ProtocolError('bad-header', `header field ${field} is not UTF-8`);
  }
}

function readInt(view: DataView, offset: number, field: string): number {
  const value = view.getBigInt64(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new ProtocolError('bad-header', `header field ${field} is out of range`);
  }
  return Number(value);
}

/** Only the message type, checked first so that a bad type is reported as such. */
export function headerType(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 2).getUint16(0);
}

/** Decodes a complete header. Throws a ProtocolError naming what was wrong. */
export function decodeHeader(bytes: Uint8Array): Header {
  if (bytes.length < HEADER_SIZE) {
    throw new ProtocolError(
      'truncated-header',
      `header is ${bytes.length} bytes, expected ${HEADER_SIZE}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const type = view.getUint16(0);
  checkType(type);
  return {
    type,
    peerId: readId(bytes, 2, 'peerId'),
    orderingPeerId: readId(bytes, 2 + ID_FIELD_SIZE, 'orderingPeerId'),
    workflowId: readInt(view, 512, 'workflowId'),
    jobId: readInt(view, 520, 'jobId'),
    interfaceId: readInt(view, 528, 'interfaceId'),
  };
}

export function checkType(type: number): void {
  if (OBSOLETE_TYPES.has(type)) {
    throw new ProtocolError('obsolete-type', `message type ${type} is obsolete`);
  }
  if (!isKnownType(type)) throw new ProtocolError('unknown-type', `unknown message type ${type}`);
}

export function encodeChunkLength(length: number): Uint8Array {
  const out = new Uint8Array(CHUNK_LENGTH_SIZE);
  new DataView(out.buffer).setBigUint64(0, BigInt(length));
  return out;
}

/** Decodes a chunk length; lengths past `Number.MAX_SAFE_INTEGER` come back as Infinity. */
export function decodeChunkLength(bytes: Uint8Array): number {
  const value = new DataView(bytes.buffer, bytes.byteOffset, CHUNK_LENGTH_SIZE).getBigUint64(0);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(value);
}

export function isReady(bytes: Uint8Array): boolean {
  if (bytes.length !== READY.length) return false;
  for (let i = 0; i < READY.length; i++) if (bytes[i] !== READY[i]) return false;
  return true;
}

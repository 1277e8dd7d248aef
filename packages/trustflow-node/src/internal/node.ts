import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import type { Connection, Libp2p, PeerId, PrivateKey, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { type Counter, metrics } from '@opentelemetry/api';
import {
  createHandlesSource,
  createMemoryPressureMonitor,
  createPluginHost,
  createResourceTracker,
  createScope,
  createTrendMonitor,
  type ResourceTracker,
} from '@trustflow/core';
import { createBufferPool } from '@trustflow/plugin-buffer-pool';
import { fsPlugin } from '@trustflow/plugin-fs';
import { libp2pMetrics, withStream } from '@trustflow/plugin-libp2p';
import { netPlugin } from '@trustflow/plugin-net';
import { createLibp2p } from 'libp2p';
import type {
  FoundOffer,
  IncomingMessage,
  Logger,
  LookupOptions,
  MessageHandler,
  NodeConfig,
  NodeHealth,
  NodeStats,
  SendFileOptions,
  SendFileResult,
  ServiceOffer,
  StopResult,
  Target,
  TrustflowNode,
  TrustflowNodeOptions,
} from '../types.js';
import { type ChunkBuffers, poolBuffers } from './buffers.js';
import { loadOffersFile, resolveConfig } from './config.js';
import { createEndpoint, type Endpoint } from './endpoint.js';
import { asProtocolError, StreamReader, send } from './io.js';
import { matchesOffer, OfferCache } from './offers.js';
import {
  CHUNK_LENGTH_SIZE,
  checkType,
  decodeChunkLength,
  decodeHeader,
  encodeChunkLength,
  encodeHeader,
  HEADER_SIZE,
  type Header,
  headerType,
  isReady,
  LOOKUP_TOPIC,
  MAX_CHUNK_BYTES,
  MAX_STREAM_BYTES,
  MessageType,
  PROTOCOL,
  ProtocolError,
  READY,
  type StreamEndReason,
} from './protocol.js';
import { createWorkerPool } from './worker-pool.js';

const FILE_BUFFER_BYTES = 64 * 1024;
const KIND_EXCHANGE = 'trustflow_node.exchange';
const INBOUND = { direction: 'inbound' } as const;
const OUTBOUND = { direction: 'outbound' } as const;
const abortStream = (stream: Stream) => stream.abort(new Error('closed as stale by the tracker'));
const INBOUND_SPEC = { kind: KIND_EXCHANGE, attributes: INBOUND, close: abortStream };
const OUTBOUND_SPEC = { kind: KIND_EXCHANGE, attributes: OUTBOUND, close: abortStream };

const TYPE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(MessageType).map(([name, code]) => [code, name]),
);

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

interface LookupState {
  found: FoundOffer[];
  seen: Set<string>;
  peers: Set<string>;
  wanted: number;
  done(): void;
}

const encoder = new TextEncoder();

export function defaultLogger(level: string, message: string, fields?: Record<string, unknown>) {
  if (level === 'debug') return;
  const extra = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
  process.stderr.write(`${new Date().toISOString()} ${level} ${message}${extra}\n`);
}

async function loadKey(dataDir: string | undefined): Promise<PrivateKey> {
  if (!dataDir) return generateKeyPair('Ed25519');
  const file = join(dataDir, 'peer-key');
  try {
    return privateKeyFromProtobuf(await readFile(file));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`cannot read the peer key ${file}: ${(error as Error).message}`);
    }
  }
  const key = await generateKeyPair('Ed25519');
  await mkdir(dataDir, { recursive: true });
  await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600 });
  return key;
}

/** Combines an outer signal with a timeout; `dispose()` clears the timer. */
function deadline(ms: number, outer?: AbortSignal): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new ProtocolError('deadline', `deadline of ${ms} ms passed`)),
    ms,
  );
  timer.unref();
  const onOuter = () => controller.abort(outer?.reason);
  outer?.addEventListener('abort', onOuter, { once: true });
  return {
    signal: controller.signal,
    dispose() {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

function safeName(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 120) || '_';
}

export interface NodeInternals {
  buffers?: ChunkBuffers;
  /** Tests only: a smaller per-stream payload limit than the protocol's 100 MiB. */
  maxStreamBytes?: number;
}

/** Creates and starts a node. */
export async function createTrustflowNode(
  options: TrustflowNodeOptions = {},
  internals: NodeInternals = {},
): Promise<TrustflowNode> {
  const config: NodeConfig = resolveConfig(options);
  const log: Logger = options.logger ?? defaultLogger;
  const started = Date.now();
  // Files first: they can fail without anything to clean up.
  const offers: ServiceOffer[] = [...config.offers];
  if (config.offersFile) offers.push(...(await loadOffersFile(config.offersFile)));
  const privateKey = await loadKey(config.dataDir);

  // From here on every resource is registered on the startup scope as it is created, so that a
  // start that fails (a port in use) closes what was opened before it, in reverse order.
  const startup = createScope({ name: 'trustflow-node startup' });
  async function step<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (error) {
      await startup.close().catch((cleanupError: unknown) => {
        log('error', 'cleanup after a failed start failed', { error: String(cleanupError) });
      });
      throw error;
    }
  }

  // Metrics, report and health on one loopback server (when configured).
  let healthNow: () => NodeHealth = () => {
    throw new Error('node is starting');
  };
  const endpoint: Endpoint | undefined = config.metrics ? createEndpoint() : undefined;
  const meter = options.meter ?? endpoint?.meter ?? metrics.getMeter('trustflow-node');
  if (endpoint) startup.defer(() => endpoint.close(), 'metrics endpoint');
  const ownTracker = options.tracker === undefined;
  const tracker: ResourceTracker =
    options.tracker ?? createResourceTracker({ meter, scanIntervalMs: 60_000 });
  if (ownTracker) startup.defer(() => tracker.shutdown(), 'tracker');
  const plugins = config.instrument
    ? createPluginHost({ tracker, meter }, [createHandlesSource(), fsPlugin(), netPlugin()])
    : undefined;
  plugins?.enable();
  if (plugins) startup.defer(() => plugins.disable(), 'plugins');
  let metricsUrl: string | null = null;
  if (endpoint && config.metrics) {
    metricsUrl = await step(
      endpoint.listen({
        host: config.metrics.host,
        port: config.metrics.port,
        health: () => healthNow(),
        report: () => tracker.report(),
        // the endpoint is instrumentation, not the node: its server and connections are not tracked
        wrap: (fn) => tracker.untracked(fn),
        onServer: (server) => tracker.ignore(server),
      }),
    );
  }
  // Chunk buffers: headers and small messages, the 64 KiB chunks this node sends and its file
  // write buffer, and 1 MiB for larger chunks from other implementations. A chunk over 1 MiB
  // (up to the protocol's 10 MiB) gets a buffer of its own that the pool does not keep.
  const bufferPool = createBufferPool({
    name: 'trustflow-node',
    classes: [
      { size: 4 * 1024, max: 100 },
      { size: 64 * 1024, max: 50 },
      { size: 1024 * 1024, max: 8 },
    ],
    tracker,
    meter,
  });
  startup.defer(() => bufferPool.close(), 'buffer pool');
  const buffers = internals.buffers ?? poolBuffers(bufferPool);
  const dl = config.deadlines;
  const maxStreamBytes = internals.maxStreamBytes ?? MAX_STREAM_BYTES;

  const cache = new OfferCache(config.offerTtlMs, config.maxCachedOffers);
  const endedCounter: Counter = meter.createCounter('trustflow.node.stream.ended_early', {
    description: 'Protocol streams ended before completing, by reason',
    unit: '{stream}',
  });
  meter
    .createObservableGauge('trustflow.node.offer_cache.size', {
      description: 'Service offers from other peers in the cache',
      unit: '{offer}',
    })
    .addCallback((result) => result.observe(cache.size));
  const servedCounter: Counter = meter.createCounter('trustflow.node.message.served', {
    description: 'Protocol messages received and handled, by type',
    unit: '{message}',
  });
  const endedEarly: Partial<Record<StreamEndReason, number>> = {};
  const served: Record<string, number> = {};

  const pending = new Map<string, Pending>();
  const lookups = new Map<string, LookupState>();
  /** Lookups answered recently (bounded), so that a repeated question is answered once. */
  const answered = new Set<string>();
  const activeStreams = new Set<Stream>();
  let stopping = false;
  let jobCounter = Number.parseInt(randomBytes(4).toString('hex'), 16);

  const pool = createWorkerPool(config.workers, config.dispatchTimeoutMs, (error) =>
    log('error', 'worker task failed', { error: String(error) }),
  );

  const node = await step(
    createLibp2p({
      privateKey,
      addresses: { listen: [`/ip4/${config.host}/tcp/${config.port}`] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      // A stream the reader pauses may still receive a full window: with a 2 MiB window that
      // stays under libp2p's 4 MiB read-buffer limit, and bounds what a slow reader holds.
      // A stream the reader pauses may still receive what is left of its window: a 2 MiB window
      // (yamux allows 16 MiB) keeps that under libp2p's 4 MiB read-buffer limit and bounds what
      // a slow reader holds. On loopback the transfer rate is bound by encryption, not the window.
      streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: 2 * 1024 * 1024 } })],
      connectionManager: { maxConnections: config.maxConnections, dialTimeout: dl.dialMs },
      // connections and protocol streams become tracked resources (libp2p.connection/.stream)
      metrics: libp2pMetrics({ tracker, meter }),
      services: {
        identify: identify(),
        ping: ping(),
        pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false }),
      },
    }),
  );
  startup.defer(() => node.stop(), 'libp2p');
  const selfId = node.peerId.toString();
  /** Closed at shutdown after the drain: aborts every task still running. */
  const root = createScope({ name: 'trustflow-node' });
  const pubsub = node.services.pubsub;

  function endEarly(stream: Stream, error: ProtocolError, peer: string, direction: string): void {
    endedEarly[error.reason] = (endedEarly[error.reason] ?? 0) + 1;
    endedCounter.add(1, { 'trustflow.node.reason': error.reason, direction });
    log('warn', `stream ended: ${error.reason}: ${error.message}`, {
      peer,
      direction,
      reason: error.reason,
    });
    stream.abort(error);
  }

  const handlers = new Map<number, MessageHandler>();
  for (const [type, handler] of Object.entries(options.handlers ?? {})) {
    checkType(Number(type));
    if (handler) handlers.set(Number(type), handler);
  }

  function accepts(type: number): boolean {
    switch (type) {
      case MessageType.ServiceOfferList:
      case MessageType.ServiceRequest:
      case MessageType.ServiceResponse:
      case MessageType.JobDataReceiptAck:
      case MessageType.ServiceLookup:
        return true;
      case MessageType.File:
        return config.dataDir !== undefined;
      default:
        return handlers.has(type);
    }
  }

  // ---- reading payloads ---------------------------------------------------------------------

  async function readJson(reader: StreamReader): Promise<unknown> {
    const lengthBytes = new Uint8Array(CHUNK_LENGTH_SIZE);
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let total = 0;
    let text = '';
    for (;;) {
      await reader.readExact(lengthBytes, CHUNK_LENGTH_SIZE, 'chunk length', 'truncated-payload');
      const length = decodeChunkLength(lengthBytes);
      if (length === 0) break;
      if (length > MAX_CHUNK_BYTES) {
        throw new ProtocolError(
          'oversize-chunk',
          `chunk of ${length} bytes exceeds ${MAX_CHUNK_BYTES}`,
        );
      }
      total += length;
      if (total > maxStreamBytes) {
        throw new ProtocolError(
          'oversize-stream',
          `payload passed ${maxStreamBytes} bytes on one stream`,
        );
      }
      const lease = buffers.acquire(length);
      try {
        const chunk = await reader.readExact(lease.buffer, length, 'chunk', 'truncated-payload');
        text += decoder.decode(chunk, { stream: true });
      } catch (error) {
        if (error instanceof TypeError)
          throw new ProtocolError('bad-payload', 'payload is not UTF-8');
        throw error;
      } finally {
        lease.release();
      }
    }
    try {
      text += decoder.decode();
      return text.length === 0 ? null : JSON.parse(text);
    } catch {
      throw new ProtocolError('bad-payload', 'payload is not valid UTF-8 JSON');
    }
  }

  async function receiveFile(reader: StreamReader, header: Header, peer: string): Promise<void> {
    const dir = join(config.dataDir!, 'received', safeName(peer));
    await mkdir(dir, { recursive: true });
    const name = `${header.workflowId}-${header.jobId}-${header.interfaceId}`;
    const finalPath = join(dir, name);
    const partPath = `${finalPath}.part`;
    const hash = createHash('sha256');
    const lease = buffers.acquire(FILE_BUFFER_BYTES);
    const fh = await open(partPath, 'w');
    let bytes = 0;
    let fill = 0;
    let ok = false;
    const flush = async () => {
      if (fill === 0) return;
      const view = lease.buffer.subarray(0, fill);
      hash.update(view);
      await fh.write(view, 0, fill);
      fill = 0;
    };
    try {
      for (;;) {
        const view = await reader.readSome(FILE_BUFFER_BYTES - fill, 'file');
        if (view === null) break;
        bytes += view.byteLength;
        if (bytes > config.maxFileBytes) {
          throw new ProtocolError('oversize-stream', `file passed ${config.maxFileBytes} bytes`);
        }
        lease.buffer.set(view, fill);
        fill += view.byteLength;
        if (fill === FILE_BUFFER_BYTES) await flush();
      }
      await flush();
      ok = true;
    } finally {
      lease.release();
      await fh.close();
      if (!ok) await rm(partPath, { force: true });
    }
    await rename(partPath, finalPath);
    const sha256 = hash.digest('hex');
    log('info', 'file received', { peer, path: finalPath, bytes, sha256 });
    // The receipt (type 9) carries our checksum back to the sender.
    void sendMessage(
      peer,
      MessageType.JobDataReceiptAck,
      { bytes, sha256 },
      {
        workflowId: header.workflowId,
        jobId: header.jobId,
        interfaceId: header.interfaceId,
      },
    ).catch((error) => log('warn', 'file receipt not delivered', { peer, error: String(error) }));
  }

  // ---- serving inbound streams ---------------------------------------------------------------

  async function dispatchMessage(message: IncomingMessage): Promise<void> {
    const { header, peerId, body } = message;
    switch (header.type) {
      case MessageType.ServiceOfferList: {
        const list = (body as { offers?: unknown; lookupId?: unknown } | null) ?? {};
        const received = Array.isArray(list.offers) ? (list.offers as ServiceOffer[]) : [];
        const valid = received.filter(
          (o) => o && typeof o.id === 'string' && typeof o.name === 'string',
        );
        cache.put(peerId, valid);
        const lookup = typeof list.lookupId === 'string' ? lookups.get(list.lookupId) : undefined;
        if (lookup) {
          for (const offer of valid) {
            const key = `${peerId}\n${offer.id}`;
            if (lookup.seen.has(key)) continue;
            lookup.seen.add(key);
            lookup.found.push({ peerId, offer });
          }
          lookup.peers.add(peerId);
          if (lookup.peers.size >= lookup.wanted) lookup.done();
        }
        return;
      }
      case MessageType.ServiceRequest: {
        const answer = options.onServiceRequest
          ? await options.onServiceRequest(body, peerId)
          : defaultServiceAnswer(body);
        await sendMessage(peerId, MessageType.ServiceResponse, answer ?? null, {
          workflowId: header.workflowId,
          jobId: header.jobId,
          interfaceId: header.interfaceId,
        });
        return;
      }
      case MessageType.ServiceResponse:
      case MessageType.JobDataReceiptAck: {
        const key = `${header.type}:${peerId}:${header.jobId}`;
        const waiter = pending.get(key);
        if (waiter) {
          pending.delete(key);
          clearTimeout(waiter.timer);
          waiter.resolve(body);
        } else {
          log('debug', 'reply nobody waits for', { peer: peerId, type: header.type });
        }
        return;
      }
      case MessageType.ServiceLookup: {
        const query = (body as { query?: unknown } | null)?.query;
        const lookupId = (body as { lookupId?: unknown } | null)?.lookupId;
        if (typeof query === 'string') await answerLookup(peerId, query, lookupId);
        return;
      }
      default: {
        const handler = handlers.get(header.type);
        if (handler) await handler(message);
      }
    }
  }

  function defaultServiceAnswer(body: unknown): unknown {
    const request = (body ?? {}) as { offerId?: unknown; query?: unknown };
    if (typeof request.offerId === 'string') {
      const offer = offers.find((o) => o.id === request.offerId);
      return offer ? { accepted: true, offer } : { accepted: false, error: 'no such offer' };
    }
    const query = typeof request.query === 'string' ? request.query : '';
    return { accepted: true, offers: offers.filter((o) => matchesOffer(o, query)) };
  }

  async function serveInbound(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString();
    // Every task gets a cleanup scope: what it opens is released in reverse order on every path,
    // and the node's root scope aborts it at shutdown.
    await using scope = createScope({ name: 'inbound exchange', signal: root.signal });
    let failure: ProtocolError | undefined;
    const handle = tracker.track(stream, INBOUND_SPEC);
    scope.defer(() => handle.release(failure ? { error: failure } : undefined));
    handle.annotate({ 'libp2p.peer': peer });
    activeStreams.add(stream);
    scope.defer(() => activeStreams.delete(stream));
    const limit = deadline(dl.inboundMs, scope.signal);
    scope.defer(() => limit.dispose());
    const reader = new StreamReader(stream, { idleMs: dl.idleMs, signal: limit.signal });
    scope.defer(() => reader.dispose());
    try {
      // withStream ends the stream exactly once: close() when this succeeds, abort() on a throw
      // or when the deadline (or shutdown) aborts the signal.
      await withStream(
        stream,
        async (s, signal) => {
          const headerBytes = new Uint8Array(HEADER_SIZE);
          await reader.readExact(headerBytes, 2, 'header', 'truncated-header');
          checkType(headerType(headerBytes));
          await reader.readExact(
            headerBytes.subarray(2),
            HEADER_SIZE - 2,
            'header',
            'truncated-header',
          );
          const header = decodeHeader(headerBytes);
          if (!accepts(header.type)) {
            throw new ProtocolError(
              'unhandled-type',
              `message type ${header.type} is not served here`,
            );
          }
          handle.annotate({ 'trustflow.message.type': header.type });
          await send(s, READY, signal);
          if (header.type === MessageType.File) {
            await receiveFile(reader, header, peer);
          } else {
            const body = await readJson(reader);
            await dispatchMessage({ header, peerId: peer, body });
          }
          const name = TYPE_NAMES[header.type] ?? String(header.type);
          served[name] = (served[name] ?? 0) + 1;
          servedCounter.add(1, { 'trustflow.message.type': name });
        },
        { signal: limit.signal },
      );
    } catch (error) {
      failure = asProtocolError(error, 'inbound stream');
      endEarly(stream, failure, peer, 'inbound');
    }
  }

  await step(
    node.handle(
      PROTOCOL,
      async (stream, connection) => {
        const peer = connection.remotePeer.toString();
        if (stopping) {
          endEarly(stream, new ProtocolError('shutdown', 'node is stopping'), peer, 'inbound');
          return;
        }
        const taken = await pool.dispatch(() => serveInbound(stream, connection));
        if (!taken) {
          endEarly(
            stream,
            new ProtocolError(
              stopping ? 'shutdown' : 'dispatch-timeout',
              `no worker free within ${config.dispatchTimeoutMs} ms`,
            ),
            peer,
            'inbound',
          );
        }
      },
      { maxInboundStreams: Math.max(64, config.workers * 4), maxOutboundStreams: 256 },
    ),
  );

  // ---- outbound ------------------------------------------------------------------------------

  function toDialTarget(target: Target): PeerId | ReturnType<typeof multiaddr> {
    if (target.startsWith('/')) return multiaddr(target);
    return peerIdFromString(target);
  }

  async function connect(target: Target, signal?: AbortSignal): Promise<Connection> {
    const limit = deadline(dl.dialMs, signal);
    try {
      return await node.dial(toDialTarget(target), { signal: limit.signal });
    } catch (error) {
      if (limit.signal.aborted)
        throw new Error(`dial ${target}: no connection within ${dl.dialMs} ms`);
      throw error;
    } finally {
      limit.dispose();
    }
  }

  /**
   * Opens a protocol stream, sends the header, waits for TFREADY, runs `body`, closes the write
   * side and waits for the receiver to close. Everything is bounded by `totalMs`.
   */
  async function exchange(
    target: Target,
    header: Header,
    totalMs: number,
    body: (stream: Stream, signal: AbortSignal) => Promise<void>,
  ): Promise<string> {
    if (stopping) throw new Error('node is stopping');
    await using scope = createScope({ name: 'outbound exchange', signal: root.signal });
    const limit = deadline(totalMs, scope.signal);
    scope.defer(() => limit.dispose());
    let stream: Stream | undefined;
    let peer = target;
    try {
      const connection = await connect(target, limit.signal);
      peer = connection.remotePeer.toString();
      const open = deadline(dl.newStreamMs, limit.signal);
      try {
        stream = await connection.newStream(PROTOCOL, { signal: open.signal });
      } catch (error) {
        if (open.signal.aborted && !limit.signal.aborted) {
          throw new ProtocolError('deadline', `no stream within ${dl.newStreamMs} ms`);
        }
        throw error;
      } finally {
        open.dispose();
      }
      const opened = stream;
      const handle = tracker.track(opened, OUTBOUND_SPEC);
      let failure: ProtocolError | undefined;
      scope.defer(() => handle.release(failure ? { error: failure } : undefined));
      handle.annotate({ 'libp2p.peer': peer, 'trustflow.message.type': header.type });
      activeStreams.add(opened);
      scope.defer(() => activeStreams.delete(opened));
      const reader = new StreamReader(opened, { idleMs: dl.idleMs, signal: limit.signal });
      scope.defer(() => reader.dispose());
      try {
        // header, TFREADY, payload; withStream then closes our write side (or aborts on failure)
        await withStream(
          opened,
          async (s, signal) => {
            await send(s, encodeHeader(header), signal);
            const ready = new Uint8Array(READY.length);
            try {
              await reader.readExact(ready, READY.length, 'TFREADY', 'truncated-header');
            } catch (error) {
              const e = asProtocolError(error, 'waiting for TFREADY');
              if (e.reason === 'truncated-header' || e.reason === 'peer-disconnected') {
                throw new ProtocolError('rejected', `peer refused message type ${header.type}`);
              }
              throw e;
            }
            if (!isReady(ready)) {
              throw new ProtocolError('bad-header', 'peer did not answer TFREADY');
            }
            await body(s, signal);
          },
          { signal: limit.signal },
        );
        // The receiver closes its side once it has handled everything.
        const extra = await reader.readSome(1, 'end of stream');
        if (extra !== null) throw new ProtocolError('bad-payload', 'receiver sent unexpected data');
        return peer;
      } catch (error) {
        failure = asProtocolError(error, `send to ${peer}`);
        throw error;
      }
    } catch (error) {
      const failure = asProtocolError(error, `send to ${peer}`);
      if (stream) endEarly(stream, failure, peer, 'outbound');
      throw failure.reason === 'handler-error' && error instanceof Error ? error : failure;
    }
  }

  async function writeJson(stream: Stream, value: unknown, signal: AbortSignal): Promise<void> {
    const bytes = encoder.encode(JSON.stringify(value ?? null));
    if (bytes.byteLength > MAX_STREAM_BYTES) {
      throw new RangeError(`message of ${bytes.byteLength} bytes exceeds ${MAX_STREAM_BYTES}`);
    }
    for (let offset = 0; offset < bytes.byteLength; offset += config.chunkBytes) {
      const piece = bytes.subarray(offset, Math.min(offset + config.chunkBytes, bytes.byteLength));
      await send(stream, encodeChunkLength(piece.byteLength), signal);
      await send(stream, piece, signal);
    }
    await send(stream, encodeChunkLength(0), signal);
  }

  function makeHeader(type: number, extra: Partial<Header> = {}): Header {
    return {
      type,
      peerId: selfId,
      orderingPeerId: extra.orderingPeerId ?? selfId,
      workflowId: extra.workflowId ?? 0,
      jobId: extra.jobId ?? 0,
      interfaceId: extra.interfaceId ?? 0,
    };
  }

  async function sendMessage(
    target: Target,
    type: number,
    body: unknown,
    header?: Partial<Header>,
  ): Promise<void> {
    checkType(type);
    if (type === MessageType.File) throw new TypeError('use sendFile() for files');
    await exchange(target, makeHeader(type, header), dl.messageMs, (stream, signal) =>
      writeJson(stream, body, signal),
    );
  }

  function nextJobId(): number {
    jobCounter = (jobCounter + 1) % 2 ** 48;
    return jobCounter;
  }

  function expectReply(type: number, peer: string, jobId: number): Promise<unknown> {
    const key = `${type}:${peer}:${jobId}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(key);
        reject(new Error(`no reply of type ${type} from ${peer} within ${dl.replyMs} ms`));
      }, dl.replyMs);
      timer.unref();
      pending.set(key, { resolve, reject, timer });
    });
  }

  function cancelReply(type: number, peer: string, jobId: number): void {
    const key = `${type}:${peer}:${jobId}`;
    const waiter = pending.get(key);
    if (waiter) {
      clearTimeout(waiter.timer);
      pending.delete(key);
    }
  }

  async function peerOf(target: Target): Promise<string> {
    if (!target.startsWith('/')) return target;
    const id = multiaddr(target)
      .getComponents()
      .find((c) => c.name === 'p2p')?.value;
    if (id) return id;
    return (await connect(target)).remotePeer.toString();
  }

  async function requestService(target: Target, request: unknown): Promise<unknown> {
    const peer = await peerOf(target);
    const jobId = nextJobId();
    const reply = expectReply(MessageType.ServiceResponse, peer, jobId);
    reply.catch(() => {});
    try {
      await sendMessage(target, MessageType.ServiceRequest, request, { jobId });
    } catch (error) {
      cancelReply(MessageType.ServiceResponse, peer, jobId);
      throw error;
    }
    return reply;
  }

  async function sendFile(
    target: Target,
    path: string,
    fileOptions: SendFileOptions = {},
  ): Promise<SendFileResult> {
    const info = await stat(path);
    if (!info.isFile()) throw new Error(`${path} is not a regular file`);
    const total = info.size;
    const peer = await peerOf(target);
    const jobId = fileOptions.jobId ?? nextJobId();
    const receipt = expectReply(MessageType.JobDataReceiptAck, peer, jobId);
    receipt.catch(() => {});
    const hash = createHash('sha256');
    let sent = 0;
    try {
      await exchange(
        target,
        makeHeader(MessageType.File, {
          workflowId: fileOptions.workflowId ?? 0,
          jobId,
          interfaceId: fileOptions.interfaceId ?? 0,
        }),
        dl.fileMs,
        async (stream, signal) => {
          const fh = await open(path, 'r');
          try {
            for (;;) {
              // A buffer handed to stream.send() belongs to the muxer until the socket has
              // written it, so each read gets its own buffer rather than a pooled one.
              const buffer = new Uint8Array(FILE_BUFFER_BYTES);
              const { bytesRead } = await fh.read(buffer, 0, FILE_BUFFER_BYTES, null);
              if (bytesRead === 0) break;
              const piece = buffer.subarray(0, bytesRead);
              hash.update(piece);
              await send(stream, piece, signal);
              sent += bytesRead;
              fileOptions.onProgress?.({ bytes: sent, total });
            }
          } finally {
            await fh.close();
          }
        },
      );
    } catch (error) {
      cancelReply(MessageType.JobDataReceiptAck, peer, jobId);
      throw error;
    }
    const sha256 = hash.digest('hex');
    let remoteSha256: string | null = null;
    try {
      const ack = (await receipt) as { sha256?: unknown } | null;
      remoteSha256 = typeof ack?.sha256 === 'string' ? ack.sha256 : null;
    } catch (error) {
      log('warn', 'no file receipt', { peer, error: String(error) });
    }
    return { bytes: sent, sha256, remoteSha256, verified: remoteSha256 === sha256 };
  }

  // ---- lookup over gossip ------------------------------------------------------------------------

  async function answerLookup(peer: string, query: string, lookupId: unknown): Promise<void> {
    const matches = offers.filter((o) => matchesOffer(o, query));
    if (matches.length === 0) return;
    await sendMessage(peer, MessageType.ServiceOfferList, { lookupId, offers: matches });
  }

  const onGossip = (
    evt: CustomEvent<{ topic: string; data: Uint8Array; type: string; from?: PeerId }>,
  ) => {
    const msg = evt.detail;
    if (msg.topic !== LOOKUP_TOPIC || stopping) return;
    const from = msg.type === 'signed' ? msg.from?.toString() : undefined;
    if (!from || from === selfId) return;
    let request: { query?: unknown; lookupId?: unknown };
    try {
      request = JSON.parse(new TextDecoder().decode(msg.data));
    } catch {
      log('warn', 'lookup message is not JSON', { peer: from });
      return;
    }
    if (typeof request?.query !== 'string' || request.query.length > 1024) {
      log('warn', 'lookup message has no valid query', { peer: from });
      return;
    }
    const query = request.query;
    const lookupKey = `${from}\n${String(request.lookupId)}`;
    if (answered.has(lookupKey)) return;
    answered.add(lookupKey);
    if (answered.size > 1024) answered.delete(answered.values().next().value!);
    void pool
      .dispatch(() => answerLookup(from, query, request.lookupId))
      .then((taken) => {
        if (!taken) log('warn', 'lookup answer dropped: no worker free', { peer: from });
      })
      .catch((error) => log('warn', 'lookup answer failed', { peer: from, error: String(error) }));
  };
  pubsub.addEventListener('message', onGossip as never);
  pubsub.subscribe(LOOKUP_TOPIC);

  async function waitForSubscribers(timeoutMs: number): Promise<void> {
    if (pubsub.getSubscribers(LOOKUP_TOPIC).length > 0) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pubsub.removeEventListener('subscription-change', check);
        resolve();
      };
      const check = () => {
        if (pubsub.getSubscribers(LOOKUP_TOPIC).length > 0) done();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      pubsub.addEventListener('subscription-change', check);
    });
  }

  async function lookup(query: string, lookupOptions: LookupOptions = {}): Promise<FoundOffer[]> {
    const timeoutMs = lookupOptions.timeoutMs ?? 2_000;
    const started = Date.now();
    await waitForSubscribers(timeoutMs);
    const lookupId = randomBytes(8).toString('hex');
    let finish: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const state: LookupState = {
      found: [],
      seen: new Set(),
      peers: new Set(),
      wanted: lookupOptions.peers ?? Number.POSITIVE_INFINITY,
      done: () => finish(),
    };
    lookups.set(lookupId, state);
    const timer = setTimeout(finish, Math.max(0, timeoutMs - (Date.now() - started)));
    timer.unref();
    // Gossip is lossy right after a connection comes up (the mesh forms over a heartbeat), so
    // the question is asked again with backoff until the time is up; answerers skip repeats.
    const message = encoder.encode(JSON.stringify({ query, lookupId }));
    let retry: NodeJS.Timeout | undefined;
    let delay = 200;
    let over = false;
    const ask = () => {
      if (over || stopping) return;
      pubsub.publish(LOOKUP_TOPIC, message).catch((error) => {
        log('debug', 'lookup publish failed', { error: String(error) });
      });
      retry = setTimeout(ask, delay);
      retry.unref();
      delay *= 2;
    };
    try {
      ask();
      await finished;
    } finally {
      over = true;
      clearTimeout(timer);
      clearTimeout(retry);
      lookups.delete(lookupId);
    }
    return state.found;
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  const sweepTimer = setInterval(() => cache.sweep(), Math.min(config.offerTtlMs, 60_000));
  sweepTimer.unref();

  // Memory pressure (85 %, checked every 30 s like the Go node, but never forcing GC): drop
  // expired offers and say so. Trend detection: heap, RSS, fds, every tracked kind, and the
  // node's own cache and stream counts, with a warning when one grows in a sustained way.
  const pressure = createMemoryPressureMonitor({
    threshold: 0.85,
    intervalMs: config.monitorIntervalMs,
    meter,
  });
  pressure.on('pressure', (figures) => {
    const swept = cache.sweep();
    log('warn', 'memory pressure', {
      ratio: Number(figures.ratio.toFixed(3)),
      usedBytes: figures.usedBytes,
      limitBytes: figures.limitBytes,
      limit: figures.limitSource,
      expiredOffersDropped: swept,
    });
  });
  pressure.on('relief', (figures) =>
    log('info', 'memory pressure relieved', { ratio: Number(figures.ratio.toFixed(3)) }),
  );
  const trend = createTrendMonitor({
    tracker,
    meter,
    intervalMs: config.monitorIntervalMs,
    source: () => ({ 'node.offer_cache': cache.size, 'node.active_streams': activeStreams.size }),
  });
  trend.on('trend', (event) =>
    log('warn', `sustained growth of ${event.series}: ${event.reason}`, {
      series: event.series,
      slopePerHour: event.slopePerHour,
      confidence: event.confidence,
    }),
  );

  for (const peer of config.peers) {
    try {
      await connect(peer);
    } catch (error) {
      log('warn', 'cannot reach peer', { peer, error: String(error) });
    }
  }

  let stopped: Promise<StopResult> | undefined;
  async function stop(): Promise<StopResult> {
    stopped ??= (async () => {
      const started = performance.now();
      stopping = true;
      clearInterval(sweepTimer);
      pubsub.removeEventListener('message', onGossip as never);
      try {
        pubsub.unsubscribe(LOOKUP_TOPIC);
      } catch {}
      for (const state of lookups.values()) state.done();
      for (const [key, waiter] of pending) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error('node is stopping'));
        pending.delete(key);
      }
      pressure.stop();
      trend.stop();
      const drained = await pool.drain(dl.drainMs);
      // Abort what is still running: every task scope hangs off the root scope.
      const aborted = activeStreams.size;
      await root.close(new ProtocolError('shutdown', 'node is stopping'));
      for (const stream of [...activeStreams]) {
        stream.abort(new ProtocolError('shutdown', 'node is stopping'));
      }
      // aborted streams fail their workers at once; wait for their cleanup to run
      if (aborted > 0) await pool.drain(dl.drainMs);
      try {
        await node.unhandle(PROTOCOL);
        await withTimeout(Promise.resolve(node.stop()), dl.stopMs, 'libp2p stop');
      } catch (error) {
        log('error', 'libp2p did not stop cleanly', { error: String(error) });
      }
      cache.clear();
      answered.clear();
      bufferPool.close();
      try {
        await endpoint?.close();
      } catch (error) {
        log('error', 'metrics endpoint did not close cleanly', { error: String(error) });
      }
      // Taken before the plugins go. Timers and other async-hooks handles are left out: that
      // source sees every handle of the process (not only the node's), and their destroy events
      // arrive late (a closed FileHandle's on GC), so they would be noise here.
      const leftOpen = tracker.isShutdown
        ? []
        : tracker
            .snapshot()
            .resources.filter((r) => r.kind !== 'timer' && !r.kind.startsWith('async.'))
            .map((r) => ({ kind: r.kind, site: r.site }));
      plugins?.disable();
      if (leftOpen.length > 0) log('warn', 'resources still open after stop', { leftOpen });
      if (ownTracker) tracker.shutdown();
      const elapsedMs = performance.now() - started;
      log('info', 'node stopped', { drained, aborted, elapsedMs: Math.round(elapsedMs) });
      return { drained, aborted, elapsedMs, leftOpen };
    })();
    return stopped;
  }

  healthNow = () => ({
    ok: !stopping,
    status: stopping ? 'stopping' : 'running',
    peerId: selfId,
    pid: process.pid,
    uptimeS: Math.round((Date.now() - started) / 1000),
    connections: node.getConnections().length,
    activeStreams: activeStreams.size,
    workersBusy: pool.busy,
    cachedOffers: cache.size,
    memoryPressure: pressure.underPressure,
  });

  log('info', 'node started', {
    peerId: selfId,
    listen: node.getMultiaddrs().map(String),
    ...(metricsUrl ? { metrics: `${metricsUrl}/metrics` } : {}),
  });

  return {
    peerId: selfId,
    libp2p: node as unknown as Libp2p,
    tracker,
    config,
    metricsUrl,
    health: () => healthNow(),
    multiaddrs: () => node.getMultiaddrs().map((m) => m.toString()),
    dial: async (target) => {
      await connect(target);
    },
    lookup,
    requestService,
    sendFile,
    sendMessage,
    stats: (): NodeStats => ({
      endedEarly: { ...endedEarly },
      served: { ...served },
      activeStreams: activeStreams.size,
      workersBusy: pool.busy,
      cachedOffers: cache.size,
      pendingReplies: pending.size,
      buffersLent: buffers.outstanding,
      connections: node.getConnections().length,
    }),
    stop,
  };
}

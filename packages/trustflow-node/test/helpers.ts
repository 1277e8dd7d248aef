import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Libp2p, Stream } from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createResourceTracker, type ResourceTracker } from '@trustflow/core';
import { createLibp2p } from 'libp2p';
import {
  encodeChunkLength,
  encodeHeader,
  type Header,
  type LogLevel,
  PROTOCOL,
  type TrustflowNode,
  type TrustflowNodeOptions,
} from '../src/index.js';
import { createTrustflowNode, type NodeInternals } from '../src/internal/node.js';

export interface LogLine {
  level: LogLevel;
  message: string;
  fields: Record<string, unknown> | undefined;
}

/** A logger that keeps lines and lets a test wait for one (an event, not polling). */
export function captureLog() {
  const lines: LogLine[] = [];
  const waiters: { match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];
  return {
    lines,
    logger(level: LogLevel, message: string, fields?: Record<string, unknown>) {
      const line = { level, message, fields };
      lines.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.match(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    },
    /** Resolves with the next line matching (or an earlier one after index `from`). */
    next(match: (line: LogLine) => boolean, from = lines.length): Promise<LogLine> {
      const seen = lines.slice(from).find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve) => waiters.push({ match, resolve }));
    },
  };
}

export interface TestNode {
  node: TrustflowNode;
  log: ReturnType<typeof captureLog>;
  tracker: ResourceTracker;
  dataDir: string;
  address: string;
}

const cleanups: (() => Promise<void>)[] = [];

export async function startNode(
  options: TrustflowNodeOptions = {},
  internals: NodeInternals = {},
): Promise<TestNode> {
  const log = captureLog();
  const tracker = createResourceTracker({ scanIntervalMs: 0 });
  const dataDir = await mkdtemp(join(tmpdir(), 'tf-node-'));
  const node = await createTrustflowNode(
    {
      port: 0,
      dataDir,
      logger: log.logger,
      tracker,
      ...options,
      deadlines: { drainMs: 2_000, stopMs: 5_000, ...options.deadlines },
    },
    internals,
  );
  cleanups.push(async () => {
    await node.stop();
    tracker.shutdown();
    await rm(dataDir, { recursive: true, force: true });
  });
  const address = node.multiaddrs()[0]!;
  return { node, log, tracker, dataDir, address };
}

export async function plainNode(): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
  });
  cleanups.push(async () => {
    await node.stop();
  });
  return node;
}

export async function stopAll(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}

export async function openRaw(client: Libp2p, address: string): Promise<Stream> {
  return client.dialProtocol(multiaddr(address), PROTOCOL, { signal: AbortSignal.timeout(5_000) });
}

export function header(type: number, peerId: string, extra: Partial<Header> = {}): Uint8Array {
  return encodeHeader({
    type,
    peerId,
    orderingPeerId: peerId,
    workflowId: 0,
    jobId: 0,
    interfaceId: 0,
    ...extra,
  });
}

/** Length-prefixed chunks of a JSON value, ended with a zero length. */
export function jsonChunks(value: unknown, chunk = 1024): Uint8Array[] {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += chunk) {
    const piece = bytes.subarray(i, i + chunk);
    out.push(encodeChunkLength(piece.length), piece);
  }
  out.push(encodeChunkLength(0));
  return out;
}

/** Reads everything the remote sends until it closes its side. */
export async function readAll(stream: Stream): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) parts.push(part instanceof Uint8Array ? part : part.subarray());
  return Buffer.concat(parts);
}

/** Resolves when the stream is closed (normally or by a reset). */
export function closed(stream: Stream): Promise<Error | undefined> {
  if (stream.status !== 'open' && stream.status !== 'closing') return Promise.resolve(undefined);
  return new Promise((resolve) =>
    stream.addEventListener('close', (evt) => resolve((evt as { error?: Error }).error), {
      once: true,
    }),
  );
}

/** Protocol streams still open on a node's connections. */
export function openProtocolStreams(node: { getConnections(): { streams: Stream[] }[] }): number {
  let count = 0;
  for (const connection of node.getConnections()) {
    for (const stream of connection.streams) if (stream.protocol === PROTOCOL) count++;
  }
  return count;
}

/** Resolves on the first bytes back (TFREADY); rejects if the stream closes first. */
export async function waitForReady(stream: Stream): Promise<void> {
  const got = Promise.withResolvers<void>();
  const onMessage = () => got.resolve();
  stream.addEventListener('message', onMessage, { once: true });
  const onClose = () => got.reject(new Error('closed before TFREADY'));
  stream.addEventListener('close', onClose, { once: true });
  await got.promise;
  stream.removeEventListener('close', onClose);
}

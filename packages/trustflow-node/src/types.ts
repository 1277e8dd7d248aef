import type { Libp2p } from '@libp2p/interface';
import type { Meter } from '@opentelemetry/api';
import type { ResourceTracker } from '@trustflow/core';
import type { Header, StreamEndReason } from './internal/protocol.js';

export type { Header, StreamEndReason };

/** A service this node offers, as loaded from the offers file and sent in offer lists. */
export interface ServiceOffer {
  id: string;
  name: string;
  description?: string;
  tags?: string[];
  /** Free-form price (for example `"0.1 per job"`). */
  price?: string;
}

/** Timeouts, all in milliseconds. */
export interface Deadlines {
  /** Dialling a peer. Default 60 000. */
  dialMs: number;
  /** Opening a protocol stream on a connection. Default 10 000. */
  newStreamMs: number;
  /** A whole outbound message exchange. Default 60 000 (1 min). */
  messageMs: number;
  /** A whole outbound file transfer. Default 18 000 000 (5 h). */
  fileMs: number;
  /** A whole inbound exchange. Default 600 000 (10 min). */
  inboundMs: number;
  /** A read that gets no byte for this long ends the stream as `stalled`. Default 30 000. */
  idleMs: number;
  /** Waiting for a reply stream (service response, file receipt). Default 60 000. */
  replyMs: number;
  /** Worker drain during shutdown. Default 5 000. */
  drainMs: number;
  /** Stopping libp2p during shutdown. Default 10 000. */
  stopMs: number;
}

/** The node's configuration: the config file's fields. (CLI flags override the file.) */
export interface NodeConfig {
  /** TCP port. Default 30609; 0 picks a free one. */
  port: number;
  /** Listen address. Default 127.0.0.1 (all interfaces only when asked: `0.0.0.0`). */
  host: string;
  /** Keeps the peer key and received files. No data dir: fresh key, files refused. */
  dataDir?: string;
  /** JSON file with an array of service offers. */
  offersFile?: string;
  /** Offers given inline (added to those from `offersFile`). */
  offers: ServiceOffer[];
  /** Multiaddrs dialled at start. */
  peers: string[];
  /** Workers for incoming streams. Default 10. */
  workers: number;
  /** A stream no worker takes within this is closed. Default 50 ms. */
  dispatchTimeoutMs: number;
  /** How long a learned offer is cached. Default 1 h. */
  offerTtlMs: number;
  /** Cap on cached offers. Default 10 000. */
  maxCachedOffers: number;
  /** libp2p connection cap. Default 400. */
  maxConnections: number;
  /** Largest file accepted, bytes. Default 4 GiB. */
  maxFileBytes: number;
  /** Period of the memory-pressure and growth-trend checks (ms). Default 30 000. */
  monitorIntervalMs: number;
  /** Size of the chunks this node sends, bytes (at most 10 MiB). Default 64 KiB. */
  chunkBytes: number;
  /**
   * Metrics, `/report` and `/health` endpoint. Default off for the library, on (127.0.0.1:9464)
   * for `trustflow-node start`. Port 0 picks a free one.
   */
  metrics?: { host: string; port: number };
  /**
   * Turn the Trustflow plugins on for this process (async-hooks handles, fs descriptors and
   * streams), tracked by the node's tracker. They patch process-wide functions, so turn them on
   * in one node per process. Default false for the library, true for `trustflow-node start`.
   */
  instrument: boolean;
  deadlines: Deadlines;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

/** A chunked (JSON) message received on the protocol. */
export interface IncomingMessage {
  header: Header;
  /** The remote peer (from the connection, not from the header). */
  peerId: string;
  body: unknown;
}

/** Handles one message type; what it returns is ignored (use `reply` for answers). */
export type MessageHandler = (message: IncomingMessage) => unknown;

export interface TrustflowNodeOptions extends Partial<Omit<NodeConfig, 'deadlines'>> {
  deadlines?: Partial<Deadlines>;
  /** Tracker for every exchange, stream and buffer. Default: a new one (shut down on stop). */
  tracker?: ResourceTracker;
  /** Meter for the node's counters. Default: the global meter provider. */
  meter?: Meter;
  logger?: Logger;
  /** Answers service requests (type 4). Default: the offers matching `query` or `offerId`. */
  onServiceRequest?: (request: unknown, peerId: string) => unknown;
  /** Handlers for the job message types (1, 6, 7, 8, 10, 11, 12). Types without one are refused. */
  handlers?: Partial<Record<number, MessageHandler>>;
}

/** Where to send: a multiaddr string (with /p2p/) or a peer id string of a connected peer. */
export type Target = string;

export interface FoundOffer {
  peerId: string;
  offer: ServiceOffer;
}

export interface LookupOptions {
  /** How long to collect answers. Default 2 000 ms. */
  timeoutMs?: number;
  /** Resolve as soon as this many peers answered. */
  peers?: number;
}

export interface TransferProgress {
  bytes: number;
  total: number;
}

export interface SendFileOptions {
  workflowId?: number;
  jobId?: number;
  interfaceId?: number;
  onProgress?: (progress: TransferProgress) => void;
}

export interface SendFileResult {
  bytes: number;
  sha256: string;
  /** The receiver's checksum from its receipt (type 9), or null if no receipt came in time. */
  remoteSha256: string | null;
  /** True when the receiver's checksum equals ours. */
  verified: boolean;
}

export interface NodeStats {
  /** Streams ended early, by reason. */
  endedEarly: Partial<Record<StreamEndReason, number>>;
  /** Messages served, by type. */
  served: Record<string, number>;
  activeStreams: number;
  workersBusy: number;
  cachedOffers: number;
  pendingReplies: number;
  /** Chunk buffers lent and not yet returned. */
  buffersLent: number;
  connections: number;
}

export interface NodeHealth {
  ok: boolean;
  status: 'running' | 'stopping';
  peerId: string;
  pid: number;
  uptimeS: number;
  connections: number;
  activeStreams: number;
  workersBusy: number;
  cachedOffers: number;
  memoryPressure: boolean;
}

export interface StopResult {
  /** True when every worker finished within the drain deadline. */
  drained: boolean;
  /** Streams aborted because they were still open after the drain. */
  aborted: number;
  elapsedMs: number;
  /**
   * Tracked resources still open once everything was closed (kind and creation site), taken
   * just before the plugins are disabled and the node's own tracker is shut down. Empty when the
   * node cleaned up after itself. Process-wide async-hooks kinds (`timer`, `async.*`) are left
   * out: they include handles that are not the node's, and their destroy events come late.
   */
  leftOpen: { kind: string; site: string | null }[];
}

export interface TrustflowNode {
  readonly peerId: string;
  readonly libp2p: Libp2p;
  readonly tracker: ResourceTracker;
  readonly config: NodeConfig;
  /** Listen addresses with /p2p/<peer id>. */
  multiaddrs(): string[];
  /** Address of the metrics/report/health endpoint, when on. */
  readonly metricsUrl: string | null;
  /** Connects to a peer (with the dial deadline). */
  dial(target: Target): Promise<void>;
  /** Asks the network over gossip and collects offer lists sent back. */
  lookup(query: string, options?: LookupOptions): Promise<FoundOffer[]>;
  /** Sends a service request (type 4) and waits for the response (type 5). */
  requestService(target: Target, request: unknown): Promise<unknown>;
  /** Sends a file (type 3) and waits for the receipt (type 9) with the receiver's checksum. */
  sendFile(target: Target, path: string, options?: SendFileOptions): Promise<SendFileResult>;
  /** Sends one chunked message of any type and resolves when the receiver closed the stream. */
  sendMessage(target: Target, type: number, body: unknown, header?: Partial<Header>): Promise<void>;
  stats(): NodeStats;
  /** What `/health` answers. */
  health(): NodeHealth;
  /** Graceful shutdown with a deadline: drain workers, abort leftovers, stop libp2p. */
  stop(): Promise<StopResult>;
}

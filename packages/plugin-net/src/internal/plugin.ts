import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type * as Net from 'node:net';
import {
  type Attributes,
  type CreationSite,
  definePlugin,
  LiveList,
  type LiveNode,
  type PluginContext,
  type ReleaseOptions,
  type ResourceHandle,
  type TrackOptions,
  type TrustflowPlugin,
} from '@trustflow/core';
import type { NetPluginOptions } from '../types.js';
import { type FdProvider, fdProviders } from './registry.js';

export const KIND_SOCKET = 'net.socket';
export const KIND_SERVER = 'net.server';

const ATTR_TRANSPORT = 'network.transport';
const ATTR_ROLE = 'trustflow.net.role';
const ATTR_TLS = 'trustflow.net.tls';
const ATTR_LOCAL_ADDRESS = 'network.local.address';
const ATTR_LOCAL_PORT = 'network.local.port';
const ATTR_PEER_ADDRESS = 'network.peer.address';
const ATTR_PEER_PORT = 'network.peer.port';
const ATTR_BYTES_READ = 'trustflow.net.bytes_read';
const ATTR_BYTES_WRITTEN = 'trustflow.net.bytes_written';
const ATTR_CAUSE = 'trustflow.close.cause';
const ATTR_POOL_STATE = 'trustflow.net.pool_state';

/**
 * Builtins whose loading means sockets may follow: the patches of net.Socket and net.Server wait
 * for the first of them (a preloaded program that never opens a socket never loads node:net).
 */
const NET_USERS = [
  'net',
  'tls',
  'http',
  'https',
  'http2',
  'child_process',
  'cluster',
  'repl',
  '_http_agent',
  '_http_client',
  '_http_server',
  '_tls_wrap',
];
/**
 * Other signs: a connection made by a module that loaded node:net itself (fetch, WebSocket and
 * EventSource through Node's bundled undici), published before the socket connects.
 */
const NET_SIGNS = ['net.client.socket', 'undici:client:beforeConnect'];

type Transport = 'tcp' | 'unix' | 'pipe';
type Role = 'client' | 'server';
type Fn = (...args: any[]) => any;

/** The parts of net.Socket (and its internals) the plugin reads. */
interface SocketLike {
  readonly destroyed: boolean;
  readonly readableEnded: boolean;
  readonly errored?: unknown;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;
  readonly encrypted?: boolean;
  readonly server?: object;
  readonly _server?: object;
  readonly _handle?: { fd?: number; constructor?: { name?: string } } | null;
  readonly _tlsOptions?: { pipe?: boolean };
  readonly timeout?: number;
  readonly _httpMessage?: unknown;
  destroy(): unknown;
  on(event: string, listener: Fn): unknown;
  listenerCount(event: string): number;
}

interface ServerLike {
  readonly _pipeName?: string;
  readonly _connections?: number;
  readonly _handle?: { fd?: number } | null;
  address(): unknown;
  close(): unknown;
}

/**
 * A tracked socket or server carries its node of the plugin's live list (its handle) under a
 * symbol of the enabled plugin instance (a property is cheaper than a WeakMap entry on this path)
 * until it closes: held strongly, since an open socket or a listening server is never collected.
 */
type Tagged = (SocketLike | ServerLike) & Record<symbol, unknown>;

interface ServerInfo {
  /** The listening server's handle; undefined when it started listening before the plugin. */
  handle: ResourceHandle | undefined;
  /** Set when the tracker declined the server (ignored, untracked): its sockets are skipped too. */
  declined: boolean;
  /** What its accepted sockets are tracked with: the listen() site, shared. */
  socketSpec: TrackOptions<SocketLike>;
}

const pipeTransport: Transport = process.platform === 'win32' ? 'pipe' : 'unix';
const TRANSPORTS: readonly Transport[] = ['tcp', pipeTransport];

function attributesFor(role: Role | undefined, secure: boolean, transport: Transport): Attributes {
  const attributes: Attributes = { [ATTR_TRANSPORT]: transport, [ATTR_TLS]: secure };
  if (role !== undefined) attributes[ATTR_ROLE] = role;
  return Object.freeze(attributes);
}

/** One frozen attribute object per combination, so the tracker finds its series by identity. */
const ATTRIBUTES = {
  client: TRANSPORTS.map((t) => [
    attributesFor('client', false, t),
    attributesFor('client', true, t),
  ]),
  server: TRANSPORTS.map((t) => [
    attributesFor('server', false, t),
    attributesFor('server', true, t),
  ]),
  listener: TRANSPORTS.map((t) => [
    attributesFor(undefined, false, t),
    attributesFor(undefined, true, t),
  ]),
};
const attributes = (role: keyof typeof ATTRIBUTES, secure: boolean, transport: Transport) =>
  ATTRIBUTES[role][transport === 'tcp' ? 0 : 1]![secure ? 1 : 0]!;

function clientTransport(socket: SocketLike): Transport {
  if (socket._tlsOptions !== undefined) return socket._tlsOptions.pipe ? pipeTransport : 'tcp';
  return socket._handle?.constructor?.name === 'Pipe' ? pipeTransport : 'tcp';
}

// tls.Server (and https/http2 secure servers built on it) without importing node:tls, which
// costs a preloaded process about 10 ms at start-up.
const isTlsServer = (s: object) =>
  typeof (s as { setSecureContext?: unknown }).setSecureContext === 'function';

// Probes, inspectors and closers receive the resource; they never capture it.
const socketActivity = (s: SocketLike) => s.bytesRead + s.bytesWritten;
const serverActivity = (s: ServerLike) => s._connections ?? 0;
const destroySocket = (s: SocketLike) => void s.destroy();
const closeServer = (s: ServerLike) => void s.close();
const inspectWithAddresses = (s: SocketLike) => inspectSocket(s, true);
const inspectWithoutAddresses = (s: SocketLike) => inspectSocket(s, false);

/**
 * At report time: addresses, byte counts so far, and for a socket of an http(s) Agent whether it
 * sits idle in the pool or carries a request.
 */
function inspectSocket(s: SocketLike, addresses: boolean): Attributes {
  const attributes: Attributes = {
    [ATTR_BYTES_READ]: s.bytesRead,
    [ATTR_BYTES_WRITTEN]: s.bytesWritten,
  };
  if (addresses) addressDetails(s, attributes);
  // An Agent installs a 'free' listener on its sockets; a free socket has no request attached.
  if (s.listenerCount('free') > 0) attributes[ATTR_POOL_STATE] = s._httpMessage ? 'in-use' : 'idle';
  return attributes;
}

/** Addresses of a connected socket (one getsockname and one getpeername, cached by Node). */
function addressDetails(s: SocketLike, details: Attributes): Attributes {
  const local = s.localAddress;
  if (local !== undefined) details[ATTR_LOCAL_ADDRESS] = local;
  const localPort = s.localPort;
  if (localPort !== undefined) details[ATTR_LOCAL_PORT] = localPort;
  const peer = s.remoteAddress;
  if (peer !== undefined) details[ATTR_PEER_ADDRESS] = peer;
  const peerPort = s.remotePort;
  if (peerPort !== undefined) details[ATTR_PEER_PORT] = peerPort;
  return details;
}

function readOptions(init: NetPluginOptions | undefined): Required<NetPluginOptions> {
  if (init !== undefined && (typeof init !== 'object' || init === null)) {
    throw new TypeError(`netPlugin: options must be an object, got ${String(init)}`);
  }
  const addresses = init?.addresses;
  if (addresses !== undefined && typeof addresses !== 'boolean') {
    throw new TypeError(`netPlugin: option addresses must be a boolean, got ${String(addresses)}`);
  }
  return { addresses: addresses ?? true };
}

/**
 * Tracks net and tls sockets (`net.socket`, client and server side, including the sockets of
 * http(s) Agents) and listening servers (`net.server`), from Node's diagnostics channels.
 * Bad options throw a TypeError naming the option.
 */
export function netPlugin(init?: NetPluginOptions): TrustflowPlugin {
  const options = readOptions(init);
  return definePlugin({
    name: 'net',
    module: import.meta.url,
    setup: (ctx) => setup(ctx, options),
  });
}

function setup(ctx: PluginContext, options: Required<NetPluginOptions>): () => void {
  const { tracker } = ctx;
  const kHandle = Symbol('trustflow.net.handle');
  const kTimedOut = Symbol('trustflow.net.timedOut');
  const kTimeoutListener = Symbol('trustflow.net.timeoutListener');
  const nodeOf = (resource: object) =>
    (resource as Tagged)[kHandle] as LiveNode<Tagged> | undefined;
  const handleOf = (resource: object) => nodeOf(resource)?.handle;
  /** Open sockets and listening servers, held until they close (for disable and the inventory). */
  const live = new LiveList<Tagged>();
  let sweepAt = 256;
  const servers = new WeakMap<object, ServerInfo>();
  const listening = new WeakMap<object, CreationSite | undefined>();

  const inspect = options.addresses ? inspectWithAddresses : inspectWithoutAddresses;
  /** Shared track options of client sockets, by attribute set. */
  const clientSpecs = new Map<Attributes, TrackOptions<SocketLike>>();

  function socketSpec(attributes: Attributes, site: CreationSite | undefined) {
    return {
      kind: KIND_SOCKET,
      attributes,
      gc: false,
      close: destroySocket,
      activity: socketActivity,
      inspect,
      site,
    } satisfies TrackOptions<SocketLike>;
  }

  function remember(resource: Tagged, handle: ResourceHandle): void {
    resource[kHandle] = live.add(resource, handle);
    if (live.size >= sweepAt) sweep();
  }

  /**
   * Settles sockets that closed while the plugin missed their 'close' (their listeners were
   * removed). Runs when the list has doubled since the last sweep (nodes released elsewhere are
   * dropped by the list itself).
   */
  function sweep(): void {
    for (const node of live.nodes()) {
      const resource = node.resource as SocketLike | undefined;
      if (node.handle?.released === false && resource?.destroyed === true) {
        socketClosed(resource, false);
      }
    }
    sweepAt = Math.max(256, live.size * 2);
  }

  function onClose(this: SocketLike, hadError: unknown): void {
    try {
      socketClosed(this, hadError);
    } catch (error) {
      ctx.reportError('socket close', error);
    }
  }

  function socketClosed(socket: SocketLike, hadError: unknown): void {
    const tagged = socket as Tagged;
    const node = nodeOf(socket);
    const handle = node?.handle;
    if (handle === undefined) return;
    tagged[kHandle] = undefined;
    live.remove(node!);
    if (handle.released) return;
    if (!handle.recording) {
      // bytes, cause and error only go on the span
      handle.release();
      return;
    }
    const errored = socket.errored ?? undefined;
    const cause =
      hadError === true || errored !== undefined
        ? 'error'
        : socket.readableEnded
          ? 'end'
          : tagged[kTimedOut] === true
            ? 'timeout'
            : 'destroy';
    const release: ReleaseOptions = {
      details: {
        [ATTR_BYTES_READ]: socket.bytesRead,
        [ATTR_BYTES_WRITTEN]: socket.bytesWritten,
        [ATTR_CAUSE]: cause,
      },
    };
    if (errored !== undefined) release.error = errored;
    handle.release(release);
  }

  function onTimeout(this: SocketLike): void {
    if (handleOf(this) !== undefined) (this as Tagged)[kTimedOut] = true;
  }

  /** The 'timeout' listener (for the close cause) only goes on sockets that have a timeout. */
  function listenForTimeout(socket: SocketLike): void {
    const tagged = socket as Tagged;
    if (tagged[kTimeoutListener] === true || !(socket.timeout! > 0)) return;
    if (handleOf(socket)?.released !== false) return;
    tagged[kTimeoutListener] = true;
    socket.on('timeout', onTimeout);
  }

  /** Addresses go on the span when it records (an SDK sampled it); reports read them live. */
  function onConnect(this: SocketLike): void {
    try {
      const handle = handleOf(this);
      if (handle?.recording) handle.annotate(addressDetails(this, {}));
    } catch (error) {
      ctx.reportError('socket connect', error);
    }
  }

  function trackSocket(socket: SocketLike, spec: TrackOptions<SocketLike>): ResourceHandle {
    const handle = tracker.track(socket, spec);
    if (handle.released) return handle; // declined: ignored, untracked, shut down
    remember(socket as Tagged, handle);
    socket.on('close', onClose);
    listenForTimeout(socket);
    return handle;
  }

  function connected(socket: SocketLike): void {
    if (socket.destroyed) return;
    const current = handleOf(socket);
    if (current !== undefined && !current.released) return;
    const secure = socket.encrypted === true || socket._tlsOptions !== undefined;
    const attrs = attributes('client', secure, clientTransport(socket));
    let spec = clientSpecs.get(attrs);
    if (spec === undefined) {
      spec = socketSpec(attrs, undefined);
      clientSpecs.set(attrs, spec);
    }
    const handle = trackSocket(socket, spec);
    if (options.addresses && handle.recording) socket.on('connect', onConnect);
  }

  function serverInfo(server: ServerLike): ServerInfo {
    let entry = servers.get(server);
    if (entry === undefined) {
      const transport = server._pipeName !== undefined ? pipeTransport : 'tcp';
      const secure = isTlsServer(server);
      entry = {
        handle: undefined,
        declined: false,
        socketSpec: socketSpec(attributes('server', secure, transport), undefined),
      };
      servers.set(server, entry);
    }
    return entry;
  }

  ctx.subscribe('net.server.socket', (message) => {
    const socket = (message as { socket?: SocketLike }).socket;
    if (!ctx.active || socket === undefined) return;
    needNet();
    const server = (socket.server ?? socket._server) as ServerLike | undefined;
    const owner = server ? serverInfo(server) : undefined;
    if (owner?.declined) return;
    owner?.handle?.touch();
    if (socket.destroyed || handleOf(socket) !== undefined) return;
    const handle = trackSocket(
      socket,
      owner?.socketSpec ?? socketSpec(attributes('server', false, 'tcp'), undefined),
    );
    if (options.addresses && handle.recording) handle.annotate(addressDetails(socket, {}));
  });

  // server.listen(): the site is taken at the call (asyncStart, inside listen()); the server is
  // tracked once it listens (asyncEnd: at once, or after an address lookup).
  ctx.subscribe('tracing:net.server.listen:asyncStart', (message) => {
    const server = (message as { server?: object }).server;
    if (!ctx.active || server === undefined) return;
    needNet();
    listening.set(server, tracker.captureSite(KIND_SERVER));
  });
  ctx.subscribe('tracing:net.server.listen:error', (message) => {
    const server = (message as { server?: object }).server;
    if (server !== undefined) listening.delete(server);
  });
  ctx.subscribe('tracing:net.server.listen:asyncEnd', (message) => {
    const server = (message as { server?: ServerLike }).server;
    if (!ctx.active || server === undefined) return;
    const site = listening.get(server);
    listening.delete(server);
    const entry = serverInfo(server);
    if (entry.handle !== undefined && !entry.handle.released) return;
    const details: Attributes = {};
    const address = server.address();
    if (typeof address === 'string') details[ATTR_LOCAL_ADDRESS] = address;
    else if (address !== null && typeof address === 'object') {
      const { address: host, port } = address as { address?: string; port?: number };
      if (host !== undefined) details[ATTR_LOCAL_ADDRESS] = host;
      if (port !== undefined) details[ATTR_LOCAL_PORT] = port;
    }
    const transport = server._pipeName !== undefined ? pipeTransport : 'tcp';
    const handle = tracker.track(server, {
      kind: KIND_SERVER,
      attributes: attributes('listener', isTlsServer(server), transport),
      gc: false,
      close: closeServer,
      activity: serverActivity,
      details,
      site,
    });
    entry.handle = handle;
    entry.declined = handle.released;
    entry.socketSpec = { ...entry.socketSpec, site };
    if (!handle.released) remember(server as Tagged, handle);
  });

  let netPatched = false;
  function patchNet(): void {
    netPatched = true;
    for (const name of NET_SIGNS) unsubscribe(name, onSign);
    const net = process.getBuiltinModule('node:net') as typeof Net;
    // Client sockets: net.Socket.prototype.connect (net.connect, tls.connect and the http(s)
    // Agents all come through it). The 'net.client.socket' channel is published at the start of
    // connect(), before connect() has created the handle that tells TCP from a Unix socket, and
    // tracking later would lose `tracker.untracked()`; so the socket is tracked as connect()
    // returns, still inside the caller's call (and stack).
    ctx.patch(
      net.Socket.prototype as unknown as Record<string, Fn>,
      'connect',
      (original) =>
        function (this: SocketLike, ...args: unknown[]) {
          const result = Reflect.apply(original, this, args);
          if (ctx.active) {
            try {
              connected(this);
            } catch (error) {
              ctx.reportError('Socket.connect', error);
            }
          }
          return result;
        },
    );

    // A timeout set after the socket was tracked (keep-alive agents and servers do that).
    ctx.patch(
      net.Socket.prototype as unknown as Record<string, Fn>,
      'setTimeout',
      (original) =>
        function (this: SocketLike, ...args: unknown[]) {
          const result = Reflect.apply(original, this, args);
          if (ctx.active) {
            try {
              listenForTimeout(this);
            } catch (error) {
              ctx.reportError('Socket.setTimeout', error);
            }
          }
          return result;
        },
    );

    // A server stops listening at close(); its 'close' event waits for every connection to end.
    ctx.patch(
      net.Server.prototype as unknown as Record<string, Fn>,
      'close',
      (original) =>
        function (this: object, ...args: unknown[]) {
          if (ctx.active) {
            try {
              const node = nodeOf(this);
              const handle = node?.handle;
              if (handle !== undefined) {
                (this as Tagged)[kHandle] = undefined;
                live.remove(node!);
                handle.release({ details: { [ATTR_CAUSE]: 'close' } });
              }
            } catch (error) {
              ctx.reportError('Server.close', error);
            }
          }
          return Reflect.apply(original, this, args);
        },
    );
  }
  const needNet = ctx.whenLoaded(NET_USERS, patchNet);
  function onSign(): void {
    needNet();
  }
  if (!netPatched) for (const name of NET_SIGNS) subscribe(name, onSign);
  ctx.onDisable(() => {
    for (const name of NET_SIGNS) unsubscribe(name, onSign);
  });

  // Descriptors of live sockets and servers, for the fd inventory of @trustflow/plugin-fs.
  const provider: FdProvider = (add) => {
    for (const node of live.nodes()) {
      const fd = node.resource?._handle?.fd;
      if (typeof fd === 'number' && fd >= 0) add(fd);
    }
  };
  fdProviders().add(provider);

  return () => {
    fdProviders().delete(provider);
    const details = { details: { [ATTR_CAUSE]: 'plugin-disabled' } };
    for (const { resource, handle } of live.drain()) {
      if (resource !== undefined) resource[kHandle] = undefined;
      handle?.release(details);
    }
  };
}

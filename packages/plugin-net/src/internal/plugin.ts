import { createRequire } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  type Attributes,
  type CreationSite,
  definePlugin,
  type PluginContext,
  type ReleaseOptions,
  type ResourceHandle,
  type TrustflowPlugin,
} from '@trustflow/core';
import type { NetPluginOptions } from '../types.js';
import { type FdProvider, fdProviders } from './registry.js';
import { LiveSet, likeOriginal } from './wrap.js';

/**
 * Folders whose frames are instrumentation, cut from creation stacks: this package's and
 * @trustflow/core's src/ and dist/ (both, since with source maps a frame of dist/ is shown at
 * its source in src/). Not the package roots: their test/ folders are user code.
 */
const INTERNAL_PATHS = internalPaths();

function internalPaths(): string[] {
  const roots = [new URL('../../', import.meta.url)];
  try {
    const core = createRequire(import.meta.url).resolve('@trustflow/core');
    roots.push(new URL('../', pathToFileURL(core)));
  } catch {
    // core resolves for us in every real install; the cut is a nicety
  }
  return roots.flatMap((root) => [
    fileURLToPath(new URL('src/', root)),
    fileURLToPath(new URL('dist/', root)),
  ]);
}

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

/** What the plugin keeps per tracked socket or server. */
interface Info {
  handle: ResourceHandle;
  ref: WeakRef<object>;
  timedOut: boolean;
  readonly released: boolean;
}

interface ServerInfo {
  /** The listening server's handle; undefined when it started listening before the plugin. */
  handle: ResourceHandle | undefined;
  /** The listen() call's site, shared by the sockets the server accepts. */
  site: CreationSite | undefined;
  socketAttributes: Attributes;
}

function info(handle: ResourceHandle, resource: object): Info {
  return {
    handle,
    ref: new WeakRef(resource),
    timedOut: false,
    get released() {
      return this.handle.released;
    },
  };
}

const attributeCache = new Map<string, Attributes>();
function attributesFor(role: Role | undefined, secure: boolean, transport: Transport): Attributes {
  const key = `${role}|${secure}|${transport}`;
  let attributes = attributeCache.get(key);
  if (attributes === undefined) {
    const fresh: Attributes = { [ATTR_TRANSPORT]: transport, [ATTR_TLS]: secure };
    if (role !== undefined) fresh[ATTR_ROLE] = role;
    attributes = Object.freeze(fresh);
    attributeCache.set(key, attributes);
  }
  return attributes;
}

const pipeTransport: Transport = process.platform === 'win32' ? 'pipe' : 'unix';

function clientTransport(socket: SocketLike): Transport {
  if (socket._tlsOptions !== undefined) return socket._tlsOptions.pipe ? pipeTransport : 'tcp';
  return socket._handle?.constructor?.name === 'Pipe' ? pipeTransport : 'tcp';
}

// Probes, inspectors and closers receive the resource; they never capture it.
const socketActivity = (s: SocketLike) => s.bytesRead + s.bytesWritten;
const serverActivity = (s: ServerLike) => s._connections ?? 0;
const destroySocket = (s: SocketLike) => s.destroy();
const closeServer = (s: ServerLike) => void s.close();
/** Byte counts so far, and for a socket of an http(s) Agent whether it sits idle in the pool. */
function inspectSocket(s: SocketLike): Attributes {
  const attributes: Attributes = {
    [ATTR_BYTES_READ]: s.bytesRead,
    [ATTR_BYTES_WRITTEN]: s.bytesWritten,
  };
  // An Agent installs a 'free' listener on its sockets; a free socket has no request attached.
  if (s.listenerCount('free') > 0) attributes[ATTR_POOL_STATE] = s._httpMessage ? 'in-use' : 'idle';
  return attributes;
}

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
    internalPaths: INTERNAL_PATHS,
    setup: (ctx) => setup(ctx, options),
  });
}

function setup(ctx: PluginContext, options: Required<NetPluginOptions>): () => void {
  const { tracker } = ctx;
  const sockets = new WeakMap<object, Info>();
  const servers = new WeakMap<object, ServerInfo>();
  const live = new LiveSet<Info>();
  const listening = new WeakMap<object, CreationSite | undefined>();
  /** Client sockets (and their sites) waiting for the microtask that tracks them. */
  let pending: unknown[] = [];

  function onClose(this: SocketLike, hadError: unknown): void {
    try {
      socketClosed(this, hadError);
    } catch (error) {
      ctx.reportError('socket close', error);
    }
  }

  function socketClosed(socket: SocketLike, hadError: unknown): void {
    const entry = sockets.get(socket);
    if (entry === undefined) return;
    sockets.delete(socket);
    live.delete(entry);
    if (entry.handle.released) return;
    const errored = socket.errored ?? undefined;
    const cause =
      hadError === true || errored !== undefined
        ? 'error'
        : socket.readableEnded
          ? 'end'
          : entry.timedOut
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
    entry.handle.release(release);
  }

  function socketTimedOut(this: SocketLike): void {
    const entry = sockets.get(this);
    if (entry !== undefined) entry.timedOut = true;
  }

  function onConnect(this: SocketLike): void {
    try {
      const entry = sockets.get(this);
      if (entry !== undefined && !entry.handle.released) {
        entry.handle.annotate(addressDetails(this, {}));
      }
    } catch (error) {
      ctx.reportError('socket connect', error);
    }
  }

  function trackSocket(
    socket: SocketLike,
    attributes: Attributes,
    site: CreationSite | undefined,
    details: Attributes | undefined,
  ): void {
    const handle = tracker.track(socket, {
      kind: KIND_SOCKET,
      attributes,
      close: destroySocket,
      activity: socketActivity,
      inspect: inspectSocket,
      details,
      site,
    });
    const entry = info(handle, socket);
    sockets.set(socket, entry);
    live.add(entry);
    socket.on('close', onClose);
    socket.on('timeout', socketTimedOut);
  }

  // Client sockets are published at the start of connect(), before connect() has created the
  // handle that tells TCP from a Unix socket: they are tracked in a microtask, with the site
  // taken at connect().
  const drain = () => {
    const batch = pending;
    pending = [];
    if (!ctx.active) return;
    for (let i = 0; i < batch.length; i += 2) {
      const socket = batch[i] as SocketLike;
      try {
        if (socket.destroyed) continue;
        const secure = socket.encrypted === true || socket._tlsOptions !== undefined;
        trackSocket(
          socket,
          attributesFor('client', secure, clientTransport(socket)),
          batch[i + 1] as CreationSite | undefined,
          undefined,
        );
        if (options.addresses) socket.on('connect', onConnect);
      } catch (error) {
        ctx.reportError('client socket', error);
      }
    }
  };

  ctx.subscribe('net.client.socket', (message) => {
    const socket = (message as { socket?: SocketLike }).socket;
    if (!ctx.active || socket === undefined) return;
    const current = sockets.get(socket);
    if (current !== undefined && !current.handle.released) return;
    if (pending.length === 0) queueMicrotask(drain);
    pending.push(socket, tracker.captureSite(KIND_SOCKET));
  });

  function serverInfo(server: ServerLike): ServerInfo {
    let entry = servers.get(server);
    if (entry === undefined) {
      const transport = server._pipeName !== undefined ? pipeTransport : 'tcp';
      const secure = server instanceof tls.Server;
      entry = {
        handle: undefined,
        site: undefined,
        socketAttributes: attributesFor('server', secure, transport),
      };
      servers.set(server, entry);
    }
    return entry;
  }

  ctx.subscribe('net.server.socket', (message) => {
    const socket = (message as { socket?: SocketLike }).socket;
    if (!ctx.active || socket === undefined) return;
    const server = (socket.server ?? socket._server) as ServerLike | undefined;
    const owner = server ? serverInfo(server) : undefined;
    owner?.handle?.touch();
    if (socket.destroyed || sockets.has(socket)) return;
    trackSocket(
      socket,
      owner?.socketAttributes ?? attributesFor('server', false, 'tcp'),
      owner?.site,
      options.addresses ? addressDetails(socket, {}) : undefined,
    );
  });

  // server.listen(): the site is taken at the call (asyncStart, inside listen()); the server is
  // tracked once it listens (asyncEnd: at once, or after an address lookup).
  ctx.subscribe('tracing:net.server.listen:asyncStart', (message) => {
    const server = (message as { server?: object }).server;
    if (!ctx.active || server === undefined) return;
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
    entry.site = site;
    entry.handle = tracker.track(server, {
      kind: KIND_SERVER,
      attributes: attributesFor(
        undefined,
        server instanceof tls.Server,
        server._pipeName !== undefined ? pipeTransport : 'tcp',
      ),
      close: closeServer,
      activity: serverActivity,
      details,
      site,
    });
    live.add(info(entry.handle, server));
  });

  // A server stops listening at close(); its 'close' event waits for every connection to end.
  ctx.patch(net.Server.prototype as unknown as Record<string, Fn>, 'close', (original) =>
    likeOriginal(original, function (this: object, ...args: unknown[]) {
      if (ctx.active) {
        try {
          const handle = servers.get(this)?.handle;
          if (handle !== undefined && !handle.released) {
            handle.release({ details: { [ATTR_CAUSE]: 'close' } });
          }
        } catch (error) {
          ctx.reportError('Server.close', error);
        }
      }
      return Reflect.apply(original, this, args);
    }),
  );

  // Descriptors of live sockets and servers, for the fd inventory of @trustflow/plugin-fs.
  const provider: FdProvider = (add) => {
    for (const entry of live.values()) {
      if (entry.handle.released) continue;
      const fd = (entry.ref.deref() as { _handle?: { fd?: number } | null } | undefined)?._handle
        ?.fd;
      if (typeof fd === 'number' && fd >= 0) add(fd);
    }
  };
  fdProviders().add(provider);

  return () => {
    fdProviders().delete(provider);
    pending = [];
    const details = { details: { [ATTR_CAUSE]: 'plugin-disabled' } };
    for (const entry of live.drain()) entry.handle.release(details);
  };
}

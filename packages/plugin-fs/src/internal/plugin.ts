import type * as Fsp from 'node:fs/promises';
import { resolve } from 'node:path';
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
import type { FdInventory, FdType, FsPluginOptions } from '../types.js';
import { fdPosition, hasProcFd, isOpenFd, listOpenFds, type OpenFd } from './inventory.js';
import { fdProviders } from './registry.js';
import { FdTable, pathString } from './wrap.js';

// the module object itself, whose functions are wrapped (a default import would be a bundler's
// copy of it, built property by property at load)
const fs = process.getBuiltinModule('node:fs') as typeof import('node:fs');

export const KIND_FD = 'fs.fd';
export const KIND_FILEHANDLE = 'fs.filehandle';
export const KIND_STREAM = 'fs.stream';
export const KIND_DIR = 'fs.dir';
export const KIND_WATCHER = 'fs.watcher';

const ATTR_PATH = 'file.path';
const ATTR_FD = 'trustflow.fs.fd';
const ATTR_CAUSE = 'trustflow.close.cause';
const ATTR_BYTES_READ = 'trustflow.fs.bytes_read';
const ATTR_BYTES_WRITTEN = 'trustflow.fs.bytes_written';
const ATTR_STREAM_DIRECTION = 'trustflow.fs.stream.direction';
const ATTR_WATCHER_TYPE = 'trustflow.fs.watcher.type';
const ATTR_FD_TYPE = 'trustflow.fd.type';

/**
 * `{ [ATTR_PATH]: path, [ATTR_FD]: fd }` for the hot paths, with plain keys: V8 builds an object
 * literal with computed keys through a runtime call per key.
 */
const pathAndFd = (path: string, fd: number): Attributes => ({
  'file.path': path,
  'trustflow.fs.fd': fd,
});

const READ_STREAM: Attributes = Object.freeze({ [ATTR_STREAM_DIRECTION]: 'read' });
const WRITE_STREAM: Attributes = Object.freeze({ [ATTR_STREAM_DIRECTION]: 'write' });
const WATCH: Attributes = Object.freeze({ [ATTR_WATCHER_TYPE]: 'watch' });
const WATCH_FILE: Attributes = Object.freeze({ [ATTR_WATCHER_TYPE]: 'watchFile' });
const FD_TYPES: readonly FdType[] = ['file', 'socket', 'pipe', 'anon_inode', 'other'];

type Fn = (...args: any[]) => any;

/** Node's warning for a FileHandle collected without close(), followed by the number. */
const GC_CLOSE_PREFIX = 'Closing file descriptor ';

/** Who owns an open descriptor number: a tracked fd, FileHandle or stream. */
class Owner {
  /** A stream's node in the plugin's live list. */
  node: LiveNode<undefined> | undefined = undefined;
  constructor(
    public handle: ResourceHandle,
    /** The descriptor number; -1 until a stream has opened its file. */
    public fd: number,
    /** The object resource (FileHandle, stream); undefined for a numeric fd. */
    readonly ref: WeakRef<object> | undefined,
    readonly path: string,
    /** Set for streams: their release carries byte counts. */
    readonly stream: 'read' | 'write' | undefined,
  ) {}
}

interface StreamLike {
  fd?: unknown;
  path?: unknown;
  autoClose?: boolean;
  bytesRead?: number;
  bytesWritten?: number;
  errored?: unknown;
  destroy(): unknown;
  on(event: string, listener: Fn): unknown;
}

interface EmitterLike {
  on(event: string, listener: Fn): unknown;
  listenerCount(event: string): number;
}

const NO_HANDLE: ResourceHandle = Object.freeze({
  id: 0,
  kind: 'none',
  released: true,
  recording: false,
  release() {},
  touch() {},
  annotate() {},
  [Symbol.dispose]() {},
});

/** The owner of a stream the tracker declined: its open passes through untracked. */
const DECLINED = new Owner(NO_HANDLE, -1, undefined, '', 'read');

function readOptions(init: FsPluginOptions | undefined): Required<FsPluginOptions> {
  if (init !== undefined && (typeof init !== 'object' || init === null)) {
    throw new TypeError(`fsPlugin: options must be an object, got ${String(init)}`);
  }
  const inventory = init?.inventory;
  if (inventory !== undefined && typeof inventory !== 'boolean') {
    throw new TypeError(`fsPlugin: option inventory must be a boolean, got ${String(inventory)}`);
  }
  const limit = init?.inventoryLimit ?? 50;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0) {
    throw new TypeError(
      `fsPlugin: option inventoryLimit must be a non-negative integer, got ${String(limit)}`,
    );
  }
  return { inventory: inventory ?? true, inventoryLimit: limit };
}

// Activity probes, inspectors and closers receive the resource; they never capture it.
const fdActivity = (fd: number) => fdPosition(fd);
const fileHandleActivity = (fh: { fd: number }) => fdPosition(fh.fd);
const bytesReadActivity = (s: StreamLike) => s.bytesRead ?? 0;
const bytesWrittenActivity = (s: StreamLike) => s.bytesWritten ?? 0;
/** A watcher with listeners is in use (its probe changes every scan); one without is idle. */
const listenedActivity = (w: EmitterLike) =>
  w.listenerCount('change') > 0 ? performance.now() : 0;
const closeFd = (fd: number) => fs.closeSync(fd);
const closeFileHandle = (fh: { close(): Promise<void> }) => fh.close();
const ignoreRejection = () => {};
const destroyStream = (s: StreamLike) => s.destroy();
const closeDir = (d: { close(): Promise<void> }) => d.close();
const closeWatcher = (w: { close(): void }) => w.close();

/**
 * Tracks file descriptors (`fs.fd`), FileHandles (`fs.filehandle`), read and write streams
 * (`fs.stream`), Dirs (`fs.dir`) and watchers (`fs.watcher`), and on Linux takes an inventory of
 * the descriptors nobody tracks. Bad options throw a TypeError naming the option.
 */
export function fsPlugin(init?: FsPluginOptions): TrustflowPlugin {
  const options = readOptions(init);
  return definePlugin({
    name: 'fs',
    module: import.meta.url,
    setup: (ctx) => setup(ctx, options),
  });
}

function setup(ctx: PluginContext, options: Required<FsPluginOptions>): () => void {
  const { tracker } = ctx;
  // The descriptors open now (for the inventory) are listed first: a listing that works also
  // tells that /proc/self/fd is there, without reading the directory twice.
  const openAtEnable = options.inventory ? listOpenFds() : null;
  const procfs = openAtEnable !== null || hasProcFd();
  const owners = new FdTable<Owner>();
  /** Streams, Dirs and watchers (no descriptor number to find them by), for disable. */
  const live = new LiveList<undefined>();
  const streamOwners = new WeakMap<object, Owner>();
  const dirs = new WeakMap<
    object,
    { handle: ResourceHandle; path: string; node: LiveNode<undefined> }
  >();
  const dirPaths = new Map<string, number>();
  const watchers = new WeakMap<
    object,
    { handle: ResourceHandle; inotify: boolean; node: LiveNode<undefined> }
  >();
  let inotifyUsers = 0;
  /** The stream whose _construct is running: its open is the stream's, not a new fs.fd. */
  let constructing: Owner | undefined;
  const fdActivityProbe = procfs ? fdActivity : undefined;
  const fileHandleActivityProbe = procfs ? fileHandleActivity : undefined;

  const safely = (where: string, fn: () => void) => {
    try {
      fn();
    } catch (error) {
      ctx.reportError(where, error);
    }
  };

  // --- descriptor ownership -------------------------------------------------------------------

  function releaseOwner(owner: Owner, cause: string | undefined): void {
    if (owner.stream !== undefined) {
      // byte counts and the error only go on the span
      owner.handle.release(
        owner.handle.recording
          ? streamRelease(owner.ref?.deref() as StreamLike | undefined, cause)
          : undefined,
      );
    } else {
      owner.handle.release(cause ? { details: { [ATTR_CAUSE]: cause } } : undefined);
    }
    if (owner.node !== undefined) live.remove(owner.node);
  }

  /**
   * The descriptor of `owner` was closed by a path we did not see. A collected stream is left to
   * the tracker's own watch; a collected FileHandle (tracked without it, see trackFileHandle) is
   * reported gc-unreleased here.
   */
  function settle(owner: Owner, cause: string): void {
    if (owners.get(owner.fd) === owner) owners.delete(owner.fd);
    if (owner.handle.released) return;
    if (owner.ref !== undefined && owner.ref.deref() === undefined) {
      if (owner.stream === undefined) owner.handle.release({ collected: true });
      return;
    }
    releaseOwner(owner, cause);
  }

  /** A new descriptor `fd` belongs to `owner`; a live entry for the same number is stale. */
  function claim(fd: number, owner: Owner): void {
    const previous = owners.get(fd);
    if (previous !== undefined && previous !== owner) settle(previous, 'fd-reused');
    owner.fd = fd;
    owners.set(fd, owner);
  }

  /** fs.close / fs.closeSync of `fd`: whoever owned it is released, before the call runs. */
  function releaseFd(fd: unknown): void {
    if (typeof fd !== 'number') return;
    const owner = owners.get(fd);
    if (owner === undefined) return;
    owners.delete(fd);
    if (!owner.handle.released) releaseOwner(owner, undefined);
  }

  /**
   * fs.fd is the hot path (an open and a close are a few microseconds): one shared options
   * object, no details. Reports get the path from `inspect` (it looks the fd up here); a span
   * that records gets it through `annotate`.
   */
  const inspectFd = (fd: number): Attributes => {
    const owner = owners.get(fd);
    return owner ? { [ATTR_PATH]: owner.path, [ATTR_FD]: fd } : { [ATTR_FD]: fd };
  };
  const fdSpec = {
    kind: KIND_FD,
    gc: false,
    close: closeFd,
    activity: fdActivityProbe,
    inspect: inspectFd,
  } satisfies TrackOptions<number>;

  function trackFd(fd: unknown, path: unknown, site: CreationSite | undefined): void {
    if (typeof fd !== 'number') return;
    const p = pathString(path);
    const handle = tracker.track(fd, site === undefined ? fdSpec : { ...fdSpec, site });
    if (handle.released) return; // declined: inside tracker.untracked(), or shut down
    if (handle.recording) handle.annotate(pathAndFd(p, fd));
    claim(fd, new Owner(handle, fd, undefined, p, undefined));
  }

  function releaseFileHandle(owner: Owner): void {
    try {
      if (owners.get(owner.fd) === owner) owners.delete(owner.fd);
      if (!owner.handle.released) releaseOwner(owner, undefined);
    } catch (error) {
      ctx.reportError('FileHandle close', error);
    }
  }

  /**
   * Releases `owner` when its FileHandle is closed. `close` is an own property of every FileHandle
   * (a class field), so it is wrapped on the instance, by a function that holds the owner: cheaper
   * than a 'close' listener and a lookup of the FileHandle's owner. Where it cannot be replaced,
   * the 'close' event (emitted by close()) does it.
   */
  function watchClose(handleObject: { close?: unknown } & EmitterLike, owner: Owner): void {
    const original = handleObject.close;
    if (typeof original === 'function') {
      const wrapper = function close(this: unknown, ...args: unknown[]) {
        releaseFileHandle(owner);
        return Reflect.apply(original, this, args);
      };
      try {
        handleObject.close = wrapper;
      } catch {
        // read-only: the listener below
      }
      if (handleObject.close === wrapper) return;
    }
    handleObject.on('close', () => releaseFileHandle(owner));
  }

  /**
   * Node closes the descriptor of a FileHandle collected without close() and warns with its
   * number ("Closing file descriptor N on garbage collection"). That is how a dropped FileHandle
   * is found: a FinalizationRegistry entry per FileHandle would cost every open a good part of
   * its time in garbage collection. The warning still prints as before (a listener does not
   * change that, and --no-warnings only silences the printing, not the event).
   */
  function onWarning(warning: unknown): void {
    if (!ctx.active) return;
    const message = (warning as { message?: unknown } | null)?.message;
    if (typeof message !== 'string' || !message.startsWith(GC_CLOSE_PREFIX)) return;
    safely('FileHandle collected', () => {
      const owner = owners.get(Number.parseInt(message.slice(GC_CLOSE_PREFIX.length), 10));
      // A FileHandle that is gone; if the number was reused meanwhile, its owner was settled
      // when the new one claimed it, and this one is alive.
      const gone = owner?.ref !== undefined && owner.ref.deref() === undefined;
      if (gone && owner.stream === undefined) settle(owner, 'collected');
    });
  }
  process.on('warning', onWarning);

  function trackFileHandle(fh: unknown, path: unknown, site: CreationSite | undefined): void {
    const handleObject = fh as { fd: number; close?: unknown } & EmitterLike;
    if (typeof handleObject?.fd !== 'number') return;
    // tracked already (the same FileHandle through two wrapped entry points)
    if (owners.get(handleObject.fd)?.ref?.deref() === handleObject) return;
    const p = pathString(path);
    const owner = new Owner(NO_HANDLE, handleObject.fd, new WeakRef(handleObject), p, undefined);
    owner.handle = tracker.track(handleObject, {
      kind: KIND_FILEHANDLE,
      // collection is learned from Node's warning (onWarning) or the descriptor's reuse (settle)
      gc: false,
      close: closeFileHandle as never,
      activity: fileHandleActivityProbe as never,
      details: pathAndFd(p, handleObject.fd),
      site,
    });
    if (owner.handle.released) return; // declined: ignored, untracked, shut down
    // (not in `live`: it is in `owners` by its number until it is released, which disable drains)
    claim(handleObject.fd, owner);
    watchClose(handleObject, owner);
  }

  // --- streams --------------------------------------------------------------------------------

  function streamRelease(stream: StreamLike | undefined, cause: string | undefined) {
    if (stream === undefined) return cause ? { details: { [ATTR_CAUSE]: cause } } : undefined;
    const details: Attributes = {};
    if (typeof stream.bytesRead === 'number') details[ATTR_BYTES_READ] = stream.bytesRead;
    if (typeof stream.bytesWritten === 'number') details[ATTR_BYTES_WRITTEN] = stream.bytesWritten;
    if (cause) details[ATTR_CAUSE] = cause;
    const release: ReleaseOptions = { details };
    if (stream.errored != null) release.error = stream.errored;
    return release;
  }

  function finishStream(this: object): void {
    try {
      const owner = streamOwners.get(this);
      if (owner === undefined) return;
      streamOwners.delete(this);
      if (owners.get(owner.fd) === owner) owners.delete(owner.fd);
      if (!owner.handle.released) releaseOwner(owner, undefined);
    } catch (error) {
      ctx.reportError('stream close', error);
    }
  }

  function trackStream(
    stream: StreamLike,
    direction: 'read' | 'write',
    path: unknown,
    streamOptions: unknown,
  ): void {
    if (streamOwners.has(stream)) return;
    // A stream over a FileHandle: the FileHandle is the resource (and closes through it).
    const given = (streamOptions as { fd?: unknown } | null | undefined)?.fd;
    if (given !== null && typeof given === 'object') return;
    const fd = typeof stream.fd === 'number' ? stream.fd : -1;
    const previous = fd >= 0 ? owners.get(fd) : undefined;
    const p = fd >= 0 ? (previous?.path ?? '') : pathString(stream.path ?? path);
    const owner = new Owner(NO_HANDLE, -1, new WeakRef(stream), p, direction);
    const details: Attributes = { [ATTR_PATH]: p };
    if (fd >= 0) details[ATTR_FD] = fd;
    owner.handle = tracker.track(stream, {
      kind: KIND_STREAM,
      attributes: direction === 'read' ? READ_STREAM : WRITE_STREAM,
      close: destroyStream,
      activity: direction === 'read' ? bytesReadActivity : bytesWrittenActivity,
      details,
    });
    if (owner.handle.released) {
      // declined (inside tracker.untracked()): its own open, a tick later, is not tracked either
      streamOwners.set(stream, DECLINED);
      return;
    }
    streamOwners.set(stream, owner);
    owner.node = live.add(undefined, owner.handle);
    stream.on('close', finishStream);
    if (fd < 0) return;
    if (stream.autoClose !== false) {
      // The stream closes this descriptor now: it takes the fd over from whoever tracked it.
      if (previous !== undefined) {
        owners.delete(fd);
        if (!previous.handle.released) releaseOwner(previous, 'transferred-to-stream');
      }
      claim(fd, owner);
    } else {
      // The stream does not own the descriptor and holds nothing once it is done.
      stream.on(direction === 'read' ? 'end' : 'finish', finishStream);
    }
  }

  // --- Dirs and watchers ------------------------------------------------------------------------

  function trackDir(dir: unknown, path: unknown, site: CreationSite | undefined): void {
    if (dir === null || typeof dir !== 'object' || dirs.has(dir)) return;
    const p = pathString((dir as { path?: unknown }).path ?? path);
    const handle = tracker.track(dir as { close(): Promise<void> }, {
      kind: KIND_DIR,
      close: closeDir,
      details: { [ATTR_PATH]: p },
      site,
    });
    if (handle.released) return;
    const resolved = resolve(p);
    dirs.set(dir, { handle, path: resolved, node: live.add(undefined, handle) });
    dirPaths.set(resolved, (dirPaths.get(resolved) ?? 0) + 1);
  }

  function releaseDir(dir: unknown): void {
    if (dir === null || typeof dir !== 'object') return;
    const info = dirs.get(dir);
    if (info === undefined) return;
    dirs.delete(dir);
    const count = (dirPaths.get(info.path) ?? 1) - 1;
    if (count > 0) dirPaths.set(info.path, count);
    else dirPaths.delete(info.path);
    live.remove(info.node);
    info.handle.release();
  }

  function releaseWatcher(watcher: object): void {
    const info = watchers.get(watcher);
    if (info === undefined) return;
    watchers.delete(watcher);
    live.remove(info.node);
    if (!info.handle.released && info.inotify) inotifyUsers--;
    info.handle.release();
  }

  function onWatcherClose(this: object): void {
    safely('watcher close', () => releaseWatcher(this));
  }

  /**
   * FSWatcher.close() and StatWatcher.stop() emit their event on the next tick: their prototypes
   * (not exported by node:fs) are patched when the first watcher is seen, so that the release
   * happens at the call. The events stay as a fallback for watchers closed on an error.
   */
  const patchedWatcherProtos = new Set<object>();
  function patchWatcherPrototype(watcher: object, key: 'close' | 'stop'): void {
    const proto = Object.getPrototypeOf(watcher) as Record<string, Fn> | null;
    if (proto === null || patchedWatcherProtos.has(proto) || typeof proto[key] !== 'function')
      return;
    patchedWatcherProtos.add(proto);
    ctx.patch(
      proto,
      key,
      (original) =>
        function (this: object, ...args: unknown[]) {
          if (ctx.active) safely(`watcher.${key}`, () => releaseWatcher(this));
          return Reflect.apply(original, this, args);
        },
    );
  }

  function trackWatcher(watcher: unknown, type: 'watch' | 'watchFile', path: unknown): void {
    if (watcher === null || typeof watcher !== 'object' || watchers.has(watcher)) return;
    const p = pathString(path);
    const handle = tracker.track(watcher as EmitterLike & { close(): void }, {
      kind: KIND_WATCHER,
      attributes: type === 'watch' ? WATCH : WATCH_FILE,
      activity: listenedActivity,
      // a StatWatcher is stopped through unwatchFile (which also forgets it); the path is a string
      close: type === 'watch' ? closeWatcher : () => fs.unwatchFile(p),
      details: { [ATTR_PATH]: p },
    });
    if (handle.released) return;
    watchers.set(watcher, { handle, inotify: type === 'watch', node: live.add(undefined, handle) });
    if (type === 'watch') inotifyUsers++;
    (watcher as EmitterLike).on(type === 'watch' ? 'close' : 'stop', onWatcherClose);
    patchWatcherPrototype(watcher, type === 'watch' ? 'close' : 'stop');
  }

  function captureSite(kind: string): CreationSite | undefined {
    try {
      return tracker.captureSite(kind);
    } catch (error) {
      ctx.reportError('captureSite', error);
      return undefined;
    }
  }

  // --- patches ----------------------------------------------------------------------------------

  /** A function returning a resource synchronously: track it after the original returns. */
  function patchSync(
    target: object,
    key: string,
    after: (result: any, args: unknown[]) => void,
    before?: () => void,
  ) {
    ctx.patch(
      target as Record<string, Fn>,
      key,
      (original) =>
        function (this: unknown, ...args: unknown[]) {
          if (before !== undefined && ctx.active) safely(key, before);
          const result = Reflect.apply(original, this, args);
          if (ctx.active) {
            try {
              after(result, args);
            } catch (error) {
              ctx.reportError(key, error);
            }
          }
          return result;
        },
    );
  }

  /**
   * A callback API: the site is taken when it is called, the resource tracked when the callback
   * gets it. The callback gets the same arguments and `this` as without the plugin.
   */
  function patchCallback(
    target: object,
    key: string,
    kind: string,
    onResult: (result: unknown, path: unknown, site: CreationSite | undefined) => void,
  ) {
    ctx.patch(
      target as Record<string, Fn>,
      key,
      (original) =>
        function (this: unknown, ...args: unknown[]) {
          const n = args.length;
          const callback = args[n - 1];
          if (!ctx.active || typeof callback !== 'function') {
            return Reflect.apply(original, this, args);
          }
          const path = args[0];
          const stream = key === 'open' ? constructing : undefined;
          constructing = undefined;
          if (stream === DECLINED) return Reflect.apply(original, this, args);
          const site = stream ? undefined : captureSite(kind);
          args[n - 1] = function (this: unknown, ...results: unknown[]) {
            const [error, result] = results;
            if (error == null && ctx.active) {
              try {
                if (stream) {
                  if (typeof result === 'number' && !stream.handle.released) claim(result, stream);
                } else {
                  onResult(result, path, site);
                }
              } catch (caught) {
                ctx.reportError(key, caught);
              }
            }
            return Reflect.apply(callback, this, results);
          };
          return Reflect.apply(original, this, args);
        },
    );
  }

  /**
   * A promise API: same as a callback API, on the fulfilled value. The caller gets the original
   * promise: the resource is tracked by a reaction registered before the wrapper returns, which
   * runs before any reaction of the caller's. A chained promise returned instead would cost one
   * more promise resolved with the resource (and V8's lookup of `then` on it).
   */
  function patchPromise(
    target: object,
    key: string,
    kind: string,
    onResult: (result: unknown, path: unknown, site: CreationSite | undefined) => void,
  ) {
    ctx.patch(
      target as Record<string, Fn>,
      key,
      (original) =>
        function (this: unknown, ...args: unknown[]) {
          const promise = Reflect.apply(original, this, args) as Promise<unknown>;
          if (!ctx.active || typeof promise?.then !== 'function') return promise;
          const site = captureSite(kind);
          // (a rejection is the caller's to handle, on the original promise)
          promise.then((result) => {
            if (!ctx.active) return;
            try {
              onResult(result, args[0], site);
            } catch (error) {
              ctx.reportError(key, error);
            }
          }, ignoreRejection);
          return promise;
        },
    );
  }

  /** fs.close / fs.closeSync: release first (the number may be reused as soon as it is closed). */
  function patchClose(key: 'close' | 'closeSync') {
    ctx.patch(
      fs as unknown as Record<string, Fn>,
      key,
      (original) =>
        function (this: unknown, ...args: unknown[]) {
          if (ctx.active) {
            try {
              releaseFd(args[0]);
            } catch (error) {
              ctx.reportError(key, error);
            }
          }
          return Reflect.apply(original, this, args);
        },
    );
  }

  // openSync is the hottest path: its own wrapper, with no extra closure call.
  ctx.patch(
    fs as unknown as Record<string, Fn>,
    'openSync',
    (original) =>
      function (this: unknown, ...args: unknown[]) {
        const fd = Reflect.apply(original, this, args);
        if (ctx.active) {
          try {
            trackFd(fd, args[0], undefined);
          } catch (error) {
            ctx.reportError('openSync', error);
          }
        }
        return fd;
      },
  );
  patchCallback(fs, 'open', KIND_FD, trackFd);
  patchClose('closeSync');
  patchClose('close');

  // The stream classes are patched at the first createReadStream/createWriteStream: reading
  // fs.ReadStream loads node:stream and node:fs/promises (about 2.5 ms of a preloaded program's
  // start-up), and only streams made by those two functions are tracked as streams.
  let streamsPatched = false;
  const patchStreams = () => {
    if (streamsPatched) return;
    streamsPatched = true;
    patchStreamClasses();
  };
  patchSync(
    fs,
    'createReadStream',
    (s, args) => trackStream(s, 'read', args[0], args[1]),
    patchStreams,
  );
  patchSync(
    fs,
    'createWriteStream',
    (s, args) => trackStream(s, 'write', args[0], args[1]),
    patchStreams,
  );
  function patchStreamClasses(): void {
    for (const Stream of [fs.ReadStream, fs.WriteStream]) {
      ctx.patch(
        Stream.prototype as unknown as Record<string, Fn>,
        '_construct',
        (original) =>
          function (this: object, ...args: unknown[]) {
            const owner = ctx.active ? streamOwners.get(this) : undefined;
            if (owner === undefined) return Reflect.apply(original, this, args);
            constructing = owner;
            try {
              return Reflect.apply(original, this, args);
            } finally {
              constructing = undefined;
            }
          },
      );
    }
  }

  patchSync(fs, 'opendirSync', (dir, args) => trackDir(dir, args[0], undefined));
  patchCallback(fs, 'opendir', KIND_DIR, trackDir);
  // node:fs/promises (FileHandles, promise opendir) is patched when the application first asks
  // for it: by require or import, by process.getBuiltinModule, or by reading fs.promises (a
  // getter of node:fs, wrapped until then). Nothing else hands out FileHandles.
  let promisesGetter: PropertyDescriptor | undefined;
  let promisesPatched = false;
  const patchPromises = () => {
    promisesPatched = true;
    restorePromisesGetter();
    const fsp = process.getBuiltinModule('node:fs/promises') as typeof Fsp;
    patchPromise(fsp, 'open', KIND_FILEHANDLE, trackFileHandle);
    patchPromise(fsp, 'opendir', KIND_DIR, trackDir);
  };
  function restorePromisesGetter(): void {
    const original = promisesGetter;
    promisesGetter = undefined;
    if (original !== undefined) Object.defineProperty(fs, 'promises', original);
  }
  // fs.promises loads the internal module, which is not the public fs/promises one
  const needPromises = ctx.whenLoaded(['fs/promises', 'internal/fs/promises'], patchPromises);
  const descriptor = Object.getOwnPropertyDescriptor(fs, 'promises');
  if (!promisesPatched && descriptor?.get && descriptor.configurable) {
    const get = descriptor.get;
    promisesGetter = descriptor;
    Object.defineProperty(fs, 'promises', {
      ...descriptor,
      get() {
        needPromises();
        return Reflect.apply(get, this, []);
      },
    });
    ctx.onDisable(restorePromisesGetter);
  } else {
    needPromises();
  }
  for (const key of ['close', 'closeSync'] as const) {
    ctx.patch(
      fs.Dir.prototype as unknown as Record<string, Fn>,
      key,
      (original) =>
        function (this: unknown, ...args: unknown[]) {
          if (ctx.active) safely(`Dir.${key}`, () => releaseDir(this));
          return Reflect.apply(original, this, args);
        },
    );
  }

  patchSync(fs, 'watch', (w, args) => trackWatcher(w, 'watch', args[0]));
  patchSync(fs, 'watchFile', (w, args) => trackWatcher(w, 'watchFile', args[0]));

  /** On disable: the tracker keeps nothing of ours. */
  function release(): void {
    process.off('warning', onWarning);
    const details = { details: { [ATTR_CAUSE]: 'plugin-disabled' } };
    for (const [, owner] of owners.entries()) owner.handle.release(details);
    owners.clear();
    for (const { handle } of live.drain()) handle?.release(details);
    dirPaths.clear();
    inotifyUsers = 0;
  }

  // --- fd inventory -----------------------------------------------------------------------------

  const providerFds = (): Set<number> => {
    const set = new Set<number>();
    const add = (fd: number) => void set.add(fd);
    for (const provider of fdProviders()) {
      try {
        provider(add);
      } catch (error) {
        ctx.reportError('fd provider', error);
      }
    }
    return set;
  };

  /**
   * Settles tracked descriptors that are no longer open, or now belong to a socket another
   * plugin tracks. `isOpen` must not rely on a directory listing alone: the listing's own
   * descriptor takes the lowest free number, which may be the one just closed elsewhere.
   */
  const reconcile = (isOpen: (fd: number) => boolean, foreign: Set<number>) => {
    for (const [fd, owner] of owners.entries()) {
      if (owner.handle.released) owners.delete(fd);
      else if (!isOpen(fd)) settle(owner, 'closed-elsewhere');
      else if (foreign.has(fd)) settle(owner, 'fd-reused');
    }
  };

  const reconcileNow = () =>
    safely('reconcile', () => {
      if (owners.size > 0) reconcile(isOpenFd, providerFds());
    });

  if (procfs) {
    // Reports and snapshots must not list a descriptor closed by an untracked path as open.
    for (const key of ['report', 'snapshot'] as const) {
      ctx.patch(
        tracker,
        key,
        (original) =>
          function (this: unknown, ...args: unknown[]) {
            if (ctx.active) reconcileNow();
            return Reflect.apply(original as Fn, this, args);
          },
      );
    }
  }

  const inventoryOn = options.inventory && procfs;
  if (!inventoryOn) return () => release();

  const atEnable = new Set((openAtEnable ?? []).map((f) => `${f.fd} ${f.target}`));

  const takeInventory = (): { all: OpenFd[]; untracked: OpenFd[] } | null => {
    const all = listOpenFds();
    if (!all) return null;
    const foreign = providerFds();
    const open = new Set(all.map((f) => f.fd));
    reconcile((fd) => open.has(fd), foreign);
    const untracked: OpenFd[] = [];
    for (const f of all) {
      if (owners.has(f.fd) || foreign.has(f.fd)) continue;
      if (f.type === 'file' && dirPaths.has(f.target)) continue;
      if (f.target === 'anon_inode:inotify' && inotifyUsers > 0) continue;
      untracked.push(f);
    }
    return { all, untracked };
  };

  const gauge = ctx.meter.createObservableGauge('trustflow.fd.untracked', {
    unit: '{file_descriptor}',
    description:
      'Open file descriptors that no Trustflow plugin tracks (from /proc/self/fd; stdio excluded), by type.',
  });
  const observe = (result: { observe(value: number, attributes: Attributes): void }) => {
    if (!ctx.active) return;
    const inventory = takeInventory();
    if (!inventory) return;
    const counts = countByType(inventory.untracked);
    for (const type of FD_TYPES) result.observe(counts[type], { [ATTR_FD_TYPE]: type });
  };
  const guardedObserve = ctx.guard('inventory metric', observe);
  gauge.addCallback(guardedObserve);

  const removeSection = tracker.addReportSection('fdInventory', (): FdInventory | null => {
    const inventory = takeInventory();
    if (!inventory) return null;
    const descriptors = inventory.untracked
      .map((f) => ({ ...f, openAtEnable: atEnable.has(`${f.fd} ${f.target}`) }))
      .sort((a, b) => Number(a.openAtEnable) - Number(b.openAtEnable) || a.fd - b.fd);
    return {
      open: inventory.all.length,
      tracked: inventory.all.length - inventory.untracked.length,
      untracked: countByType(inventory.untracked),
      descriptors: descriptors.slice(0, options.inventoryLimit),
      omitted: Math.max(0, descriptors.length - options.inventoryLimit),
    };
  });

  return () => {
    gauge.removeCallback(guardedObserve);
    removeSection();
    release();
  };
}

function countByType(fds: OpenFd[]): Record<FdType, number> {
  const counts: Record<FdType, number> = { file: 0, socket: 0, pipe: 0, anon_inode: 0, other: 0 };
  for (const f of fds) counts[f.type]++;
  return counts;
}

import { executionAsyncId } from 'node:async_hooks';
import type { LiveNode, TrackOptions, TrustflowPlugin } from '../types.js';
import { LiveList } from './live-list.js';
import { definePlugin } from './plugins.js';
import { kInternal, type Tracker } from './tracker.js';

// the module object itself, whose functions are wrapped (a default import would be a bundler's
// copy of it)
const timers = process.getBuiltinModule('node:timers') as typeof import('node:timers');

type Fn = (...args: any[]) => any;

/** The parts of a Node Timeout the source reads. */
interface TimerLike {
  hasRef(): boolean;
  /** Set by Node once the timer was cleared or fired for the last time. */
  _destroyed?: boolean;
}

interface EmitterLike {
  once(event: string, listener: () => void): unknown;
}

// A timer cleared or fired a moment ago no longer holds the event loop, whatever hasRef() says.
const inspectTimer = (t: TimerLike) => ({ hasRef: t._destroyed === true ? false : t.hasRef() });
// Handles are collected normally once closed, and a span per timer would be noise. The kinds are
// the async-hooks source's, so reports read the same whichever source tracked them.
const TIMER = { kind: 'timer', gc: false, span: false, inspect: inspectTimer } as const;
/** Cap on instrumentation timers followed at once (see `own()` below). */
const MAX_OWNED = 10_000;
const CHANNELS = [
  ['child_process', 'process', 'async.PROCESSWRAP', ['exit', 'close']],
  ['worker_threads', 'worker', 'async.WORKER', ['exit']],
  ['udp.socket', 'socket', 'async.UDPWRAP', ['close']],
] as const;

/**
 * Tracks timers (`setTimeout`, `setInterval`), child processes, worker threads and UDP sockets
 * without async_hooks: it wraps the timer functions (global and `node:timers`) and listens to
 * Node's `child_process`, `worker_threads` and `udp.socket` diagnostics channels. Unlike the
 * async-hooks source, nothing runs for the other async resources (every `process.nextTick`,
 * socket write, DNS lookup...), and it works the same on Node 22 and 24. Not covered: timers of
 * `node:timers/promises`, and the other handle types (signals, message ports, TTYs).
 */
export function createHandlesSource(): TrustflowPlugin {
  return definePlugin({
    name: 'handles',
    setup(ctx) {
      const { tracker } = ctx;
      // A tracked timer carries its handle (kept after release, so that refresh() can track it
      // again), an instrumentation timer its async id, under symbols of this instance: cheaper
      // than WeakMap entries, which cost the garbage collector more than the timers themselves.
      const kHandle = Symbol('trustflow.timer.handle');
      const kOwnId = Symbol('trustflow.timer.ownId');
      type Tagged = object & { [kHandle]?: LiveNode<undefined>; [kOwnId]?: number };
      /**
       * Timers whose number (`+timer`) was taken, by that number as a string: clearTimeout()
       * accepts it as a number or a string, as Node's own table (an object) does.
       */
      const byNumber = new Map<string, object>();
      const numberOf = new WeakMap<object, string>();

      // Instrumentation's own timers (made inside tracker.untracked(), or in the callback of one
      // of them: exporters re-arm theirs) are not the application's. Followed by async id, as
      // the async-hooks source follows every resource; an id leaves the set when its timer ends.
      const internal = (tracker as Partial<Record<typeof kInternal, Tracker>>)[kInternal];
      const ownedIds = internal?.ownedIds;
      const isOwnedNow = () =>
        internal !== undefined &&
        (internal.isQuiet || (ownedIds!.size !== 0 && ownedIds!.has(executionAsyncId())));
      const own = (timer: object) => {
        if (ownedIds!.size >= MAX_OWNED) return;
        const id = Number(timer);
        ownedIds!.add(id);
        (timer as Tagged)[kOwnId] = id;
      };

      /** Open resources of this source, released on disable (when nothing would release them). */
      // (the nodes hold handles only: the resources are held by Node while they are open)
      const live = new LiveList<undefined>();
      const end = (node: LiveNode<undefined> | undefined) => {
        if (node === undefined) return;
        const handle = node.handle;
        live.remove(node);
        if (handle !== undefined && !handle.released) handle.release();
      };
      /** Tracked once, and released since (refresh() re-tracks those). */
      const wasTracked = (timer: object) => {
        const node = (timer as Tagged)[kHandle];
        return node !== undefined && node.handle?.released !== false;
      };

      const trackTimer = (timer: object) => {
        const handle = tracker.track(timer as TimerLike, TIMER);
        if (handle.released) return;
        (timer as Tagged)[kHandle] = live.add(undefined, handle);
      };
      const disown = (timer: object) => {
        const id = (timer as Tagged)[kOwnId];
        if (id !== undefined) {
          (timer as Tagged)[kOwnId] = undefined;
          ownedIds!.delete(id);
        }
      };
      const releaseTimer = (timer: object) => {
        end((timer as Tagged)[kHandle]);
        disown(timer);
        if (byNumber.size !== 0) {
          const n = numberOf.get(timer);
          if (n !== undefined) byNumber.delete(n);
        }
      };
      const release = (timer: unknown) => {
        if (typeof timer === 'object' && timer !== null) releaseTimer(timer);
        else if (typeof timer === 'number' || typeof timer === 'string') {
          const found = byNumber.get(String(timer));
          if (found !== undefined) releaseTimer(found);
        }
      };

      const guarded = (what: string, fn: (timer: object) => void, timer: object) => {
        try {
          fn(timer);
        } catch (error) {
          ctx.reportError(what, error);
        }
      };

      // Timeout.prototype is not exported: taken from a timer made before anything is patched.
      const sample = tracker.untracked(() => timers.setTimeout(() => {}, 0));
      timers.clearTimeout(sample);
      const proto = Object.getPrototypeOf(sample) as Record<PropertyKey, Fn>;

      const factory = (repeat: boolean) => (original: Fn) =>
        function (this: unknown, ...args: unknown[]) {
          const callback = args[0];
          if (!ctx.active || typeof callback !== 'function') {
            return Reflect.apply(original, this, args);
          }
          let timer: object | undefined;
          if (!repeat) {
            // A timeout is done once its callback runs (unless refresh() re-arms it, see below).
            // An instrumentation timer stays owned while its callback runs (what it starts there
            // is instrumentation's too).
            args[0] = function (this: unknown, ...params: unknown[]) {
              if (timer === undefined) return Reflect.apply(callback, this, params);
              end((timer as Tagged)[kHandle]);
              if ((timer as Tagged)[kOwnId] === undefined) {
                return Reflect.apply(callback, this, params);
              }
              try {
                return Reflect.apply(callback, this, params);
              } finally {
                disown(timer);
              }
            };
          }
          const owned = isOwnedNow();
          timer = Reflect.apply(original, this, args) as object;
          if (typeof timer === 'object' && timer !== null) {
            guarded('setTimeout', owned ? own : trackTimer, timer);
          }
          return timer;
        };
      const clear = (original: Fn) =>
        function (this: unknown, ...args: unknown[]) {
          if (ctx.active) {
            try {
              release(args[0]);
            } catch (error) {
              ctx.reportError('clearTimeout', error);
            }
          }
          return Reflect.apply(original, this, args);
        };
      /** close() and [Symbol.dispose]: they clear through Node's own clearTimeout. */
      const clearThis = (original: Fn) =>
        function (this: object, ...args: unknown[]) {
          if (ctx.active) guarded('Timeout.close', releaseTimer, this);
          return Reflect.apply(original, this, args);
        };

      for (const target of new Set<object>([globalThis, timers])) {
        const t = target as Record<string, Fn>;
        ctx.patch(t, 'setTimeout', factory(false));
        ctx.patch(t, 'setInterval', factory(true));
        ctx.patch(t, 'clearTimeout', clear);
        ctx.patch(t, 'clearInterval', clear);
      }
      for (const key of ['close', Symbol.dispose] as const) {
        if (typeof proto[key] === 'function') ctx.patch(proto, key, clearThis);
      }
      // refresh() re-arms a timeout that fired: it is open again.
      if (typeof proto.refresh === 'function') {
        ctx.patch(
          proto,
          'refresh',
          (original) =>
            function (this: TimerLike & object, ...args: unknown[]) {
              const result = Reflect.apply(original, this, args);
              if (ctx.active && wasTracked(this) && this._destroyed === false) {
                guarded('Timeout.refresh', trackTimer, this);
              }
              return result;
            },
        );
      }
      // +timer hands out a number that clearTimeout() accepts.
      if (typeof proto[Symbol.toPrimitive] === 'function') {
        ctx.patch(
          proto,
          Symbol.toPrimitive,
          (original) =>
            function (this: object, ...args: unknown[]) {
              const n = Reflect.apply(original, this, args);
              if (ctx.active && (this as Tagged)[kHandle]?.handle?.released === false) {
                byNumber.set(String(n), this);
                numberOf.set(this, String(n));
              }
              return n;
            },
        );
      }

      // Child processes, workers, UDP sockets: published synchronously inside the creating call,
      // so the creation stack has the caller's line.
      for (const [channel, field, kind, endEvents] of CHANNELS) {
        const spec: TrackOptions<EmitterLike> = { kind, gc: false, span: false };
        ctx.subscribe(channel, (message) => {
          const resource = (message as Record<string, unknown>)[field] as EmitterLike | undefined;
          if (!ctx.active || typeof resource?.once !== 'function') return;
          const handle = tracker.track(resource, spec);
          if (handle.released) return;
          const node = live.add(undefined, handle);
          const ended = () => end(node);
          for (const event of endEvents) resource.once(event, ended);
        });
      }

      return () => {
        for (const { handle } of live.drain()) handle?.release();
        byNumber.clear();
      };
    },
  });
}

import { createHook } from 'node:async_hooks';
import type { Server } from 'node:net';
import type {
  AsyncHooksSourceOptions,
  Attributes,
  ResourceHandle,
  TrustflowPlugin,
} from '../types.js';
import { definePlugin } from './plugins.js';
import type { CapturedStack } from './stacks.js';
import { kInternal, type Tracker } from './tracker.js';

/**
 * Long-lived handle types. Never PROMISE, never short request wraps. Left out because their
 * destroy hook does not follow their close, so they would look open after it: the HTTP parser
 * types (HTTPINCOMINGMESSAGE, HTTPCLIENTREQUEST: pooled and reused across requests; the socket
 * underneath is the resource that leaks), FILEHANDLE and ZLIB (destroyed only when collected;
 * the fs plugin tracks FileHandles by their close). Pass `types` to add them.
 */
export const DEFAULT_ASYNC_TYPES: readonly string[] = [
  'Timeout',
  'TCPWRAP',
  'TCPSERVERWRAP',
  'PIPEWRAP',
  'PIPESERVERWRAP',
  'UDPWRAP',
  'TTYWRAP',
  'FSEVENTWRAP',
  'STATWATCHER',
  'PROCESSWRAP',
  'SIGNALWRAP',
  'WORKER',
  'MESSAGEPORT',
];

/** Cap on the async ids followed as instrumentation's own (see tracker.untracked()). */
const MAX_OWNED_IDS = 50_000;

let support: boolean | undefined;

/**
 * True when this Node supports `createHook({ trackPromises: false })`. Detected by behaviour, not
 * version: where the option exists, createHook reads it. (Not by provoking a validation error:
 * the first error a process creates costs a preloaded start-up several milliseconds.)
 */
export function asyncHooksAvoidPromises(): boolean {
  if (support === undefined) {
    let read = false;
    try {
      createHook({
        get trackPromises() {
          read = true;
          return false;
        },
      } as never);
    } catch {
      // Nothing to do: an unusable createHook means no support.
    }
    support = read;
  }
  return support;
}

interface HandleLike {
  hasRef?: () => boolean;
  /** Set by Node on a Timeout once it was cleared or fired for the last time. */
  _destroyed?: boolean;
}

// Handles from async_hooks are collected normally once closed, and a span per timer would be noise.
const SPEC_BASE = { gc: false, span: false } as const;

function inspectHandle(resource: HandleLike): Attributes | undefined {
  if (typeof resource.hasRef !== 'function') return undefined;
  // A timer cleared (or fired) just before a report is still tracked until its destroy hook is
  // delivered, a little later: it no longer holds the event loop, whatever hasRef() says.
  return { hasRef: resource._destroyed === true ? false : resource.hasRef() };
}

/**
 * Tracks long-lived async resources (timers, sockets, servers, watchers, child processes...) from
 * async_hooks, with the line that created them and whether they keep the event loop alive.
 */
export function createAsyncHooksSource(options: AsyncHooksSourceOptions = {}): TrustflowPlugin {
  const types = new Set(options.types ?? DEFAULT_ASYNC_TYPES);
  return definePlugin({
    name: 'async-hooks',
    setup(ctx) {
      if (!asyncHooksAvoidPromises() && !options.forceWithPromiseHooks) {
        ctx.diag.warn(
          'async-hooks source not enabled: this Node cannot create an async hook without promise hooks ' +
            '(createHook({ trackPromises: false }) is unsupported), which would slow await-heavy code ' +
            'several times. Use Node >= 24, or pass forceWithPromiseHooks: true to accept the cost.',
        );
        return;
      }
      // Create the stdio handles now, so they are not reported as resources of the application.
      void process.stdout;
      void process.stderr;
      const specs = new Map<string, object>();
      const specFor = (type: string) => {
        let spec = specs.get(type);
        if (!spec) {
          const kind = type === 'Timeout' ? 'timer' : `async.${type}`;
          spec = { ...SPEC_BASE, kind, inspect: inspectHandle };
          specs.set(type, spec);
        }
        return spec;
      };
      const handles = new Map<number, ResourceHandle>();
      const servers = new WeakMap<object, ResourceHandle>();
      // Instrumentation's own resources (see tracker.untracked()): created inside untracked(), or
      // triggered by one of them (a server's connections, a timer's callbacks...). Not tracked.
      const internal = (ctx.tracker as Partial<Record<typeof kInternal, Tracker>>)[kInternal];
      const owned = internal?.ownedIds;
      let busy = false;
      const hook = createHook({
        trackPromises: false,
        init(asyncId: number, type: string, trigger: number, resource: object) {
          if (busy) return;
          if (
            owned !== undefined &&
            (internal!.isQuiet || (owned.size !== 0 && owned.has(trigger)))
          ) {
            // Bounded like every map here: past the cap, descendants are simply not followed.
            if (owned.size < MAX_OWNED_IDS) owned.add(asyncId);
            return;
          }
          if (!types.has(type)) return;
          // A timer created unref'd is Node's own (socket and HTTP timeouts, re-created on every
          // request of a keep-alive connection): its owner is tracked already, and timers an
          // application creates start ref'd. Skipping them keeps request paths cheap.
          if (type === 'Timeout' && (resource as HandleLike).hasRef?.() === false) return;
          busy = true;
          try {
            const handle = ctx.tracker.track(resource, specFor(type) as never);
            handles.set(asyncId, handle);
            if (type === 'TCPSERVERWRAP' || type === 'PIPESERVERWRAP')
              servers.set(resource, handle);
          } catch (error) {
            ctx.reportError('async-hooks init', error);
          } finally {
            busy = false;
          }
        },
        destroy(asyncId: number) {
          if (owned !== undefined && owned.size !== 0 && owned.delete(asyncId)) return;
          const handle = handles.get(asyncId);
          if (handle === undefined) return;
          handles.delete(asyncId);
          handle.release();
        },
      } as Parameters<typeof createHook>[0]);
      hook.enable();
      attributeListens(ctx, servers);
      return () => {
        hook.disable();
        for (const handle of handles.values()) handle.release();
        handles.clear();
        owned?.clear();
      };
    },
  });
}

type ListenMessage = { server?: Server & { _handle?: object | null } };

/**
 * `server.listen(port, host)` creates its handle after an address lookup, in a callback with no
 * user frame on the stack. The listen tracing channel fires synchronously inside `listen()`
 * (asyncStart) and again once the handle exists (asyncEnd): the stack taken at the first is given
 * to the handle found at the second.
 */
function attributeListens(
  ctx: Parameters<Parameters<typeof definePlugin>[0]['setup']>[0],
  servers: WeakMap<object, ResourceHandle>,
): void {
  const tracker = (ctx.tracker as Partial<Record<typeof kInternal, Tracker>>)[kInternal];
  if (!tracker || tracker.stackMode === 'off') return;
  const pending = new WeakMap<object, CapturedStack>();
  const onStart = (message: unknown) => {
    const server = (message as ListenMessage).server;
    if (server) pending.set(server, tracker.stacks.capture(onStart));
  };
  const onEnd = (message: unknown) => {
    const server = (message as ListenMessage).server;
    const stack = server && pending.get(server);
    if (!server || !stack) return;
    pending.delete(server);
    const handle = server._handle ? servers.get(server._handle) : undefined;
    if (handle) tracker.attachStack(handle, stack);
  };
  ctx.subscribe('tracing:net.server.listen:asyncStart', onStart);
  ctx.subscribe('tracing:net.server.listen:asyncEnd', onEnd);
}

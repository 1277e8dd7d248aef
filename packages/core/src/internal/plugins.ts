import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { syncBuiltinESMExports } from 'node:module';
import { metrics, trace } from '@opentelemetry/api';
import type {
  PluginContext,
  PluginDefinition,
  PluginHostContext,
  ResourceTracker,
  TrustflowPlugin,
} from '../types.js';
import { whenBuiltinLoaded } from './builtins.js';
import { ErrorSink } from './errors.js';
import { codeFolders } from './stacks.js';
import { kInternal, type Tracker } from './tracker.js';

interface Patch {
  target: Record<PropertyKey, unknown>;
  key: PropertyKey;
  original: unknown;
  wrapped: unknown;
}

function errorSinkOf(tracker: ResourceTracker): ErrorSink {
  const internal = (tracker as Partial<Record<typeof kInternal, Tracker>>)[kInternal];
  return internal?.errors ?? new ErrorSink('@trustflow/core');
}

/**
 * Turns a plugin definition into a plugin with an idempotent `enable` and a `disable` that
 * restores every patch and channel subscription made through the context, in reverse order.
 */
export function definePlugin(definition: PluginDefinition): TrustflowPlugin {
  let teardown: (() => void) | undefined;

  const enable = (host: PluginHostContext): void => {
    if (teardown) return;
    const { tracker } = host;
    const sink = errorSinkOf(tracker);
    const name = definition.name;
    const patches: Patch[] = [];
    const cleanups: (() => void)[] = [];
    let active = true;
    let patchedBuiltins = false;
    let setUp = false;
    (tracker as Partial<Record<typeof kInternal, Tracker>>)[kInternal]?.stacks.addInternalPaths(
      definition.module
        ? [...codeFolders(definition.module), ...(definition.internalPaths ?? [])]
        : (definition.internalPaths ?? []),
    );
    const reportError = (where: string, error: unknown) => sink.report(`${name}: ${where}`, error);
    const ctx: PluginContext = {
      tracker,
      meter: host.meter ?? metrics.getMeter(`@trustflow/${name}`),
      tracer: host.tracer ?? trace.getTracer(`@trustflow/${name}`),
      diag: host.diag ?? sink.logger,
      get active() {
        return active;
      },
      patch(target, key, wrap) {
        const original = target[key];
        const wrapped = wrap(original);
        if (
          typeof original === 'function' &&
          typeof wrapped === 'function' &&
          wrapped !== original
        ) {
          copyIdentity(original, wrapped);
        }
        (target as Record<PropertyKey, unknown>)[key] = wrapped;
        patches.push({ target: target as Record<PropertyKey, unknown>, key, original, wrapped });
        patchedBuiltins = true;
      },
      subscribe(channel, listener) {
        const guarded = ctx.guard(`channel ${channel}`, listener);
        subscribe(channel, guarded);
        cleanups.push(() => unsubscribe(channel, guarded));
      },
      onDisable(cleanup) {
        cleanups.push(cleanup);
      },
      whenLoaded(ids, apply) {
        const { fire, cancel } = whenBuiltinLoaded(ids, () => {
          if (!active) return;
          try {
            apply();
            // patched after setup: named ESM imports made from now on see the wrappers
            if (setUp && patchedBuiltins) syncBuiltinESMExports();
          } catch (error) {
            reportError(`patching ${ids[0]}`, error);
          }
        });
        cleanups.push(cancel);
        return fire;
      },
      guard(where, fn) {
        return (...args) => {
          try {
            return fn(...args);
          } catch (error) {
            reportError(where, error);
            return undefined;
          }
        };
      },
      reportError,
    };

    teardown = () => {
      active = false;
      for (const cleanup of cleanups.reverse()) {
        try {
          cleanup();
        } catch (error) {
          reportError('disable', error);
        }
      }
      for (const p of patches.reverse()) {
        // If someone wrapped on top of us, leave their wrapper; ours is a pass-through now.
        if (p.target[p.key] === p.wrapped) p.target[p.key] = p.original;
      }
      if (patchedBuiltins) syncBuiltinESMExports();
    };

    try {
      const extra = definition.setup(ctx);
      if (typeof extra === 'function') cleanups.push(extra);
      setUp = true;
      if (patchedBuiltins) syncBuiltinESMExports();
    } catch (error) {
      reportError('enable', error);
      teardown();
      teardown = undefined;
    }
  };

  return {
    name: definition.name,
    get enabled() {
      return teardown !== undefined;
    },
    enable,
    disable() {
      const run = teardown;
      teardown = undefined;
      run?.();
    },
  };
}

export interface PluginHost {
  readonly plugins: readonly TrustflowPlugin[];
  enable(): void;
  disable(): void;
}

/** Enables a list of plugins with one context, and disables them in reverse order. */
export function createPluginHost(
  context: PluginHostContext,
  plugins: readonly TrustflowPlugin[],
): PluginHost {
  return {
    plugins,
    enable() {
      for (const plugin of plugins) plugin.enable(context);
    },
    disable() {
      for (const plugin of [...plugins].reverse()) plugin.disable();
    },
  };
}

/**
 * Gives a wrapper the `name`, `length` and symbol properties (such as `util.promisify.custom`) of
 * the function it replaces; a symbol property pointing at the original points at the wrapper.
 */
function copyIdentity(original: Function, wrapper: Function): void {
  try {
    Object.defineProperty(wrapper, 'name', { value: original.name, configurable: true });
    Object.defineProperty(wrapper, 'length', { value: original.length, configurable: true });
    for (const key of Object.getOwnPropertySymbols(original)) {
      const descriptor = Object.getOwnPropertyDescriptor(original, key)!;
      if (descriptor.value === original) descriptor.value = wrapper;
      Object.defineProperty(wrapper, key, descriptor);
    }
  } catch (error) {
    void error; // cosmetic only: a frozen wrapper keeps its own name
  }
}

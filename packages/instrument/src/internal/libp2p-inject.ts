// Loaded only when the application imports `libp2p` under the preload (see libp2p-hook.ts).
import * as plugin from '@trustflow/plugin-libp2p';
import { activeInstrumentation } from './state.js';

type Factory = (init?: object) => unknown;

/**
 * Wraps libp2p's `createLibp2p`: when the application passes no `metrics` of its own, the node
 * gets `libp2pMetrics()` from @trustflow/plugin-libp2p, reporting to the preload's tracker and
 * meter. Anything else (arguments, `this`, the result, errors) is passed through unchanged.
 */
export function wrapCreateLibp2p<F>(original: F): F {
  if (typeof original !== 'function') return original;
  const call = original as unknown as (...args: unknown[]) => unknown;
  const wrapped = function createLibp2p(this: unknown, ...args: unknown[]): unknown {
    const active = activeInstrumentation();
    const factory = (plugin as Record<string, unknown>).libp2pMetrics as Factory | undefined;
    const options = args[0];
    if (
      active !== undefined &&
      typeof factory === 'function' &&
      (options === undefined ||
        options === null ||
        (typeof options === 'object' && (options as { metrics?: unknown }).metrics === undefined))
    ) {
      try {
        const init: Record<string, unknown> = { tracker: active.tracker };
        const meter = active.meterFor('@trustflow/plugin-libp2p');
        if (meter) init.meter = meter;
        const tracer = active.tracerFor('@trustflow/plugin-libp2p');
        if (tracer) init.tracer = tracer;
        args[0] = { ...((options as object | null | undefined) ?? {}), metrics: factory(init) };
      } catch (error) {
        active.reportError('libp2p metrics injection', error);
        args[0] = options;
      }
    }
    return call.apply(this, args);
  };
  return wrapped as unknown as F;
}

import type { TraceAttributes, TraceGeneratorFunctionOptions } from '@libp2p/interface';
import {
  type Context,
  context,
  type Span,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';

/**
 * libp2p's tracing hooks as OpenTelemetry spans. libp2p's convention: `createTrace()` makes a
 * trace context, the caller passes it as `options.trace` to a function wrapped with
 * `traceFunction()`, and the wrapper starts a span under it and passes its own context on (so
 * nested traced calls become child spans). A call without `options.trace` is not traced and runs
 * exactly as the original.
 */

interface Hooks {
  readonly active: boolean;
  reportError(where: string, error: unknown): void;
}

type AnyOptions = TraceGeneratorFunctionOptions<any[], any, any>;

export function createTrace(): Context {
  return context.active();
}

export function traceFunction<F extends (...args: any[]) => any>(
  tracer: Tracer,
  hooks: Hooks,
  name: string,
  fn: F,
  options: AnyOptions | undefined,
): F {
  if (typeof fn !== 'function') {
    throw new TypeError(`libp2pMetrics: traceFunction(${String(name)}) needs a function`);
  }
  const index = options?.optionsIndex ?? 0;
  const traced = function (this: unknown, ...args: unknown[]): unknown {
    const callOptions = args[index] as { trace?: unknown } | undefined;
    const parent = callOptions?.trace;
    if (!hooks.active || !isContext(parent)) return fn.apply(this, args);
    const attributes: TraceAttributes = {};
    const span = tracer.startSpan(name, {}, parent);
    guard(hooks, name, () =>
      setAttributes(span, options?.getAttributesFromArgs?.(args, attributes)),
    );
    const child = trace.setSpan(parent, span);
    // pass our context on in a copy: the caller's options object is left as it was
    const forwarded = args.slice();
    forwarded[index] = { ...callOptions, trace: child };
    let result: unknown;
    try {
      result = context.with(child, () => fn.apply(this, forwarded));
    } catch (error) {
      fail(span, error);
      throw error;
    }
    if (isPromiseLike(result)) {
      return Promise.resolve(result).then(
        (value) => {
          succeed(hooks, name, span, options, value, attributes);
          return value;
        },
        (error: unknown) => {
          fail(span, error);
          throw error;
        },
      );
    }
    if (isAsyncIterator(result)) {
      return tracedAsyncIterator(result, hooks, name, span, options, attributes);
    }
    if (isIterator(result)) return tracedIterator(result, hooks, name, span, options, attributes);
    succeed(hooks, name, span, options, result, attributes);
    return result;
  };
  Object.defineProperty(traced, 'name', { value: fn.name, configurable: true });
  Object.defineProperty(traced, 'length', { value: fn.length, configurable: true });
  return traced as F;
}

async function* tracedAsyncIterator(
  source: AsyncIterator<unknown> & AsyncIterable<unknown>,
  hooks: Hooks,
  name: string,
  span: Span,
  options: AnyOptions | undefined,
  attributes: TraceAttributes,
): AsyncGenerator<unknown, unknown, undefined> {
  let index = 0;
  let ok = false;
  try {
    for await (const value of source) {
      const at = index++;
      guard(hooks, name, () =>
        setAttributes(span, options?.getAttributesFromYieldedValue?.(value, attributes, at)),
      );
      yield value;
    }
    ok = true;
  } catch (error) {
    fail(span, error);
    throw error;
  } finally {
    if (ok) succeed(hooks, name, span, options, undefined, attributes);
    else span.end();
  }
  return undefined;
}

function* tracedIterator(
  source: Iterator<unknown> & Iterable<unknown>,
  hooks: Hooks,
  name: string,
  span: Span,
  options: AnyOptions | undefined,
  attributes: TraceAttributes,
): Generator<unknown, unknown, undefined> {
  let index = 0;
  let ok = false;
  try {
    for (const value of source) {
      const at = index++;
      guard(hooks, name, () =>
        setAttributes(span, options?.getAttributesFromYieldedValue?.(value, attributes, at)),
      );
      yield value;
    }
    ok = true;
  } catch (error) {
    fail(span, error);
    throw error;
  } finally {
    if (ok) succeed(hooks, name, span, options, undefined, attributes);
    else span.end();
  }
  return undefined;
}

function succeed(
  hooks: Hooks,
  name: string,
  span: Span,
  options: AnyOptions | undefined,
  value: unknown,
  attributes: TraceAttributes,
): void {
  guard(hooks, name, () =>
    setAttributes(span, options?.getAttributesFromReturnValue?.(value, attributes)),
  );
  span.setStatus({ code: SpanStatusCode.OK });
  span.end();
}

function fail(span: Span, error: unknown): void {
  const err = error instanceof Error ? error : new Error(String(error));
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  span.setAttribute('error.type', err.name || 'Error');
  span.end();
}

function setAttributes(span: Span, attributes: TraceAttributes | undefined): void {
  if (attributes) span.setAttributes(attributes);
}

function guard(hooks: Hooks, name: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    hooks.reportError(`trace attributes of ${name}`, error);
  }
}

function isContext(value: unknown): value is Context {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Context).getValue === 'function' &&
    typeof (value as Context).setValue === 'function'
  );
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}

function isAsyncIterator(value: unknown): value is AsyncIterator<unknown> & AsyncIterable<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as AsyncIterator<unknown>).next === 'function' &&
    typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'
  );
}

function isIterator(value: unknown): value is Iterator<unknown> & Iterable<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Iterator<unknown>).next === 'function' &&
    typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function'
  );
}

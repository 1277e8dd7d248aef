import { AsyncLocalStorage } from 'node:async_hooks';
import type {
  Cleanup,
  CleanupScope,
  ScopeOptions,
  ShutdownCoordinator,
  ShutdownOptions,
  ShutdownResult,
  WithTimeoutOptions,
} from '../types.js';
import { CleanupStack, combineErrors, isThenable, suppress } from './cleanup-stack.js';

/**
 * Which scopes are running one of their cleanups in the current async context, so that a cleanup
 * calling `close()` on its own scope does not wait for itself (the Go original deadlocked there).
 */
interface Running {
  owner: object;
  outer: Running | undefined;
}
const running = new AsyncLocalStorage<Running>();

function insideCleanupOf(owner: object): boolean {
  for (let r = running.getStore(); r !== undefined; r = r.outer) if (r.owner === owner) return true;
  return false;
}

function runAsCleanupOf<R>(owner: object, fn: () => R): R {
  return running.run({ owner, outer: running.getStore() }, fn);
}

function disposerOf(value: object, where: string): () => unknown {
  const v = value as Partial<AsyncDisposable & Disposable>;
  const dispose = v[Symbol.asyncDispose] ?? v[Symbol.dispose];
  if (typeof dispose !== 'function') {
    throw new TypeError(
      `${where}: value is not disposable (it has no Symbol.dispose or Symbol.asyncDispose method)`,
    );
  }
  return () => dispose.call(value);
}

function closedError(name: string | undefined): DOMException {
  return new DOMException(`scope ${name ? `"${name}" ` : ''}was closed`, 'AbortError');
}

class Scope implements CleanupScope {
  private readonly controller = new AbortController();
  private readonly stack = new CleanupStack<Cleanup>();
  /** Errors not yet delivered to a caller. */
  private errors: unknown[] = [];
  private closing: Promise<void> | undefined;
  private current: 'open' | 'closing' | 'closed' = 'open';
  private detach: (() => void) | undefined;

  constructor(private readonly options: ScopeOptions) {
    const parent = options.signal;
    if (parent === undefined) return;
    if (parent.aborted) {
      this.start(parent.reason);
      return;
    }
    const onAbort = () => this.start(parent.reason);
    parent.addEventListener('abort', onAbort, { once: true });
    // Removed when the scope closes, so a long-lived parent signal does not collect listeners.
    this.detach = () => parent.removeEventListener('abort', onAbort);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get state(): 'open' | 'closing' | 'closed' {
    return this.current;
  }

  defer(cleanup: Cleanup, name?: string): () => void {
    if (typeof cleanup !== 'function') {
      throw new TypeError(`scope.defer: cleanup must be a function, got ${typeof cleanup}`);
    }
    if (this.current !== 'closed') return this.stack.push(cleanup, name);
    // Too late to queue: run it now so that whatever it guards is not left open.
    const result = cleanup();
    if (isThenable(result)) result.then(undefined, (error) => void this.errors.push(error));
    return () => {};
  }

  use<T extends Disposable | AsyncDisposable | null | undefined>(value: T): T {
    if (value === null || value === undefined) return value;
    this.defer(disposerOf(value, 'scope.use'));
    return value;
  }

  close(reason?: unknown): Promise<void> {
    if (insideCleanupOf(this)) return Promise.resolve();
    this.start(reason);
    return this.closing!.then(() => this.deliver());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  [Symbol.dispose](): void {
    if (insideCleanupOf(this)) return;
    if (this.current === 'open') this.begin(undefined);
    for (let entry = this.stack.pop(); entry !== undefined; entry = this.stack.pop()) {
      const fn = entry.fn!;
      try {
        const result = runAsCleanupOf(this, fn);
        if (isThenable(result)) {
          this.errors.push(
            new TypeError(
              `${entry.name} returned a promise during a synchronous dispose; use \`await using\` or await scope.close()`,
            ),
          );
          result.then(undefined, (error) => void this.errors.push(error));
        }
      } catch (error) {
        this.errors.push(error);
      }
    }
    // An asynchronous close may still be waiting on a cleanup: it finishes the state change.
    if (this.closing === undefined) this.current = 'closed';
    this.deliver();
  }

  /** Starts closing once; never rejects. */
  private start(reason: unknown): void {
    if (this.closing !== undefined) return;
    if (this.current === 'open') this.begin(reason);
    this.closing = this.run();
  }

  private begin(reason: unknown): void {
    this.current = 'closing';
    this.detach?.();
    this.detach = undefined;
    this.controller.abort(reason === undefined ? closedError(this.options.name) : reason);
  }

  private async run(): Promise<void> {
    for (let entry = this.stack.pop(); entry !== undefined; entry = this.stack.pop()) {
      const fn = entry.fn!;
      try {
        const result = runAsCleanupOf(this, fn);
        if (isThenable(result)) await result;
      } catch (error) {
        this.errors.push(error);
      }
    }
    this.current = 'closed';
  }

  /** Hands pending errors to this caller (each error is delivered once). */
  private deliver(): void {
    if (this.errors.length === 0) return;
    const errors = this.errors;
    this.errors = [];
    const name = this.options.name;
    throw combineErrors(errors, `cleanups of scope${name ? ` "${name}"` : ''}`);
  }
}

/**
 * Creates a cleanup scope: register cleanups with `defer`/`use`, close it with `close()`,
 * `using`, `await using`, or by aborting `options.signal`.
 */
export function createScope(options: ScopeOptions = {}): CleanupScope {
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError('createScope: option signal must be an AbortSignal');
  }
  return new Scope(options);
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Runs `fn` with a scope whose signal aborts after `ms` milliseconds (or when `options.signal`
 * aborts). Whatever happens, the scope's cleanups run before the returned promise settles. On a
 * timeout the promise rejects with a `TimeoutError` DOMException without waiting for `fn` to
 * notice the abort. A cleanup error is thrown as is after a success, and as a SuppressedError
 * (`.error` = cleanup error, `.suppressed` = the original failure) after a failure.
 */
export async function withTimeout<T>(
  fn: (scope: CleanupScope) => T | PromiseLike<T>,
  ms: number,
  options: WithTimeoutOptions = {},
): Promise<T> {
  if (typeof fn !== 'function') throw new TypeError('withTimeout: fn must be a function');
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new TypeError(`withTimeout: ms must be a non-negative finite number, got ${String(ms)}`);
  }
  if (options.signal?.aborted) throw options.signal.reason;
  const scope = createScope({ signal: options.signal, name: options.name });
  let timer: NodeJS.Timeout | undefined;
  let work: Promise<T>;
  try {
    work = Promise.resolve(fn(scope));
  } catch (error) {
    work = Promise.reject(error);
  }
  const stopped = new Promise<Outcome<T>>((resolve) => {
    const signal = scope.signal;
    const onAbort = () => resolve({ ok: false, error: signal.reason });
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    timer = setTimeout(() => {
      const what = options.name ?? 'operation';
      resolve({
        ok: false,
        error: new DOMException(`${what} timed out after ${ms} ms`, 'TimeoutError'),
      });
    }, ms);
  });
  const finished = work.then(
    (value): Outcome<T> => ({ ok: true, value }),
    (error): Outcome<T> => ({ ok: false, error }),
  );
  const outcome = await Promise.race([finished, stopped]);
  clearTimeout(timer);
  try {
    await scope.close(outcome.ok ? undefined : outcome.error);
  } catch (cleanupError) {
    if (outcome.ok) throw cleanupError;
    throw suppress(cleanupError, outcome.error);
  }
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

const DEFAULT_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

function printResult(result: ShutdownResult): void {
  if (result.errors.length === 0 && !result.timedOut) return;
  const lines = [`trustflow: shutdown (${String(result.reason)}) finished with problems:`];
  if (result.timedOut) {
    lines.push(`  deadline passed; unfinished cleanups: ${result.unfinished.join(', ')}`);
  }
  for (const error of result.errors) {
    lines.push(`  cleanup error: ${error instanceof Error ? error.stack : String(error)}`);
  }
  process.stderr.write(`${lines.join('\n')}\n`);
}

type ShutdownCleanup = (deadline: AbortSignal) => unknown;

class Coordinator implements ShutdownCoordinator {
  private readonly stack = new CleanupStack<ShutdownCleanup>();
  private readonly controller = new AbortController();
  private readonly deadline = new AbortController();
  private readonly deadlineMs: number;
  private readonly onResult: (result: ShutdownResult) => void;
  private result: Promise<ShutdownResult> | undefined;
  private uninstall: (() => void) | undefined;
  private finished = false;
  private lateErrors: unknown[] | undefined;

  constructor(options: ShutdownOptions) {
    const ms = options.deadlineMs ?? 10_000;
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
      throw new TypeError(
        `createShutdownCoordinator: option deadlineMs must be a non-negative finite number, got ${String(ms)}`,
      );
    }
    this.deadlineMs = ms;
    this.onResult = options.onResult ?? printResult;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  defer(cleanup: ShutdownCleanup, name?: string): () => void {
    if (typeof cleanup !== 'function') {
      throw new TypeError(`shutdown.defer: cleanup must be a function, got ${typeof cleanup}`);
    }
    if (!this.finished) return this.stack.push(cleanup, name);
    this.fire(cleanup);
    return () => {};
  }

  use<T extends Disposable | AsyncDisposable | null | undefined>(value: T): T {
    if (value === null || value === undefined) return value;
    const dispose = disposerOf(value, 'shutdown.use');
    this.defer(() => dispose());
    return value;
  }

  shutdown(reason: unknown = 'shutdown'): Promise<ShutdownResult> {
    this.result ??= this.run(reason);
    return this.result;
  }

  install(signals: NodeJS.Signals[] = DEFAULT_SIGNALS): () => void {
    if (this.uninstall) return this.uninstall;
    let received = false;
    const listeners = new Map<NodeJS.Signals, () => void>();
    const reraise = (signal: NodeJS.Signals) => {
      // Without listeners the default action applies: the process ends by this signal.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    const uninstall = () => {
      for (const [signal, listener] of listeners) process.removeListener(signal, listener);
      listeners.clear();
      if (this.uninstall === uninstall) this.uninstall = undefined;
    };
    for (const signal of signals) {
      const listener = () => {
        if (received) {
          uninstall();
          reraise(signal);
          return;
        }
        received = true;
        void this.shutdown(signal).then((result) => {
          try {
            this.onResult(result);
          } catch (error) {
            process.stderr.write(`trustflow: shutdown onResult threw: ${String(error)}\n`);
          }
          uninstall();
          reraise(signal);
        });
      };
      listeners.set(signal, listener);
      process.on(signal, listener);
    }
    this.uninstall = uninstall;
    return uninstall;
  }

  /** Calls a cleanup without waiting for it; its errors still land in the result. */
  private fire(cleanup: ShutdownCleanup): void {
    const errors = this.lateErrors ?? [];
    try {
      const result = cleanup(this.deadline.signal);
      if (isThenable(result)) result.then(undefined, (error) => void errors.push(error));
    } catch (error) {
      errors.push(error);
    }
  }

  private async run(reason: unknown): Promise<ShutdownResult> {
    const started = performance.now();
    const errors: unknown[] = [];
    const unfinished: string[] = [];
    this.lateErrors = errors;
    let timedOut = false;
    let onDeadline!: () => void;
    const deadlinePassed = new Promise<void>((resolve) => {
      onDeadline = resolve;
    });
    // Ref'd on purpose: while shutting down, the deadline is what guarantees an end.
    const timer = setTimeout(() => {
      timedOut = true;
      this.deadline.abort(
        new DOMException(`shutdown deadline of ${this.deadlineMs} ms passed`, 'TimeoutError'),
      );
      onDeadline();
    }, this.deadlineMs);
    this.controller.abort(reason);
    for (let entry = this.stack.pop(); entry !== undefined; entry = this.stack.pop()) {
      if (timedOut) {
        // Past the deadline: start the rest (each sees the aborted deadline signal) and move on.
        unfinished.push(entry.name);
        this.fire(entry.fn!);
        continue;
      }
      try {
        const result = runAsCleanupOf(this, () => entry.fn!(this.deadline.signal));
        if (!isThenable(result)) continue;
        let settled = false;
        const done = Promise.resolve(result).then(
          () => {
            settled = true;
          },
          (error) => {
            settled = true;
            errors.push(error);
          },
        );
        await Promise.race([done, deadlinePassed]);
        if (!settled) unfinished.push(entry.name);
      } catch (error) {
        errors.push(error);
      }
    }
    clearTimeout(timer);
    this.finished = true;
    return {
      reason,
      timedOut,
      errors,
      unfinished,
      durationMs: performance.now() - started,
    };
  }
}

/**
 * Creates a shutdown coordinator. It does nothing to the process until `install()` is called;
 * `shutdown()` runs the cleanups without any signal (tests, or an application's own exit path).
 */
export function createShutdownCoordinator(options: ShutdownOptions = {}): ShutdownCoordinator {
  return new Coordinator(options);
}

/**
 * The LIFO list of cleanups shared by scopes and the shutdown coordinator. Removing an entry is
 * O(1) (a tombstone), so a long-lived owner (a server scope, the shutdown coordinator) can take
 * and drop a cleanup per connection without growing: tombstones are compacted once they are
 * the majority.
 */

export interface StackEntry<F> {
  fn: F | undefined;
  readonly name: string;
}

export class CleanupStack<F> {
  private entries: StackEntry<F>[] = [];
  private dead = 0;
  private counter = 0;

  get size(): number {
    return this.entries.length - this.dead;
  }

  /** Adds a cleanup; returns a function that removes it without running it. */
  push(fn: F, name: string | undefined): () => void {
    const entry: StackEntry<F> = { fn, name: name ?? `cleanup #${++this.counter}` };
    this.entries.push(entry);
    return () => {
      if (entry.fn === undefined) return;
      entry.fn = undefined;
      this.dead++;
      if (this.dead > 32 && this.dead * 2 > this.entries.length) this.compact();
    };
  }

  /** Takes the most recently added live cleanup off the stack (it can never be taken twice). */
  pop(): StackEntry<F> | undefined {
    while (this.entries.length > 0) {
      const entry = this.entries.pop()!;
      if (entry.fn === undefined) {
        this.dead--;
        continue;
      }
      const taken: StackEntry<F> = { fn: entry.fn, name: entry.name };
      // Mark the original as gone so that its remove function is a no-op from now on.
      entry.fn = undefined;
      return taken;
    }
    return undefined;
  }

  /** Names of the live cleanups, in the order they would run. */
  names(): string[] {
    const out: string[] = [];
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const entry = this.entries[i]!;
      if (entry.fn !== undefined) out.push(entry.name);
    }
    return out;
  }

  private compact(): void {
    this.entries = this.entries.filter((e) => e.fn !== undefined);
    this.dead = 0;
  }
}

/** `SuppressedError` where the runtime has it (Node >= 24), an equivalent class elsewhere. */
export const SuppressedErrorClass: new (
  error: unknown,
  suppressed: unknown,
  message?: string,
) => Error & { error: unknown; suppressed: unknown } =
  (globalThis as { SuppressedError?: any }).SuppressedError ??
  class SuppressedError extends Error {
    error: unknown;
    suppressed: unknown;
    constructor(error: unknown, suppressed: unknown, message?: string) {
      super(message);
      this.name = 'SuppressedError';
      this.error = error;
      this.suppressed = suppressed;
    }
  };

/** One error as is; several as an AggregateError (in the order they happened). */
export function combineErrors(errors: readonly unknown[], what: string): unknown {
  if (errors.length === 1) return errors[0];
  return new AggregateError(errors, `${errors.length} ${what} failed`);
}

/** The error of a failed operation whose cleanup also failed, like `using` does. */
export function suppress(cleanupError: unknown, primary: unknown): Error {
  return new SuppressedErrorClass(
    cleanupError,
    primary,
    'cleanup failed after the operation had failed (see .error and .suppressed)',
  );
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

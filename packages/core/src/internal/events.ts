import type { ErrorSink } from './errors.js';

/**
 * A tiny typed event list for the monitors. Listeners run outside any internal iteration (on a
 * copy), and an exception in one is counted and logged through the sink, never thrown into the
 * timer that fired it.
 */
export class Listeners<E extends string, P> {
  private readonly map = new Map<E, Set<(payload: P) => void>>();

  constructor(
    private readonly names: readonly E[],
    private readonly sink: ErrorSink,
    private readonly owner: string,
  ) {}

  on(event: E, listener: (payload: P) => void): () => void {
    if (!this.names.includes(event)) {
      throw new TypeError(
        `${this.owner}.on: unknown event ${JSON.stringify(event)} (expected ${this.names.join(' or ')})`,
      );
    }
    if (typeof listener !== 'function') {
      throw new TypeError(`${this.owner}.on: listener must be a function`);
    }
    let set = this.map.get(event);
    if (!set) {
      set = new Set();
      this.map.set(event, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  emit(event: E, payload: P): void {
    const set = this.map.get(event);
    if (!set || set.size === 0) return;
    for (const listener of [...set]) {
      try {
        listener(payload);
      } catch (error) {
        this.sink.report(`${this.owner} ${event} listener`, error);
      }
    }
  }

  clear(): void {
    this.map.clear();
  }
}

/** Reads a numeric option; a bad value is a one-line TypeError naming the option. */
export function numberOption(
  where: string,
  name: string,
  value: unknown,
  fallback: number,
  check: (n: number) => boolean,
  expectation: string,
): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isFinite(value) && check(value)) return value;
  throw new TypeError(`${where}: option ${name} must be ${expectation}, got ${String(value)}`);
}

import { fileURLToPath } from 'node:url';

/** A path argument (string, Buffer or file URL) as a string for spans and reports. */
export function pathString(path: unknown): string {
  if (typeof path === 'string') return path;
  if (path instanceof URL) {
    try {
      return fileURLToPath(path);
    } catch {
      return path.href;
    }
  }
  if (Buffer.isBuffer(path)) return path.toString();
  return String(path);
}

/**
 * Handles of live resources that have no descriptor number to index them by, so that `disable()`
 * can release them. Entries released elsewhere (or garbage-collected) are swept out when the set
 * has doubled since the last sweep, so it never grows past twice the live count.
 */
export class LiveSet<T extends { readonly released: boolean }> {
  private readonly items = new Set<T>();
  private sweepAt = 64;

  add(item: T): void {
    this.items.add(item);
    if (this.items.size >= this.sweepAt) {
      for (const i of this.items) if (i.released) this.items.delete(i);
      this.sweepAt = Math.max(64, this.items.size * 2);
    }
  }

  delete(item: T): void {
    this.items.delete(item);
  }

  /** Removes and returns every item. */
  drain(): T[] {
    const all = [...this.items];
    this.items.clear();
    this.sweepAt = 64;
    return all;
  }
}

/**
 * A map from descriptor numbers to owners, on an array: descriptors are small integers handed
 * out lowest-first, and an array index is cheaper than a hash lookup on the open/close path.
 * Numbers past `limit` (rare) go to a Map.
 */
export class FdTable<T> {
  private readonly slots: (T | undefined)[] = [];
  private readonly large = new Map<number, T>();
  private count = 0;

  constructor(private readonly limit = 1 << 16) {}

  get size(): number {
    return this.count;
  }

  get(fd: number): T | undefined {
    return fd >= 0 && fd < this.limit ? this.slots[fd] : this.large.get(fd);
  }

  has(fd: number): boolean {
    return this.get(fd) !== undefined;
  }

  set(fd: number, value: T): void {
    if (fd >= 0 && fd < this.limit) {
      while (this.slots.length < fd) this.slots.push(undefined);
      if (this.slots[fd] === undefined) this.count++;
      this.slots[fd] = value;
    } else {
      if (!this.large.has(fd)) this.count++;
      this.large.set(fd, value);
    }
  }

  delete(fd: number): void {
    if (fd >= 0 && fd < this.limit) {
      if (this.slots[fd] !== undefined) {
        this.slots[fd] = undefined;
        this.count--;
      }
    } else if (this.large.delete(fd)) {
      this.count--;
    }
  }

  /** Every (fd, owner) pair; safe against deletion while iterating. */
  entries(): [number, T][] {
    const out: [number, T][] = [];
    for (let fd = 0; fd < this.slots.length; fd++) {
      const value = this.slots[fd];
      if (value !== undefined) out.push([fd, value]);
    }
    for (const pair of this.large) out.push(pair);
    return out;
  }

  clear(): void {
    this.slots.length = 0;
    this.large.clear();
    this.count = 0;
  }
}

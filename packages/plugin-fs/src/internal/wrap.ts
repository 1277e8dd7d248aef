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

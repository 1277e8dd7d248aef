/**
 * Gives a wrapper the `name`, `length` and symbol properties (such as `util.promisify.custom`) of
 * the function it replaces; a symbol pointing at the original points at the wrapper instead.
 */
export function likeOriginal<F>(original: F, wrapper: Function): F {
  const source = original as unknown as Function;
  try {
    Object.defineProperty(wrapper, 'name', { value: source.name, configurable: true });
    Object.defineProperty(wrapper, 'length', { value: source.length, configurable: true });
    for (const key of Object.getOwnPropertySymbols(source)) {
      const descriptor = Object.getOwnPropertyDescriptor(source, key)!;
      if (descriptor.value === source) descriptor.value = wrapper;
      Object.defineProperty(wrapper, key, descriptor);
    }
  } catch {
    // cosmetic only
  }
  return wrapper as F;
}

/**
 * Live resources of the plugin, so that `disable()` can release them and the fd inventory can
 * ask for their descriptors. Entries released elsewhere (or garbage-collected) are swept out when the set
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

  values(): IterableIterator<T> {
    return this.items.values();
  }

  /** Removes and returns every item. */
  drain(): T[] {
    const all = [...this.items];
    this.items.clear();
    this.sweepAt = 64;
    return all;
  }
}

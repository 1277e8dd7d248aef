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

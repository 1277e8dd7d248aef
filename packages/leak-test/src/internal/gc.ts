import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = () => void;
let cached: Gc | undefined;

/**
 * The `gc` function, also without `--expose-gc` on the command line: the flag is switched on
 * for as long as it takes to create one new context (which then has `gc`), and switched off
 * again so no other context gets it by surprise.
 */
export function exposeGc(): Gc {
  if (cached) return cached;
  const global = (globalThis as { gc?: unknown }).gc;
  if (typeof global === 'function') {
    cached = global as Gc;
    return cached;
  }
  setFlagsFromString('--expose-gc');
  try {
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc !== 'function') throw new Error('gc was not exposed');
    cached = gc as Gc;
  } catch (error) {
    throw new Error(
      `@trustflow/leak-test: cannot force garbage collection (${(error as Error).message}); run node with --expose-gc`,
    );
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return cached;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A full collection between two macrotasks: pending callbacks settle first, and finalizers the
 * collection queued get their turn after it (what they free is collected by the next one).
 */
export async function fullGc(rounds = 1): Promise<void> {
  const gc = exposeGc();
  for (let i = 0; i < rounds; i++) {
    await tick();
    gc();
  }
  await tick();
}

/**
 * Descriptors owned by resources that another Trustflow plugin tracks (sockets, for the net
 * plugin), so the fd inventory does not list them as untracked. The registry lives on
 * `globalThis` under a registered symbol because the plugins are separate packages that may
 * be installed in several copies; the same code is in @trustflow/plugin-fs.
 */
export type FdProvider = (add: (fd: number) => void) => void;

const KEY = Symbol.for('trustflow.fd-providers');

export function fdProviders(): Set<FdProvider> {
  const holder = globalThis as { [KEY]?: Set<FdProvider> };
  let set = holder[KEY];
  if (!(set instanceof Set)) {
    set = new Set();
    holder[KEY] = set;
  }
  return set;
}

// Deferred patching of builtin modules. A preloaded program pays for every builtin the plugins
// load at start-up (node:net with node:stream and node:fs/promises: about 3 ms), also when it
// never opens a socket or a FileHandle. A plugin can instead name the builtins whose loading
// means its patches are needed; they are then applied when the application first asks for one
// of them (require, import, process.getBuiltinModule), before the application gets it.

// (not `import * as`: a bundler copies a namespace import of a builtin into a new object, property
// by property, at load)
const nodeModule = process.getBuiltinModule('node:module') as typeof import('node:module');

interface Trigger {
  readonly ids: readonly string[];
  readonly fire: () => void;
}

type Resolve = (
  specifier: string,
  context: object,
  next: (specifier: string, context?: object) => { url: string },
) => { url: string };
type RegisterHooks = (hooks: { resolve: Resolve }) => { deregister(): void };
type GetBuiltin = (id: string) => unknown;

const pending = new Set<Trigger>();
let hooks: { deregister(): void } | undefined;
let originalGet: GetBuiltin | undefined;
let wrappedGet: GetBuiltin | undefined;

/** Whether a builtin (by its id without `node:`) has been loaded in this process. */
export function builtinLoaded(id: string): boolean {
  const list = (process as { moduleLoadList?: unknown }).moduleLoadList;
  // Without Node's list there is no telling: treat it as loaded (patch at once).
  return !Array.isArray(list) || list.includes(`NativeModule ${id}`);
}

function asked(id: string): void {
  const name = id.startsWith('node:') ? id.slice(5) : id;
  for (const trigger of [...pending]) {
    if (trigger.ids.includes(name)) trigger.fire();
  }
}

function install(): boolean {
  if (hooks !== undefined) return true;
  const register = (nodeModule as { registerHooks?: RegisterHooks }).registerHooks;
  if (typeof register !== 'function') return false;
  hooks = register({
    resolve(specifier, context, next) {
      const result = next(specifier, context);
      if (pending.size > 0 && result.url.startsWith('node:')) asked(result.url);
      return result;
    },
  });
  const get = process.getBuiltinModule as GetBuiltin | undefined;
  if (typeof get === 'function') {
    originalGet = get;
    wrappedGet = function getBuiltinModule(this: unknown, id: string) {
      if (pending.size > 0 && typeof id === 'string') asked(id);
      return Reflect.apply(get, this, [id]);
    };
    Object.defineProperty(wrappedGet, 'length', { value: get.length });
    (process as { getBuiltinModule: GetBuiltin }).getBuiltinModule = wrappedGet;
  }
  return true;
}

function uninstallIfIdle(): void {
  if (pending.size > 0) return;
  hooks?.deregister();
  hooks = undefined;
  const proc = process as { getBuiltinModule: GetBuiltin };
  if (wrappedGet !== undefined && proc.getBuiltinModule === wrappedGet) {
    proc.getBuiltinModule = originalGet!;
  }
  originalGet = undefined;
  wrappedGet = undefined;
}

/**
 * Runs `run` once: now if one of `ids` is loaded already (or this Node cannot watch loads),
 * otherwise when the application resolves one of them, or when the returned `fire` is called
 * (for ways in that the plugin knows itself), or at the first event-loop turn if one got loaded
 * by a way nobody watched. `cancel` forgets a trigger that has not fired.
 */
export function whenBuiltinLoaded(
  ids: readonly string[],
  run: () => void,
): { fire: () => void; cancel: () => void } {
  let done = false;
  const trigger: Trigger = {
    ids,
    fire() {
      if (done) return;
      done = true;
      pending.delete(trigger);
      uninstallIfIdle();
      run();
    },
  };
  const cancel = () => {
    if (done) return;
    done = true;
    pending.delete(trigger);
    uninstallIfIdle();
  };
  if (ids.some(builtinLoaded) || !install()) {
    trigger.fire();
    return { fire: trigger.fire, cancel };
  }
  pending.add(trigger);
  // Loaded by a path no hook sees (Node's own lazy loading, say): patch once the program runs.
  setImmediate(() => {
    if (!done && ids.some(builtinLoaded)) trigger.fire();
  }).unref();
  return { fire: trigger.fire, cancel };
}

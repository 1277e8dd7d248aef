// Side-effect entry: `node --require @trustflow/instrument app.js` or
// `node --import @trustflow/instrument app.mjs`. With TRUSTFLOW_DISABLED=1 it does nothing else.
//
// The preload proper is one CommonJS bundle (dist/internal/preload.cjs, built by scripts/bundle.mjs
// from internal/preload.ts) loaded with V8's code cache (internal/bundle-loader.ts). Loading and
// starting it costs about 20 million instructions (some 6 ms), which a program that ends without
// creating a resource should not pay. So this file only watches for the first sign that the
// application is about to create one, and starts the preload synchronously at that moment, before
// the application gets what it asked for:
// - a module resolution other than the main module's own (require, import, import()): every
//   builtin that hands out resources, and every library, comes this way;
// - process.getBuiltinModule();
// - the global setTimeout and setInterval (timers need no module);
// - a connection made by fetch() or WebSocket (undici's and net's diagnostics channels);
// - the first event-loop turn (an unref'd timer: a program that ends before it starts nothing);
// - the exit: the exit report, and the configuration's warnings.
// It starts at once for code given by -e, -p, stdin or the REPL (which has every builtin as a
// global), for a report on a signal (its listener must be in place) and when the async-hooks
// source is named (it sees every resource, including those made without any of the above).
import type { Resolved } from './internal/libp2p-hook.js';
import type { start as StartPreload } from './internal/preload.js';

// (type imports only: this file loads nothing of the package until the preload starts)
type Fn = (this: unknown, ...args: unknown[]) => unknown;
type Next = (specifier: string, context?: object) => Resolved;
interface NodeModule {
  createRequire(from: string): (id: string) => unknown;
  registerHooks?: RegisterHooks;
}
type RegisterHooks = (hooks: {
  resolve(specifier: string, context: { parentURL?: string }, next: Next): Resolved;
}) => { deregister(): void };
type Started = ReturnType<typeof StartPreload>;

/** A function replaced by one that starts the preload before it does its work. */
interface Stub {
  readonly target: Record<string, unknown>;
  readonly key: string;
  readonly original: Fn;
  readonly stub: Fn;
  /** What the stub calls: the original, then what the plugins made of it. */
  forward: Fn;
}

const WAITING = 0;
const STARTING = 1;
const STARTED = 2;
const TRUE = ['1', 'true', 'on', 'yes'];
const LOADED = Symbol.for('@trustflow/instrument.preload');
/** Set by a running instrumentation (internal/state.ts). */
const RUNNING = Symbol.for('@trustflow/instrument');

const env = process.env;
const setting = (name: string) => (env[name] ?? '').trim().toLowerCase();
const holder = globalThis as Record<symbol, unknown>;

// Worker threads inherit --require/--import: the main thread's instrumentation covers the
// process. Two copies of this file (--require and --import both given) start once.
if (
  !TRUE.includes(setting('TRUSTFLOW_DISABLED')) &&
  holder[LOADED] === undefined &&
  holder[RUNNING] === undefined
) {
  if (isMainThread()) {
    holder[LOADED] = true;
    preload();
  }
}

function preload(): void {
  const nodeModule = process.getBuiltinModule('node:module') as NodeModule;
  // (required when needed: a program that never starts the preload does not load them)
  const require = (id: string) => nodeModule.createRequire(import.meta.url)(id);
  let state = WAITING;
  let runtime: Started;
  const stubs: Stub[] = [];
  const cleanups: (() => void)[] = [];

  const start = (): void => {
    if (state !== WAITING) return;
    state = STARTING;
    for (const cleanup of cleanups.splice(0)) cleanup();
    // The plugins wrap the originals. A stub someone else wrapped stays under their wrapper (and
    // forwards to ours); a stub only the application kept a reference to forwards too.
    const foreign = stubs.map((s) => {
      const current = s.target[s.key];
      s.target[s.key] = s.original;
      return current === s.stub ? undefined : current;
    });
    try {
      const url = process.getBuiltinModule('node:url') as typeof import('node:url');
      const file = url.fileURLToPath(new URL('./internal/preload.cjs', import.meta.url));
      const { loadBundle } =
        require('./internal/bundle-loader.js') as typeof import('./internal/bundle-loader.js');
      const bundle = loadBundle(file).exports as { start: typeof StartPreload };
      runtime = bundle.start();
    } catch (error) {
      // Never the application's problem: it carries on without instrumentation.
      process.stderr.write(
        `trustflow: instrumentation not started: ${error instanceof Error ? error.message : String(error)}\n`,
      );
    } finally {
      stubs.forEach((s, i) => {
        s.forward = s.target[s.key] as Fn;
        if (foreign[i] !== undefined) s.target[s.key] = foreign[i];
      });
      state = STARTED;
    }
  };

  const eager =
    process.argv[1] === undefined ||
    process.argv[1] === '-' ||
    (process as { _eval?: unknown })._eval !== undefined ||
    setting('TRUSTFLOW_REPORT') === 'signal' ||
    setting('TRUSTFLOW_PLUGINS')
      .split(',')
      .some((p) => p.trim() === 'async-hooks');
  if (eager || typeof nodeModule.registerHooks !== 'function') {
    start();
    return;
  }

  // (taken before the stubs are in place)
  const originalSetTimeout = setTimeout;
  const channels = process.getBuiltinModule(
    'node:diagnostics_channel',
  ) as typeof import('node:diagnostics_channel');
  const stub = (target: Record<string, unknown>, key: string): void => {
    const original = target[key];
    if (typeof original !== 'function') return;
    const entry: Stub = {
      target,
      key,
      original: original as Fn,
      forward: original as Fn,
      stub: function (this: unknown, ...args: unknown[]) {
        if (state === WAITING) start();
        return Reflect.apply(entry.forward, this, args);
      },
    };
    // name, length, and util.promisify.custom (setTimeout has it)
    Object.defineProperty(entry.stub, 'name', { value: original.name, configurable: true });
    Object.defineProperty(entry.stub, 'length', { value: original.length, configurable: true });
    for (const symbol of Object.getOwnPropertySymbols(original)) {
      Object.defineProperty(entry.stub, symbol, Object.getOwnPropertyDescriptor(original, symbol)!);
    }
    target[key] = entry.stub;
    stubs.push(entry);
  };
  stub(process as unknown as Record<string, unknown>, 'getBuiltinModule');
  stub(globalThis as unknown as Record<string, unknown>, 'setTimeout');
  stub(globalThis as unknown as Record<string, unknown>, 'setInterval');

  const hooks = nodeModule.registerHooks({
    resolve(specifier, context, next) {
      const result = next(specifier, context);
      // the main module's own resolution has no parent
      if (state !== WAITING || context.parentURL === undefined) return result;
      start();
      return runtime ? runtime.lateResolve(specifier, result) : result;
    },
  });
  cleanups.push(() => hooks.deregister());

  // fetch() and WebSocket load undici (and node:net) inside Node, where no hook sees it. The
  // connection in progress is tracked once net's patches are in place (asked for here).
  const onConnect = () => {
    start();
    process.getBuiltinModule('node:net');
  };
  for (const name of ['undici:client:beforeConnect', 'net.client.socket']) {
    channels.subscribe(name, onConnect);
    cleanups.push(() => channels.unsubscribe(name, onConnect));
  }

  const timer = originalSetTimeout(start, 0);
  timer.unref();
  cleanups.push(() => clearTimeout(timer));

  // A program that ends before any of the above: its exit report is still due, and so are the
  // warnings about our own settings (from the configuration reader alone, not the whole bundle:
  // still about 6 M instructions, 2 ms). OTEL_* variables are often set for a whole environment,
  // and only matter once the preload has started: they are checked then.
  const onExit = () => {
    if (state !== WAITING) return;
    if (setting('TRUSTFLOW_REPORT') === 'exit') {
      start();
      runtime?.writeReport();
      return;
    }
    state = STARTED;
    if (!Object.keys(env).some((k) => k.startsWith('TRUSTFLOW_'))) return;
    try {
      const { readConfig } =
        require('./internal/config.js') as typeof import('./internal/config.js');
      for (const warning of readConfig({}, env).warnings) process.stderr.write(`${warning}\n`);
    } catch {
      // warnings only
    }
  };
  process.on('exit', onExit);
  cleanups.push(() => process.removeListener('exit', onExit));
}

/**
 * Whether this is the main thread, without loading node:worker_threads where it can be helped:
 * loading it costs the main thread ~1.6 ms, while a worker has it loaded at bootstrap. Node's
 * list of loaded builtins shows a worker's bootstrap modules; when it shows none of them this is
 * the main thread, otherwise (or without the list) node:worker_threads answers.
 */
function isMainThread(): boolean {
  const loaded = (process as { moduleLoadList?: unknown }).moduleLoadList;
  if (
    Array.isArray(loaded) &&
    !loaded.includes('NativeModule internal/process/worker_thread_only') &&
    !loaded.includes('NativeModule internal/worker/io')
  ) {
    return true;
  }
  type WorkerThreads = typeof import('node:worker_threads');
  return (process.getBuiltinModule('node:worker_threads') as WorkerThreads).isMainThread;
}

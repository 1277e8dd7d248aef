// Side-effect entry: `node --require @trustflow/instrument app.js` or
// `node --import @trustflow/instrument app.mjs`. With TRUSTFLOW_DISABLED=1 it loads nothing else.
// The rest is one CommonJS bundle (dist/internal/preload.cjs, built by scripts/bundle.mjs from
// internal/preload.ts), loaded synchronously so that the application's first line already runs
// instrumented, in one file so that a short program does not pay for resolving ~90 modules, and
// with V8's code cache (see internal/bundle-loader.ts).
import { loadBundle } from './internal/bundle-loader.js';

const disabled = ['1', 'true', 'on', 'yes'].includes(
  (process.env.TRUSTFLOW_DISABLED ?? '').trim().toLowerCase(),
);
const running = (globalThis as Record<symbol, unknown>)[Symbol.for('@trustflow/instrument')];

// Worker threads inherit --require/--import: the main thread's instrumentation covers the process.
if (!disabled && running === undefined && isMainThread()) {
  const { fileURLToPath } = process.getBuiltinModule('node:url') as typeof import('node:url');
  try {
    loadBundle(fileURLToPath(new URL('./internal/preload.cjs', import.meta.url)));
  } catch (error) {
    // Never the application's problem: it starts without instrumentation.
    process.stderr.write(
      `trustflow: instrumentation not started: ${error instanceof Error ? error.message : String(error)}\n`,
    );
  }
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

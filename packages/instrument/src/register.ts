// Side-effect entry: `node --require @trustflow/instrument app.js` or
// `node --import @trustflow/instrument app.mjs`. With TRUSTFLOW_DISABLED=1 it loads nothing else.
// The rest is one CommonJS bundle (dist/internal/preload.cjs, built by scripts/bundle.mjs from
// internal/preload.ts), loaded synchronously so that the application's first line already runs
// instrumented, and in one file so that a short program does not pay for resolving ~90 modules.
//
// Builtins come from process.getBuiltinModule rather than `import`: an imported builtin gets an
// ES module facade built from all its exports, which for node:worker_threads alone costs ~4 ms.
type NodeModule = typeof import('node:module');
type WorkerThreads = typeof import('node:worker_threads');

const disabled = ['1', 'true', 'on', 'yes'].includes(
  (process.env.TRUSTFLOW_DISABLED ?? '').trim().toLowerCase(),
);
const running = (globalThis as Record<symbol, unknown>)[Symbol.for('@trustflow/instrument')];

// Worker threads inherit --require/--import: the main thread's instrumentation covers the process.
if (!disabled && running === undefined) {
  const { isMainThread } = process.getBuiltinModule('node:worker_threads') as WorkerThreads;
  if (isMainThread) {
    const { createRequire } = process.getBuiltinModule('node:module') as NodeModule;
    createRequire(import.meta.url)('./internal/preload.cjs');
  }
}

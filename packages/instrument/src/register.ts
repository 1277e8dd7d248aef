// Side-effect entry: `node --require @trustflow/instrument app.js` or
// `node --import @trustflow/instrument app.mjs`. With TRUSTFLOW_DISABLED=1 it loads nothing else.
// The rest is loaded synchronously (require of an ES module, so no top-level await anywhere in
// it), so that the application's first line already runs instrumented.
import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const disabled = ['1', 'true', 'on', 'yes'].includes(
  (process.env.TRUSTFLOW_DISABLED ?? '').trim().toLowerCase(),
);
const running = (globalThis as Record<symbol, unknown>)[Symbol.for('@trustflow/instrument')];

// Worker threads inherit --require/--import: the main thread's instrumentation covers the process.
if (!disabled && isMainThread && running === undefined) {
  createRequire(import.meta.url)('./internal/preload.js');
}

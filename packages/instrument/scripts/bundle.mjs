// Bundles the preload (dist/internal/preload.js and everything it imports at start-up: core, the
// fs and net plugins, @opentelemetry/api) into one CommonJS file, dist/internal/preload.cjs.
// Loading ~90 small ES modules cost a program that does nothing about 40 ms; one CommonJS file
// loaded by require() skips the module resolution and the ESM facades of node:fs and friends.
// The OpenTelemetry SDK stays outside (a chunk that requires the installed packages), loaded in
// the first event-loop turn as before. Run after `tsc -b` (the root build script does both).
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { rolldown } from 'rolldown';

const dist = fileURLToPath(new URL('../dist/internal/', import.meta.url));

// Everything that is not bundled is loaded with require() from dist/internal/ at run time.
const external = (id) =>
  id.startsWith('node:') || (id.startsWith('@opentelemetry/') && id !== '@opentelemetry/api');

const bundle = await rolldown({
  input: { preload: `${dist}preload.js` },
  platform: 'node',
  external,
  logLevel: 'warn',
  onLog(level, log, handler) {
    // Any warning (an unresolved import, a circular chunk) fails the build.
    if (level === 'warn') throw new Error(`bundle: ${log.message}`);
    handler(level, log);
  },
});
await rm(`${dist}preload.cjs`, { force: true });
const { output } = await bundle.write({
  dir: dist,
  format: 'cjs',
  entryFileNames: '[name].cjs',
  chunkFileNames: 'preload-[name].cjs',
  sourcemap: false,
});
await bundle.close();
process.stdout.write(
  `bundled ${output.map((o) => `${o.fileName} (${Math.round((o.code?.length ?? 0) / 1024)} KiB)`).join(', ')}\n`,
);

// Bundles the preload (dist/internal/preload.js and everything it imports at start-up: core, the
// fs and net plugins, @opentelemetry/api) into one CommonJS file, dist/internal/preload.cjs.
// Loading ~90 small ES modules cost a program that does nothing about 40 ms; one CommonJS file
// loaded by require() skips the module resolution and the ESM facades of node:fs and friends.
// The OpenTelemetry SDK stays outside (a chunk that requires the installed packages), loaded in
// the first event-loop turn as before. Then writes V8's code cache for the bundle. Run after
// `tsc -b` (the root build script does both).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { rolldown } from 'rolldown';
import { CACHE_KEY_MARK } from '../dist/internal/bundle-loader.js';

const dist = fileURLToPath(new URL('../dist/internal/', import.meta.url));

// Everything that is not bundled is loaded with require() from dist/internal/ at run time.
const external = (id) =>
  id.startsWith('node:') || (id.startsWith('@opentelemetry/') && id !== '@opentelemetry/api');

const bundle = await rolldown({
  input: { preload: `${dist}preload.js` },
  platform: 'node',
  external,
  // the entry exports start(); it may export more (what the SDK chunk shares with it), so that
  // the shared code stays in the one file loaded at start
  preserveEntrySignatures: 'allow-extension',
  logLevel: 'warn',
  onLog(level, log, handler) {
    // Any warning (an unresolved import, a circular chunk) fails the build.
    if (level === 'warn') throw new Error(`bundle: ${log.message}`);
    handler(level, log);
  },
});
// (chunks of an earlier build too)
for (const name of await readdir(dist)) {
  if (/^preload(-.+)?\.cjs(\.v8cache)?$/.test(name)) await rm(`${dist}${name}`, { force: true });
}
const { output } = await bundle.write({
  dir: dist,
  format: 'cjs',
  entryFileNames: '[name].cjs',
  chunkFileNames: 'preload-[name].cjs',
  sourcemap: false,
  // no comments: a smaller file to read and for V8 to scan when it compiles a lazy function
  comments: false,
});
await bundle.close();

// ASCII only, so that the loader can read the bundle as latin1 (a copy) rather than decode UTF-8
// (about 2.7 million instructions for this file): any other character, which can only be in a
// string, template or regular expression literal or an identifier once comments are gone,
// becomes a \u escape of the same meaning there.
for (const chunk of output) {
  if (chunk.type !== 'chunk' || !/[\u0080-\uffff]/.test(chunk.code)) continue;
  const escaped = chunk.code.replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  await writeFile(`${dist}${chunk.fileName}`, escaped);
}

// V8's code cache for the bundle, taken after a run of it (see src/internal/bundle-loader.ts),
// keyed by a hash of the bundle's source that the source ends with.
const file = `${dist}preload.cjs`;
const key = createHash('sha256')
  .update(await readFile(file))
  .digest('hex')
  .slice(0, 32);
await appendFile(file, `${CACHE_KEY_MARK}${key}\n`);
// The preload's defaults (no TRUSTFLOW_/OTEL_ settings), and no NODE_OPTIONS: V8 rejects a
// cache made under other V8 flags.
const env = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => !k.startsWith('TRUSTFLOW_') && !k.startsWith('OTEL_') && k !== 'NODE_OPTIONS',
  ),
);
const child = spawnSync(
  process.execPath,
  [fileURLToPath(new URL('./code-cache.mjs', import.meta.url)), file],
  { env, stdio: ['ignore', 'inherit', 'inherit'] },
);
if (child.status !== 0) throw new Error(`bundle: writing the code cache failed (${child.status})`);
const cache = await stat(`${file}.v8cache`);
const sizes = output.map((o) => `${o.fileName} (${Math.round((o.code?.length ?? 0) / 1024)} KiB)`);
sizes.push(`preload.cjs.v8cache (${Math.round(cache.size / 1024)} KiB, Node ${process.version})`);
process.stdout.write(`bundled ${sizes.join(', ')}\n`);

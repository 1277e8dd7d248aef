// Loads the preload bundle (dist/internal/preload.cjs) as a CommonJS module, with V8's code cache
// when the build left one beside it: compiling the bundle and the functions it runs at start-up
// is about a third of what the preload costs a program that does nothing.
//
// The cache (preload.cjs.v8cache) is written by scripts/bundle.mjs: it loads the bundle in a
// child process through loadBundle(file, true, warmUp), starts the instrumentation, and saves
// V8's cached data after that, so it holds the functions start-up calls too. Its first line is
// the key that ends the bundle's source; a cache whose key differs is ignored, and V8 itself rejects a cache from another V8
// version or with other flags (the bundle is then compiled as usual).
//
// Builtins come from process.getBuiltinModule: an imported builtin gets an ES module facade built
// from all its exports, which is start-up time this file exists to save.
import type * as Fs from 'node:fs';
import type NodeModule from 'node:module';
import type * as Path from 'node:path';
import type * as Vm from 'node:vm';

/** What ends the bundle's source: the key of the code cache built for it. */
export const CACHE_KEY_MARK = '\n//# trustflow-code-cache-key=';
// The same wrapper as Node's CommonJS loader; the cache is only valid for this exact text.
const HEAD = '(function (exports, require, module, __filename, __dirname) { ';
const TAIL = '\n})';

type ModuleClass = new (id: string) => NodeJS.Module;

/** How loadBundle() compiled: with the cache, without one, or with one V8 rejected. */
export type CacheUse = 'used' | 'none' | 'rejected';

export interface LoadedBundle {
  /** The bundle's exports. */
  readonly exports: Record<string, unknown>;
  readonly cache: CacheUse;
}

/** Loads (compiles and runs) the bundle; `warmUp` runs before a cache is produced. */
export function loadBundle(
  file: string,
  produceCache = false,
  warmUp?: (exports: Record<string, unknown>) => void,
): LoadedBundle {
  const fs = process.getBuiltinModule('node:fs') as typeof Fs;
  const { dirname } = process.getBuiltinModule('node:path') as typeof Path;
  const vm = process.getBuiltinModule('node:vm') as typeof Vm;
  const nodeModule = process.getBuiltinModule('node:module') as unknown as typeof NodeModule;

  // latin1: the build leaves the bundle ASCII only (scripts/bundle.mjs), and a latin1 read is a
  // copy where utf8 would decode every byte
  const source = fs.readFileSync(file, 'latin1');
  const at = source.lastIndexOf(CACHE_KEY_MARK);
  const key = at < 0 ? undefined : `${source.slice(at + CACHE_KEY_MARK.length).trim()}\n`;
  const cacheFile = `${file}.v8cache`;
  let cachedData: Buffer | undefined;
  if (!produceCache && key !== undefined) {
    try {
      const data = fs.readFileSync(cacheFile);
      if (data.toString('latin1', 0, key.length) === key) cachedData = data.subarray(key.length);
    } catch {
      // no cache (or unreadable): compile as usual
    }
  }
  const script = new vm.Script(HEAD + source + TAIL, {
    filename: file,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  // A real module in require's cache, so that the bundle's SDK chunk (which requires the bundle
  // for the code they share) gets this instance rather than a second one.
  const mod = new (nodeModule.Module as unknown as ModuleClass)(file);
  mod.filename = file;
  const require = nodeModule.createRequire(file);
  require.cache[file] = mod;
  try {
    script.runInThisContext()(mod.exports, require, mod, file, dirname(file));
    mod.loaded = true;
  } catch (error) {
    delete require.cache[file];
    throw error;
  }
  const exports = mod.exports as Record<string, unknown>;
  if (produceCache && key !== undefined) {
    warmUp?.(exports);
    fs.writeFileSync(
      cacheFile,
      Buffer.concat([Buffer.from(key, 'latin1'), script.createCachedData()]),
    );
  }
  const cache = cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'used';
  return { exports, cache };
}

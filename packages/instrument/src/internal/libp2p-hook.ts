import { dirname, join } from 'node:path';

// (not `import * as`: a bundler copies a namespace import of a builtin into a new object at load)
const nodeModule = process.getBuiltinModule('node:module') as typeof import('node:module');

const MARK = 'trustflow-libp2p';

interface Hooks {
  deregister(): void;
}
type RegisterHooks = (hooks: {
  resolve?: (
    specifier: string,
    context: { parentURL?: string | undefined },
    next: (specifier: string, context?: object) => Resolved,
  ) => Resolved;
  load?: (
    url: string,
    context: object,
    next: (url: string, context?: object) => { format?: string | null; source?: unknown },
  ) => { format?: string | null; source?: unknown; shortCircuit?: boolean };
}) => Hooks;

/** True where Node has synchronous module customization hooks (`module.registerHooks`). */
export function hasModuleHooks(): boolean {
  return typeof (nodeModule as { registerHooks?: unknown }).registerHooks === 'function';
}

function shimSource(realUrl: string, injectUrl: string): string {
  const real = JSON.stringify(realUrl);
  return [
    `import { createLibp2p as __trustflowOriginal } from ${real};`,
    `import { wrapCreateLibp2p as __trustflowWrap } from ${JSON.stringify(injectUrl)};`,
    `export * from ${real};`,
    'export const createLibp2p = __trustflowWrap(__trustflowOriginal);',
    '',
  ].join('\n');
}

/** A resolution as module hooks see it. */
export interface Resolved {
  url: string;
  format?: string | null;
  shortCircuit?: boolean;
}

export interface Libp2pHook {
  /**
   * What the hook makes of a resolution that happened before it was registered (the one that
   * made the lazy preload start): `import 'libp2p'` as the shim, anything else as it was.
   */
  redirect(specifier: string, result: Resolved): Resolved;
  uninstall(): void;
}

/**
 * Zero-code libp2p: a resolve hook sends the application's `import 'libp2p'` to a small shim
 * module that re-exports libp2p with `createLibp2p` wrapped (libp2p-inject.ts). The shim imports
 * the real module by its file URL, which the hook lets through. Undefined where
 * `module.registerHooks` does not exist (there: pass `metrics` yourself).
 */
export function installLibp2pHook(): Libp2pHook | undefined {
  const register = (nodeModule as { registerHooks?: RegisterHooks }).registerHooks;
  if (typeof register !== 'function') return undefined;
  const injectUrl = new URL('./libp2p-inject.js', import.meta.url).href;
  const suffix = `?${MARK}`;
  const redirect = (specifier: string, result: Resolved): Resolved => {
    if (specifier !== 'libp2p' || !result.url.startsWith('file:')) return result;
    if (result.url.includes(suffix)) return result;
    return { url: `${result.url}${suffix}`, format: 'module', shortCircuit: true };
  };
  const hooks = register({
    resolve: (specifier, context, next) => redirect(specifier, next(specifier, context)),
    load(url, context, next) {
      if (!url.endsWith(suffix)) return next(url, context);
      return {
        format: 'module',
        source: shimSource(url.slice(0, -suffix.length), injectUrl),
        shortCircuit: true,
      };
    },
  });
  return { redirect, uninstall: () => hooks.deregister() };
}

/** Whether `libp2p` is installed where the application (or the current directory) can see it. */
export function libp2pInstalled(fromDirs: string[], exists: (path: string) => boolean): boolean {
  for (const start of fromDirs) {
    for (let dir = start, parent = dirname(dir); ; dir = parent, parent = dirname(dir)) {
      if (exists(join(dir, 'node_modules', 'libp2p', 'package.json'))) return true;
      if (parent === dir) break;
    }
  }
  return false;
}

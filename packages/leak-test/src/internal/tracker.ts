import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  asyncHooksAvoidPromises,
  defaultTracker as coreDefaultTracker,
  createAsyncHooksSource,
  DEFAULT_ASYNC_TYPES,
  definePlugin,
  type ResourceTracker,
  type TrustflowPlugin,
} from '@trustflow/core';
import * as fsPackage from '@trustflow/plugin-fs';
import * as netPackage from '@trustflow/plugin-net';

/**
 * The src/ and dist/ folders of this package and of the Trustflow packages it can resolve. Both,
 * because under vitest source maps rewrite dist/ frames to src/ paths, and a tracker only knows
 * the folder it was loaded from.
 */
function trustflowFolders(): string[] {
  const roots = [fileURLToPath(new URL('../..', import.meta.url))];
  for (const name of [
    '@trustflow/core',
    '@trustflow/plugin-fs',
    '@trustflow/plugin-net',
    '@trustflow/plugin-libp2p',
    '@trustflow/plugin-buffer-pool',
  ]) {
    try {
      roots.push(fileURLToPath(new URL('..', import.meta.resolve(name))));
    } catch {
      // not installed next to this package
    }
  }
  return roots.flatMap((root) => [join(root, 'src') + sep, join(root, 'dist') + sep]);
}

/** Test runner code: resources it creates during a test are not the test's. */
const RUNNER_PATHS = [
  ...trustflowFolders(),
  '/node_modules/vitest/',
  '/node_modules/@vitest/',
  '/node_modules/tinypool/',
  '/node_modules/tinyspy/',
  '/node_modules/vite-node/',
  '\\node_modules\\vitest\\',
  '\\node_modules\\@vitest\\',
  '\\node_modules\\tinypool\\',
];

/** Handle types the fs and net plugins track under their own kinds (so not twice). */
const FS_HANDLE_TYPES = ['FILEHANDLE', 'FSEVENTWRAP', 'STATWATCHER'];
const NET_HANDLE_TYPES = ['TCPWRAP', 'TCPSERVERWRAP', 'PIPEWRAP', 'PIPESERVERWRAP'];

type PluginFactory = (init?: unknown) => TrustflowPlugin;

function factory(module: object, name: string): PluginFactory | undefined {
  const candidate = (module as Record<string, unknown>)[name];
  return typeof candidate === 'function' ? (candidate as PluginFactory) : undefined;
}

/** Trackers that already had the runner paths added. */
const prepared = new WeakSet<ResourceTracker>();
/** Trackers that already got the default sources. */
const sourced = new WeakSet<ResourceTracker>();

/** Cuts test-runner frames from the tracker's creation stacks (idempotent). */
export function prepare(tracker: ResourceTracker): void {
  if (prepared.has(tracker)) return;
  prepared.add(tracker);
  // A plugin with nothing to install: enabling it registers the paths with the tracker.
  definePlugin({ name: 'leak-test-paths', internalPaths: RUNNER_PATHS, setup() {} }).enable({
    tracker,
  });
}

/** True when every resource of `tracker` has its creation stack. */
export function capturesAllStacks(tracker: ResourceTracker): boolean {
  return tracker.stackMode === 'all';
}

/**
 * The process-wide default tracker, created here (with every stack captured) unless another
 * Trustflow package created it first. Called when this package is loaded, so that in a test
 * file importing it, a buffer pool or libp2p node made later shares a tracker that gives every
 * leak its site. Creating a tracker patches nothing; the sources are enabled at the first check.
 */
export function claimDefaultTracker(): ResourceTracker {
  // The process-wide default tracker shared by Trustflow packages: a pool or libp2pMetrics()
  // created without a tracker lands in it, so the default leak check sees them too.
  return coreDefaultTracker({ stacks: 'all', scanIntervalMs: 0 });
}

/**
 * The default tracker with timers, sockets, servers and fs resources tracked: the async-hooks
 * source for handles, plus `fsPlugin()` and `netPlugin()` where those packages provide them
 * (handle types they cover are left out of the async-hooks source so nothing counts twice).
 */
export function defaultTracker(): ResourceTracker {
  const tracker = claimDefaultTracker();
  if (!sourced.has(tracker)) {
    sourced.add(tracker);
    prepare(tracker);
    const fsPlugin = factory(fsPackage, 'fsPlugin');
    const netPlugin = factory(netPackage, 'netPlugin');
    const covered = new Set([
      ...(fsPlugin ? FS_HANDLE_TYPES : []),
      ...(netPlugin ? NET_HANDLE_TYPES : []),
    ]);
    // Timers are only visible through async_hooks. Where Node cannot leave promises out of a
    // hook (before 24), tracking them costs await-heavy code: accepted in tests, and said once.
    if (!asyncHooksAvoidPromises()) {
      process.emitWarning(
        'this Node cannot create an async hook without promise hooks; timers and handles are ' +
          'tracked anyway, which slows await-heavy tests (Node >= 24 has no such cost)',
        { type: 'TrustflowWarning', code: 'TRUSTFLOW_LEAK_TEST_PROMISE_HOOKS' },
      );
    }
    const plugins = [
      createAsyncHooksSource({
        types: DEFAULT_ASYNC_TYPES.filter((t) => !covered.has(t)),
        forceWithPromiseHooks: true,
      }),
      ...(fsPlugin ? [fsPlugin()] : []),
      ...(netPlugin ? [netPlugin()] : []),
    ];
    for (const plugin of plugins) plugin.enable({ tracker });
  }
  return tracker;
}

import { execFile } from 'node:child_process';
import { channel } from 'node:diagnostics_channel';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createPluginHost,
  createResourceTracker,
  definePlugin,
  type PluginContext,
  type ResourceTracker,
} from '../src/index.js';

const trackers: ResourceTracker[] = [];
afterEach(() => {
  for (const t of trackers.splice(0)) t.shutdown();
});
function tracker(): ResourceTracker {
  const t = createResourceTracker({ scanIntervalMs: 0 });
  trackers.push(t);
  return t;
}

/** (an index signature, so that TypeScript takes any object as a `this`) */
interface Named {
  name?: string;
  [key: string]: unknown;
}

const target = {
  greet(this: Named, who: string): string {
    return `hello ${who} from ${this.name ?? 'nobody'}`;
  },
  fail(): never {
    throw new TypeError('original failure');
  },
};

describe('definePlugin', () => {
  it('patches, restores the identical original on disable, and is idempotent', () => {
    const originalGreet = target.greet;
    let setups = 0;
    let ctxRef: PluginContext | undefined;
    const plugin = definePlugin({
      name: 'greeter',
      setup(ctx) {
        setups++;
        ctxRef = ctx;
        ctx.patch(
          target,
          'greet',
          (original) =>
            function (this: Named, ...args: [string]) {
              if (ctx.active) ctx.tracker.track({}, { kind: 'test.greet' }).release();
              return original.apply(this, args);
            },
        );
      },
    });
    const t = tracker();
    plugin.enable({ tracker: t });
    plugin.enable({ tracker: t });
    expect(setups).toBe(1);
    expect(plugin.enabled).toBe(true);
    expect(target.greet).not.toBe(originalGreet);
    // same result and `this` as the original
    expect(target.greet.call({ name: 'me' }, 'you')).toBe('hello you from me');
    expect(t.snapshot().opened['test.greet']).toBe(1);
    plugin.disable();
    plugin.disable();
    expect(target.greet).toBe(originalGreet);
    expect(plugin.enabled).toBe(false);
    expect(ctxRef?.active).toBe(false);
    target.greet('again');
    expect(t.snapshot().opened['test.greet']).toBe(1);
  });

  it("gives a wrapper the original's name, length and symbol properties", () => {
    const custom = Symbol.for('nodejs.util.promisify.custom');
    const lib = {
      read(_path: string, _cb: () => void) {},
    };
    const promised = async () => 'p';
    Object.defineProperty(lib.read, custom, { value: promised, configurable: true });
    const plugin = definePlugin({
      name: 'identity',
      setup(ctx) {
        ctx.patch(
          lib,
          'read',
          (original) =>
            (...args: Parameters<typeof original>) =>
              original(...args),
        );
      },
    });
    plugin.enable({ tracker: tracker() });
    expect(lib.read.name).toBe('read');
    expect(lib.read.length).toBe(2);
    expect((lib.read as unknown as Record<symbol, unknown>)[custom]).toBe(promised);
    plugin.disable();
  });

  it('leaves a wrapper that someone put on top, and becomes a pass-through', () => {
    const originalGreet = target.greet;
    const t = tracker();
    const plugin = definePlugin({
      name: 'under',
      setup(ctx) {
        ctx.patch(
          target,
          'greet',
          (original) =>
            function (this: Named, ...args: [string]) {
              if (ctx.active) ctx.tracker.track({}, { kind: 'test.under' }).release();
              return original.apply(this, args);
            },
        );
      },
    });
    plugin.enable({ tracker: t });
    const ours = target.greet;
    const theirs = function (this: Named, who: string) {
      return ours.call(this, who);
    };
    target.greet = theirs;
    plugin.disable();
    expect(target.greet).toBe(theirs);
    expect(target.greet('x')).toBe('hello x from nobody');
    expect(t.snapshot().opened['test.under']).toBeUndefined();
    target.greet = originalGreet;
  });

  it('unsubscribes channels on disable and isolates listener errors', () => {
    const t = tracker();
    const seen: unknown[] = [];
    const plugin = definePlugin({
      name: 'listener',
      setup(ctx) {
        ctx.subscribe('trustflow.test.channel', (message) => {
          seen.push(message);
          throw new Error('listener failure');
        });
      },
    });
    plugin.enable({ tracker: t });
    const ch = channel('trustflow.test.channel');
    expect(ch.hasSubscribers).toBe(true);
    expect(() => ch.publish({ n: 1 })).not.toThrow();
    expect(seen).toEqual([{ n: 1 }]);
    expect(t.report().instrumentationErrors).toBe(1);
    plugin.disable();
    expect(ch.hasSubscribers).toBe(false);
  });

  it('rolls back a setup that throws halfway, and keeps the error away from the caller', () => {
    const originalFail = target.fail;
    const t = tracker();
    const cleaned: string[] = [];
    const plugin = definePlugin({
      name: 'broken',
      setup(ctx) {
        ctx.patch(target, 'fail', (original) => original);
        ctx.onDisable(() => cleaned.push('cleanup'));
        throw new Error('setup failed');
      },
    });
    expect(() => plugin.enable({ tracker: t })).not.toThrow();
    expect(plugin.enabled).toBe(false);
    expect(target.fail).toBe(originalFail);
    expect(cleaned).toEqual(['cleanup']);
    expect(t.report().instrumentationErrors).toBe(1);
  });

  it('guard() passes results through and swallows only instrumentation errors', () => {
    const t = tracker();
    let guarded: ((n: number) => number | undefined) | undefined;
    const plugin = definePlugin({
      name: 'guard',
      setup(ctx) {
        guarded = ctx.guard('double', (n: number) => {
          if (n < 0) throw new Error('negative');
          return n * 2;
        });
      },
    });
    plugin.enable({ tracker: t });
    expect(guarded?.(2)).toBe(4);
    expect(guarded?.(-1)).toBeUndefined();
    expect(t.report().instrumentationErrors).toBe(1);
    plugin.disable();
  });

  it('host enables a list with one context and disables in reverse order', () => {
    const order: string[] = [];
    const make = (name: string) =>
      definePlugin({
        name,
        setup() {
          order.push(`on:${name}`);
          return () => order.push(`off:${name}`);
        },
      });
    const host = createPluginHost({ tracker: tracker() }, [make('a'), make('b')]);
    host.enable();
    host.disable();
    expect(order).toEqual(['on:a', 'on:b', 'off:b', 'off:a']);
  });
});

describe('ctx.whenLoaded', () => {
  // Each scenario runs in its own process: this one has loaded most builtins already.
  const scenario = async (name: string): Promise<string[]> => {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [fileURLToPath(new URL('./fixtures/when-loaded.mjs', import.meta.url)), name],
      { timeout: 10_000 },
    );
    expect(stderr).toBe('');
    return JSON.parse(stdout) as string[];
  };

  it.each([
    ['require', 'require("zlib")'],
    ['import', 'import("node:zlib")'],
    ['get-builtin', 'process.getBuiltinModule("zlib")'],
  ])('patches when the program first asks for the builtin: %s (%s)', async (name) => {
    expect(await scenario(name)).toEqual([
      'enabled, zlib loaded: false',
      'applied',
      'wrapper',
      'getBuiltinModule restored: true',
    ]);
  });

  it('patches at once when the builtin is loaded already', async () => {
    expect(await scenario('loaded-before')).toEqual([
      'applied',
      'enabled, zlib loaded: true',
      'wrapper',
      'getBuiltinModule restored: true',
    ]);
  });

  it('any of the named builtins triggers it; others do not', async () => {
    expect(await scenario('other-id')).toEqual([
      'enabled, zlib loaded: false',
      'applied',
      'zlib loaded: true',
      'getBuiltinModule restored: true',
    ]);
    expect(await scenario('unrelated')).toEqual([
      'enabled, zlib loaded: false',
      'getBuiltinModule restored: false',
    ]);
  });

  it('the returned function applies it now, once', async () => {
    expect(await scenario('fire')).toEqual([
      'enabled, zlib loaded: false',
      'applied',
      'getBuiltinModule restored: true',
    ]);
  });

  it('never applies after disable, and removes its watch', async () => {
    expect(await scenario('disabled-first')).toEqual([
      'enabled, zlib loaded: false',
      'getBuiltinModule restored: true',
    ]);
  });

  it('a patch that throws is reported, and the program gets its module', async () => {
    expect(await scenario('throws')).toEqual([
      'enabled, zlib loaded: false',
      'applied',
      'errors: 1',
      'getBuiltinModule restored: true',
    ]);
  });
});

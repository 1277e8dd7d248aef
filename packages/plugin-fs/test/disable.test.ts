import { once } from 'node:events';
import fs, * as fsNamespace from 'node:fs';
import fsp from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createResourceTracker, type ResourceTracker } from '@trustflow/core';
import { afterEach, describe, expect, it } from 'vitest';
import { fsPlugin } from '../src/index.js';
import { type Fixture, setup } from './helpers.js';

const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const f of fixtures.splice(0)) await f.cleanup();
});
function fixture(): { f: Fixture; file: string } {
  const f = setup();
  fixtures.push(f);
  const file = join(f.dir, 'data.txt');
  fs.writeFileSync(file, 'hello');
  return { f, file };
}

type Slot = [object, string];
function slots(): Slot[] {
  const fsKeys = [
    'open',
    'openSync',
    'close',
    'closeSync',
    'createReadStream',
    'createWriteStream',
    'opendir',
    'opendirSync',
    'watch',
    'watchFile',
  ];
  return [
    ...fsKeys.map((k): Slot => [fs, k]),
    [fsp, 'open'],
    [fsp, 'opendir'],
    [fs.ReadStream.prototype, '_construct'],
    [fs.WriteStream.prototype, '_construct'],
    [fs.Dir.prototype, 'close'],
    [fs.Dir.prototype, 'closeSync'],
  ];
}
const read = ([target, key]: Slot) => (target as Record<string, unknown>)[key];

/** Exercises every API family once, closing everything. */
async function exercise(dir: string, file: string): Promise<void> {
  fs.closeSync(fs.openSync(file, 'r'));
  const fd = await promisify(fs.open)(file, 'r');
  await promisify(fs.close)(fd);
  await (await fsp.open(file, 'r')).close();
  const stream = fs.createReadStream(file);
  stream.resume();
  await once(stream, 'close');
  fs.opendirSync(dir).closeSync();
  await (await fsp.opendir(dir)).close();
  fs.watch(dir).close();
  fs.watchFile(file, () => {});
  fs.unwatchFile(file);
}

describe('disable', () => {
  it('restores every original, identity-equal, also for ESM named imports', async () => {
    const before = slots().map(read);
    const namedBefore = fsNamespace.openSync;
    const { f, file } = fixture();
    const trackerReport = Object.getPrototypeOf(f.tracker).report;
    expect(f.tracker.report).not.toBe(trackerReport);
    await exercise(f.dir, file); // also patches the watcher prototypes
    const watcherProto = Object.getPrototypeOf(fs.watch(f.dir)) as { close: unknown };
    const statWatcherProto = Object.getPrototypeOf(fs.watchFile(file, () => {})) as {
      stop: unknown;
    };
    fs.unwatchFile(file);
    const patched = slots().map(read);
    for (let i = 0; i < before.length; i++) expect(patched[i]).not.toBe(before[i]);
    expect(fsNamespace.openSync).not.toBe(namedBefore);
    f.plugin.disable();
    expect(f.plugin.enabled).toBe(false);
    const after = slots().map(read);
    for (let i = 0; i < before.length; i++) expect(after[i]).toBe(before[i]);
    expect(fsNamespace.openSync).toBe(namedBefore);
    expect(f.tracker.report).toBe(trackerReport);
    expect(Object.hasOwn(watcherProto, 'close')).toBe(true);
    const probe = fs.watch(f.dir);
    expect(Object.getPrototypeOf(probe).close).toBe(watcherProto.close);
    probe.close();
    expect(statWatcherProto.stop).toBe(
      Object.getPrototypeOf(fs.watchFile(file, () => {})).stop as unknown,
    );
    fs.unwatchFile(file);
  });

  it('leaves no telemetry afterwards and releases what was still open', async () => {
    const { f, file } = fixture();
    const open = fs.openSync(file, 'r');
    const stream = fs.createReadStream(file);
    const handle = await fsp.open(file, 'r');
    const dir = await fsp.opendir(f.dir);
    f.plugin.disable();
    const snapshot = f.tracker.snapshot();
    expect(Object.values(snapshot.active).every((n) => n === 0)).toBe(true);
    const spans = f.tracing.spans().length;
    const metrics = JSON.stringify(
      (await f.metrics.collect()).map((m) => [m.descriptor.name, m.dataPoints.length]),
    );
    await exercise(f.dir, file);
    fs.closeSync(open);
    await handle.close();
    await dir.close();
    stream.destroy();
    await once(stream, 'close');
    expect(f.tracker.snapshot().opened).toEqual(snapshot.opened);
    expect(f.tracker.snapshot().closed).toEqual(snapshot.closed);
    expect(f.tracing.spans()).toHaveLength(spans);
    const collected = await f.metrics.collect();
    expect(collected.find((m) => m.descriptor.name === 'trustflow.fd.untracked')).toBeUndefined();
    expect(
      JSON.stringify(
        collected
          .filter((m) => m.descriptor.name !== 'trustflow.fd.untracked')
          .map((m) => [m.descriptor.name, m.dataPoints.length]),
      ),
    ).toBe(metrics.replace(/,\["trustflow.fd.untracked",\d+\]/, ''));
    expect(f.tracker.report().extra?.fdInventory).toBeUndefined();
  });

  it('enable is idempotent, and the plugin can be enabled again after disable', async () => {
    const { f, file } = fixture();
    f.plugin.enable({ tracker: f.tracker });
    fs.closeSync(fs.openSync(file, 'r'));
    expect(f.tracker.snapshot().opened['fs.fd']).toBe(1);
    f.plugin.disable();
    f.plugin.enable({ tracker: f.tracker });
    fs.closeSync(fs.openSync(file, 'r'));
    expect(f.tracker.snapshot().opened['fs.fd']).toBe(2);
    expect(f.tracker.snapshot().active['fs.fd']).toBe(0);
  });
});

describe('wrapped calls behave like the originals', () => {
  /** Runs `fn` with the plugin enabled, then with it disabled, and returns both outcomes. */
  async function both<T>(fn: () => T | Promise<T>): Promise<[unknown, unknown]> {
    const { f } = fixture();
    const outcome = async () => {
      try {
        return { value: await fn() };
      } catch (error) {
        return { error };
      }
    };
    const withPlugin = await outcome();
    f.plugin.disable();
    const without = await outcome();
    return [withPlugin, without];
  }

  it('throws the same errors', async () => {
    const missing = '/nonexistent/trustflow/file';
    for (const call of [
      () => fs.openSync(missing, 'r'),
      () => (fs.openSync as (...args: unknown[]) => number)(42),
      () => fs.closeSync(2 ** 30),
      () => fs.open(missing, 'r', undefined as never),
      () => fsp.open(missing, 'r'),
      () => fs.opendirSync(missing),
      () => fs.watch(missing),
      () => fs.createReadStream(missing, { start: -1 }),
    ]) {
      const [a, b] = await both(call);
      expect(a).toEqual(b);
      expect((a as { error?: unknown }).error).toBeInstanceOf(Error);
    }
  });

  it('gives callbacks the same arguments and `this`', async () => {
    const missing = '/nonexistent/trustflow/file';
    const capture = () =>
      new Promise<unknown>((resolve) => {
        fs.open(missing, 'r', function (this: unknown, ...args: unknown[]) {
          resolve({ self: (this as object)?.constructor?.name, args });
        });
      });
    const [a, b] = await both(capture);
    expect(a).toEqual(b);
    const { file } = fixture();
    const okCapture = () =>
      new Promise<unknown>((resolve) => {
        fs.open(file, 'r', function (this: unknown, ...args: unknown[]) {
          fs.closeSync(args[1] as number);
          resolve({ self: (this as object)?.constructor?.name, types: args.map((x) => typeof x) });
        });
      });
    const [c, d] = await both(okCapture);
    expect(c).toEqual(d);
    expect(c).toEqual({ value: { self: undefined, types: ['object', 'number'] } });
  });

  it('returns the same kinds of values, and keeps name and length', async () => {
    const { f, file } = fixture();
    const fd = fs.openSync(file, 'r');
    expect(typeof fd).toBe('number');
    fs.closeSync(fd);
    const reader = fs.createReadStream(file);
    const writer = fs.createWriteStream(join(f.dir, 'w'));
    expect(reader).toBeInstanceOf(fs.ReadStream);
    expect(writer).toBeInstanceOf(fs.WriteStream);
    reader.destroy();
    writer.destroy();
    await Promise.all([once(reader, 'close'), once(writer, 'close')]);
    const dir = fs.opendirSync(f.dir);
    expect(dir).toBeInstanceOf(fs.Dir);
    expect(dir.closeSync()).toBeUndefined();
    expect(fs.close(fs.openSync(file, 'r'))).toBeUndefined();
    const watcher = fs.watch(f.dir);
    expect(watcher.close()).toBeUndefined();
    for (const slot of slots()) {
      const wrapped = read(slot) as Function;
      expect(wrapped.name.length).toBeGreaterThan(0);
    }
    const before = slots().map((s) => [(read(s) as Function).name, (read(s) as Function).length]);
    f.plugin.disable();
    const after = slots().map((s) => [(read(s) as Function).name, (read(s) as Function).length]);
    expect(before).toEqual(after);
  });

  it('never lets an error inside instrumentation reach the application', async () => {
    const real = createResourceTracker({ scanIntervalMs: 0 });
    const broken = Object.create(real) as ResourceTracker;
    const boom = () => {
      throw new Error('instrumentation failure');
    };
    Object.assign(broken, { track: boom, captureSite: boom, report: boom, snapshot: boom });
    const { f, file } = fixture();
    f.plugin.disable();
    const plugin = fsPlugin();
    plugin.enable({ tracker: broken });
    try {
      await exercise(f.dir, file);
      const stream = fs.createReadStream(file, { fd: fs.openSync(file, 'r') });
      stream.resume();
      await once(stream, 'close');
    } finally {
      plugin.disable();
      real.shutdown();
    }
  });
});

import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  asyncHooksAvoidPromises,
  createAsyncHooksSource,
  createResourceTracker,
  type ResourceTracker,
  type TrustflowPlugin,
} from '../src/index.js';

const here = new URL(import.meta.url).pathname;
const supported = asyncHooksAvoidPromises();
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function start(options = { forceWithPromiseHooks: !supported }): {
  tracker: ResourceTracker;
  source: TrustflowPlugin;
} {
  const tracker = createResourceTracker({ scanIntervalMs: 0, stacks: 'all' });
  const source = createAsyncHooksSource(options);
  source.enable({ tracker });
  cleanups.push(
    () => tracker.shutdown(),
    () => source.disable(),
  );
  return { tracker, source };
}

/** Destroy hooks run asynchronously after close: this waits for them to be delivered. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

async function lineOf(marker: string): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const lines = (await readFile(here, 'utf8')).split('\n');
  return lines.findIndex((l) => l.includes(marker) && !l.includes('lineOf(')) + 1;
}

describe('async-hooks source', () => {
  it('reports a leftover setInterval and a listening server with their lines; closed ones are not', async () => {
    const { tracker } = start();
    const keep = setInterval(() => {}, 60_000); // MARK:interval
    const cleared = setInterval(() => {}, 60_000);
    const server = createServer().listen(0, '127.0.0.1'); // MARK:server
    await once(server, 'listening');
    const closed = createServer().listen(0, '127.0.0.1');
    await once(closed, 'listening');
    clearInterval(cleared);
    closed.close();
    await once(closed, 'close');
    await settle();

    const leaks = tracker.report({ includeOpen: true }).leaks;
    cleanups.push(
      () => clearInterval(keep),
      () => new Promise((r) => server.close(r)),
    );
    const timers = leaks.filter((l) => l.kind === 'timer');
    const servers = leaks.filter((l) => l.kind === 'async.TCPSERVERWRAP');
    expect(timers.map((l) => l.site)).toEqual([`${here}:${await lineOf('MARK:interval')}:18`]);
    expect(timers[0]?.sample.attributes).toEqual({ hasRef: true });
    expect(servers).toHaveLength(1);
    expect(servers[0]?.site).toMatch(new RegExp(`^${here}:${await lineOf('MARK:server')}:\\d+$`));
  });

  it('reports hasRef false for an unref timer and releases on clear', async () => {
    const { tracker } = start();
    const timer = setTimeout(() => {}, 60_000).unref();
    const open = tracker.report({ includeOpen: true }).leaks.filter((l) => l.kind === 'timer');
    expect(open.map((l) => l.sample.attributes.hasRef)).toEqual([false]);
    clearTimeout(timer);
    await settle();
    expect(tracker.snapshot().active.timer).toBe(0);
  });

  it('does not report closed FileHandles or zlib streams (their destroy waits for GC)', async () => {
    const { tracker } = start();
    const { open } = await import('node:fs/promises');
    const { createGzip, gzipSync } = await import('node:zlib');
    const handle = await open(here);
    await handle.close();
    gzipSync('x');
    const gzip = createGzip();
    gzip.end('y');
    gzip.resume();
    await once(gzip, 'close');
    await settle();
    const kinds = tracker.report({ includeOpen: true }).leaks.map((l) => l.kind);
    expect(kinds.filter((k) => k === 'async.FILEHANDLE' || k === 'async.ZLIB')).toEqual([]);
  });

  it('never tracks promises', async () => {
    const { tracker } = start();
    for (let i = 0; i < 100; i++) await Promise.resolve(i);
    const kinds = Object.keys(tracker.snapshot().opened);
    expect(kinds.filter((k) => k.includes('PROMISE'))).toEqual([]);
  });

  it('disable stops tracking and forgets its handles', async () => {
    const { tracker, source } = start();
    const t1 = setTimeout(() => {}, 60_000);
    source.disable();
    expect(source.enabled).toBe(false);
    expect(tracker.snapshot().active.timer).toBe(0);
    const t2 = setTimeout(() => {}, 60_000);
    expect(tracker.snapshot().opened.timer).toBe(1);
    clearTimeout(t1);
    clearTimeout(t2);
  });

  it.runIf(!supported)('stays off where trackPromises: false is unsupported, unless forced', () => {
    const { tracker } = start({ forceWithPromiseHooks: false });
    const t = setTimeout(() => {}, 60_000);
    clearTimeout(t);
    expect(tracker.snapshot().opened.timer).toBeUndefined();
  });

  it('does not keep a process alive: a script that enables it exits at once', async () => {
    const script = `
      import { createResourceTracker, createAsyncHooksSource } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
      const tracker = createResourceTracker();
      createAsyncHooksSource({ forceWithPromiseHooks: true }).enable({ tracker });
      setTimeout(() => {}, 10);
    `;
    const started = performance.now();
    const { stderr } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', script],
      {
        timeout: 10_000,
      },
    );
    expect(stderr).toBe('');
    // The tracker's own scan timer runs every 60 s: exiting well before it proves it is unref'd.
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

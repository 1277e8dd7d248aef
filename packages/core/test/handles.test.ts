import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import timers from 'node:timers';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createHandlesSource,
  createResourceTracker,
  type ResourceTracker,
  type TrustflowPlugin,
} from '../src/index.js';

const here = new URL(import.meta.url).pathname;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function start(): { tracker: ResourceTracker; source: TrustflowPlugin } {
  const tracker = createResourceTracker({ scanIntervalMs: 0, stacks: 'all' });
  const source = createHandlesSource();
  source.enable({ tracker });
  cleanups.push(
    () => tracker.shutdown(),
    () => source.disable(),
  );
  return { tracker, source };
}

async function lineOf(marker: string): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const lines = (await readFile(here, 'utf8')).split('\n');
  return lines.findIndex((l) => l.includes(marker) && !l.includes('lineOf(')) + 1;
}

const active = (t: ResourceTracker, kind: string) => t.snapshot().active[kind] ?? 0;

describe('handles source: timers', () => {
  it('reports a leftover setInterval and setTimeout with their lines; cleared and fired ones are not', async () => {
    const { tracker } = start();
    const keep = setInterval(() => {}, 60_000); // MARK:interval
    const later = setTimeout(() => {}, 60_000); // MARK:timeout
    clearInterval(setInterval(() => {}, 60_000));
    clearTimeout(setTimeout(() => {}, 60_000));
    let fired = false;
    await new Promise<void>((resolve) =>
      setTimeout(() => {
        fired = true;
        resolve();
      }, 1),
    );
    expect(fired).toBe(true);
    const leaks = tracker.report({ includeOpen: true }).leaks;
    expect(leaks.map((l) => [l.kind, l.count])).toEqual([
      ['timer', 1],
      ['timer', 1],
    ]);
    const sites = leaks.map((l) => l.site).sort();
    expect(sites).toEqual(
      [`${here}:${await lineOf('MARK:interval')}`, `${here}:${await lineOf('MARK:timeout')}`].map(
        (s) => expect.stringContaining(s),
      ),
    );
    expect(leaks[0]?.sample.attributes).toMatchObject({ hasRef: true });
    clearInterval(keep);
    clearTimeout(later);
    expect(active(tracker, 'timer')).toBe(0);
    // two left, two cleared, one fired
    expect(tracker.snapshot().closed.timer).toBe(5);
  });

  it('every way to end a timer releases it: close(), using, clear by number, node:timers', () => {
    const { tracker } = start();
    setTimeout(() => {}, 60_000).close();
    {
      using _t = setInterval(() => {}, 60_000);
    }
    const numbered = setTimeout(() => {}, 60_000);
    clearTimeout(+numbered);
    const viaString = setInterval(() => {}, 60_000);
    clearInterval(String(+viaString) as never);
    timers.clearTimeout(timers.setTimeout(() => {}, 60_000));
    // clearTimeout clears intervals too, and the other way round (as in browsers)
    clearTimeout(setInterval(() => {}, 60_000));
    clearInterval(setTimeout(() => {}, 60_000));
    expect(active(tracker, 'timer')).toBe(0);
    expect(tracker.snapshot().opened.timer).toBe(7);
  });

  it('an unref() timer is reported without hasRef; refresh() after firing tracks it again', async () => {
    const { tracker } = start();
    const background = setInterval(() => {}, 60_000).unref();
    let runs = 0;
    const t = setTimeout(() => runs++, 1);
    await promisify(setTimeout)(20);
    expect(runs).toBe(1);
    expect(active(tracker, 'timer')).toBe(1); // only the unref'd interval
    expect(tracker.report({ includeOpen: true }).leaks[0]?.sample.attributes).toMatchObject({
      hasRef: false,
    });
    t.refresh();
    expect(active(tracker, 'timer')).toBe(2);
    await promisify(setTimeout)(20);
    expect(runs).toBe(2);
    expect(active(tracker, 'timer')).toBe(1);
    clearInterval(background);
  });

  it('a timeout that refreshes itself from its callback is open until its last run', async () => {
    const { tracker } = start();
    let runs = 0;
    const opens: number[] = [];
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        opens.push(active(tracker, 'timer'));
        if (++runs < 3) t.refresh();
        else resolve();
      }, 1);
    });
    // released as each run starts, open again after each refresh
    expect(opens).toEqual([0, 0, 0]);
    expect(active(tracker, 'timer')).toBe(0);
    expect(tracker.snapshot().opened.timer).toBe(3);
  });

  it('keeps the timer API as it was: arguments, this, errors, promisify', async () => {
    start();
    const got = await new Promise((resolve) => setTimeout((a, b) => resolve([a, b]), 1, 'x', 2));
    expect(got).toEqual(['x', 2]);
    expect(() => setTimeout('not a function' as never, 1)).toThrow(TypeError);
    expect(await promisify(setTimeout)(1, 'value')).toBe('value');
    expect(setTimeout.name).toBe('setTimeout');
  });

  it('disable() puts every original back and releases what it tracked', () => {
    const before = [setTimeout, setInterval, clearTimeout, clearInterval, timers.setTimeout];
    const { source, tracker } = start();
    expect(setTimeout).not.toBe(before[0]);
    const open = setInterval(() => {}, 60_000);
    expect(active(tracker, 'timer')).toBe(1);
    source.disable();
    expect(active(tracker, 'timer')).toBe(0);
    clearInterval(open);
    expect([setTimeout, setInterval, clearTimeout, clearInterval, timers.setTimeout]).toEqual(
      before,
    );
    setTimeout(() => {}, 1).unref();
    expect(tracker.snapshot().opened.timer).toBe(1);
  });

  it('timers created inside tracker.untracked() are not tracked', () => {
    const { tracker } = start();
    const t = tracker.untracked(() => setInterval(() => {}, 60_000));
    expect(active(tracker, 'timer')).toBe(0);
    clearInterval(t);
  });
});

describe('handles source: child processes, workers, UDP sockets', () => {
  it('tracks each from its creating line until it ends', async () => {
    const { tracker } = start();
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 100)']); // MARK:spawn
    const worker = new Worker('setTimeout(() => {}, 100)', { eval: true }); // MARK:worker
    const udp = createSocket('udp4'); // MARK:udp
    const open = tracker.report({ includeOpen: true }).leaks;
    expect(Object.fromEntries(open.map((l) => [l.kind, l.site]))).toEqual({
      'async.PROCESSWRAP': expect.stringContaining(`${here}:${await lineOf('MARK:spawn')}`),
      'async.WORKER': expect.stringContaining(`${here}:${await lineOf('MARK:worker')}`),
      'async.UDPWRAP': expect.stringContaining(`${here}:${await lineOf('MARK:udp')}`),
    });
    const udpClosed = once(udp, 'close');
    udp.close();
    await Promise.all([once(child, 'exit'), once(worker, 'exit'), udpClosed]);
    expect(tracker.snapshot().active).toMatchObject({
      'async.PROCESSWRAP': 0,
      'async.WORKER': 0,
      'async.UDPWRAP': 0,
    });
  });

  it('a child process that fails to spawn is released, and its error still reaches the app', async () => {
    const { tracker } = start();
    const child = spawn('/nonexistent/trustflow-no-such-program');
    const [error] = (await once(child, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ENOENT');
    await once(child, 'close');
    expect(active(tracker, 'async.PROCESSWRAP')).toBe(0);
  });
});

import { collectGarbage } from '@trustflow/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { createResourceTracker, type LeakEvent, type ResourceTracker } from '../src/index.js';

const here = new URL(import.meta.url).pathname;
const trackers: ResourceTracker[] = [];
function tracker(options: Parameters<typeof createResourceTracker>[0] = {}): ResourceTracker {
  const t = createResourceTracker({ scanIntervalMs: 0, ...options });
  trackers.push(t);
  return t;
}
afterEach(() => {
  for (const t of trackers.splice(0)) t.shutdown();
});

/** Line number (1-based) of the first line in this file containing `marker`. */
async function lineOf(marker: string): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const lines = (await readFile(here, 'utf8')).split('\n');
  const index = lines.findIndex((l) => l.includes(marker) && !l.includes('lineOf('));
  if (index < 0) throw new Error(`marker ${marker} not found`);
  return index + 1;
}

function nextLeak(t: ResourceTracker): Promise<LeakEvent> {
  return new Promise((resolve) => {
    const off = t.onLeak((leak) => {
      off();
      resolve(leak);
    });
  });
}

describe('gc-unreleased', () => {
  it('reports an object dropped without release, with the creating file:line', async () => {
    const t = tracker({ stacks: 'all' });
    const leaked = nextLeak(t);
    (() => {
      t.track({ payload: 'x' }, { kind: 'test.thing' }); // MARK:dropped
    })();
    await collectGarbage();
    const leak = await leaked;
    expect(leak.reason).toBe('gc-unreleased');
    expect(leak.kind).toBe('test.thing');
    expect(leak.site).toMatch(new RegExp(`${here}:${await lineOf('MARK:dropped')}:\\d+$`));
    const report = t.report();
    expect(report.leaks).toHaveLength(1);
    expect(report.leaks[0]).toMatchObject({
      kind: 'test.thing',
      reason: 'gc-unreleased',
      count: 1,
    });
    expect(report.leaks[0]?.stack[0]).toContain(here);
  });

  it('release({ collected: true }) reports a collection learned elsewhere, once', async () => {
    const t = tracker({ stacks: 'all' });
    const leaks: LeakEvent[] = [];
    t.onLeak((l) => leaks.push(l));
    const kept = { fd: 7 };
    const h = t.track(kept, { kind: 'test.told', gc: false }); // MARK:told
    const watched = t.track({}, { kind: 'test.told' });
    h.release({ collected: true });
    h.release();
    watched.release({ collected: true });
    await collectGarbage();
    expect(leaks.map((l) => [l.kind, l.reason])).toEqual([
      ['test.told', 'gc-unreleased'],
      ['test.told', 'gc-unreleased'],
    ]);
    expect(leaks[0]?.site).toMatch(new RegExp(`${here}:${await lineOf('MARK:told')}:\\d+$`));
    expect([h.released, watched.released]).toEqual([true, true]);
    expect(t.snapshot().active['test.told']).toBe(0);
    // two sites, so two groups
    expect(t.report().leaks.map((l) => [l.kind, l.reason, l.count])).toEqual([
      ['test.told', 'gc-unreleased', 1],
      ['test.told', 'gc-unreleased', 1],
    ]);
  });

  it('never reports a released object', async () => {
    const t = tracker({ stacks: 'all' });
    const leaks: LeakEvent[] = [];
    t.onLeak((l) => leaks.push(l));
    (() => {
      const handle = t.track({ payload: 'y' }, { kind: 'test.thing' });
      handle.release();
    })();
    // a sentinel that is dropped proves finalizers ran
    const sentinel = nextLeak(t);
    (() => {
      t.track({}, { kind: 'test.sentinel' });
    })();
    await collectGarbage();
    await sentinel;
    expect(leaks.map((l) => l.kind)).toEqual(['test.sentinel']);
  });

  it('holds no strong reference to the tracked object, even with close/activity/inspect', async () => {
    const t = tracker({ stacks: 'all' });
    let ref: WeakRef<object> | undefined;
    (() => {
      const resource = { big: new Array(1000).fill(1) };
      ref = new WeakRef(resource);
      t.track(resource, {
        kind: 'test.closable',
        close: (r) => void r,
        activity: () => 1,
        inspect: () => ({ a: 1 }),
      });
    })();
    const leaked = nextLeak(t);
    await collectGarbage();
    expect(ref?.deref()).toBeUndefined();
    expect((await leaked).kind).toBe('test.closable');
  });

  it('groups repeated leaks from one line by fingerprint', async () => {
    const t = tracker({ stacks: 'all' });
    const make = () => t.track({}, { kind: 'test.repeat' }); // MARK:repeat
    let seen = 0;
    const all = new Promise<void>((resolve) => {
      t.onLeak(() => {
        if (++seen === 5) resolve();
      });
    });
    for (let i = 0; i < 5; i++) make();
    await collectGarbage();
    await all;
    const [group] = t.report().leaks;
    expect(group?.count).toBe(5);
    expect(group?.site).toContain(`:${await lineOf('MARK:repeat')}:`);
  });
});

describe('release', () => {
  it('is idempotent and updates the counts once', () => {
    const t = tracker();
    const handle = t.track({}, { kind: 'test.r' });
    handle.release();
    handle.release();
    handle[Symbol.dispose]();
    const snap = t.snapshot();
    expect(snap.active['test.r']).toBe(0);
    expect(snap.opened['test.r']).toBe(1);
    expect(snap.closed['test.r']).toBe(1);
    expect(handle.released).toBe(true);
  });

  it('works with `using`', () => {
    const t = tracker();
    {
      using _h = t.track({}, { kind: 'test.using' });
      expect(t.snapshot().active['test.using']).toBe(1);
    }
    expect(t.snapshot().active['test.using']).toBe(0);
  });
});

describe('stale', () => {
  it('reports open and idle resources; touch() keeps one fresh', () => {
    let now = 0;
    const t = tracker({ now: () => now, staleAfterMs: 1000, idleAfterMs: 500 });
    const leaks: LeakEvent[] = [];
    t.onLeak((l) => leaks.push(l));
    const idle = t.track({}, { kind: 'test.idle' });
    const busy = t.track({}, { kind: 'test.busy' });
    now = 800;
    busy.touch();
    now = 1200;
    t.scan();
    expect(leaks.map((l) => [l.kind, l.reason])).toEqual([['test.idle', 'stale']]);
    // reported once, not on every scan
    t.scan();
    expect(leaks).toHaveLength(1);
    now = 1400;
    t.scan();
    expect(leaks.map((l) => l.kind)).toEqual(['test.idle', 'test.busy']);
    expect(t.report().leaks.map((g) => g.reason)).toEqual(['stale', 'stale']);
    idle.release();
    busy.release();
    expect(t.report().leaks).toEqual([]);
  });

  it('uses the activity probe as activity', () => {
    let now = 0;
    const t = tracker({ now: () => now, staleAfterMs: 100, idleAfterMs: 100 });
    const socket = { bytes: 0 };
    t.track(socket, { kind: 'test.probe', activity: (s) => s.bytes });
    const leaks: LeakEvent[] = [];
    t.onLeak((l) => leaks.push(l));
    t.scan(); // first reading
    now = 150;
    socket.bytes = 10;
    t.scan();
    expect(leaks).toHaveLength(0);
    now = 300;
    t.scan();
    expect(leaks.map((l) => l.kind)).toEqual(['test.probe']);
  });

  it('runs the scan on an unref timer', async () => {
    const t = tracker({ scanIntervalMs: 5, staleAfterMs: 0, idleAfterMs: 0 });
    const leak = nextLeak(t);
    t.track({}, { kind: 'test.timer-scan' });
    expect((await leak).reason).toBe('stale');
  });
});

describe('closeStale', () => {
  it('closes only what matches, through the registered close', async () => {
    let now = 0;
    const t = tracker({ now: () => now, staleAfterMs: 1000, idleAfterMs: 1000 });
    const closed: string[] = [];
    const close = (r: { name: string }) => void closed.push(r.name);
    const a = { name: 'old-a' };
    const b = { name: 'old-b-other-kind' };
    const c = { name: 'young' };
    const d = { name: 'old-touched' };
    t.track(a, { kind: 'test.a', close });
    t.track(b, { kind: 'test.b', close });
    now = 500;
    const dh = t.track(d, { kind: 'test.a', close });
    now = 1600;
    t.track(c, { kind: 'test.a', close });
    dh.touch();
    now = 2000;
    const result = await t.closeStale({ kinds: ['test.a'] });
    expect(result).toEqual({ closed: 1, errors: [] });
    expect(closed).toEqual(['old-a']);
    expect(t.snapshot().active).toMatchObject({ 'test.a': 2, 'test.b': 1 });
    // explicit thresholds
    const second = await t.closeStale({ olderThan: 0, idleFor: 0 });
    expect(second.closed).toBe(3);
    expect(closed.sort()).toEqual(['old-a', 'old-b-other-kind', 'old-touched', 'young']);
  });

  it('survives a close that releases its own handle, throws, or rejects', async () => {
    const t = tracker({ staleAfterMs: 0, idleAfterMs: 0 });
    const handles = new Map<object, ReturnType<ResourceTracker['track']>>();
    const selfReleasing = {};
    handles.set(
      selfReleasing,
      t.track(selfReleasing, {
        kind: 'test.self',
        close: (r) => {
          handles.get(r)?.release();
          handles.get(r)?.release();
        },
      }),
    );
    t.track(
      {},
      {
        kind: 'test.throws',
        close: () => {
          throw new Error('boom');
        },
      },
    );
    t.track(
      {},
      { kind: 'test.rejects', close: async () => Promise.reject(new Error('async boom')) },
    );
    const result = await t.closeStale();
    expect(result.closed).toBe(1);
    expect(result.errors.map((e) => (e as Error).message).sort()).toEqual(['async boom', 'boom']);
    expect(t.snapshot().active).toMatchObject({
      'test.self': 0,
      'test.throws': 1,
      'test.rejects': 1,
    });
    expect(t.report().instrumentationErrors).toBe(2);
  });
});

describe('bounds and isolation', () => {
  it('holds the cap under a storm and counts the overflow', () => {
    const t = tracker({ maxTracked: 100 });
    const handles = [];
    for (let i = 0; i < 10_000; i++) handles.push(t.track({}, { kind: 'test.storm' }));
    let snap = t.snapshot();
    expect(snap.resources).toHaveLength(100);
    expect(snap.overflow).toBe(9_900);
    expect(snap.active['test.storm']).toBe(10_000);
    for (const h of handles) h.release();
    snap = t.snapshot();
    expect(snap.active['test.storm']).toBe(0);
    expect(snap.closed['test.storm']).toBe(10_000);
    // room again after release
    t.track({}, { kind: 'test.storm' });
    expect(t.snapshot().resources).toHaveLength(1);
  });

  it('keeps a throwing onLeak listener away from the caller', () => {
    let now = 0;
    const t = tracker({ now: () => now, staleAfterMs: 1, idleAfterMs: 1 });
    const seen: string[] = [];
    t.onLeak(() => {
      throw new Error('listener boom');
    });
    const off = t.onLeak((l) => seen.push(l.kind));
    t.track({}, { kind: 'test.listener' });
    now = 10;
    expect(() => t.scan()).not.toThrow();
    expect(seen).toEqual(['test.listener']);
    expect(t.report().instrumentationErrors).toBe(1);
    off();
  });

  it('rejects bad options with a one-line message naming the option', () => {
    expect(() => createResourceTracker({ maxTracked: -1 })).toThrow(
      /option maxTracked must be a non-negative number, got -1$/,
    );
    expect(() => createResourceTracker({ stacks: 'some' as never })).toThrow(/option stacks/);
  });

  it('survives a throwing inspect and activity probe', () => {
    let now = 0;
    const t = tracker({ now: () => now, staleAfterMs: 1, idleAfterMs: 1 });
    t.track(
      {},
      {
        kind: 'test.bad-probe',
        activity: () => {
          throw new Error('probe');
        },
        inspect: () => {
          throw new Error('inspect');
        },
      },
    );
    now = 5;
    expect(() => t.scan()).not.toThrow();
    expect(() => t.report({ includeOpen: true })).not.toThrow();
    expect(t.report().instrumentationErrors).toBeGreaterThanOrEqual(2);
  });

  it('after shutdown, track returns a detached handle and nothing is kept', () => {
    const t = tracker();
    t.track({}, { kind: 'test.before' });
    t.shutdown();
    const h = t.track({}, { kind: 'test.after' });
    expect(h.released).toBe(true);
    expect(t.snapshot().resources).toEqual([]);
    t.shutdown();
  });
});

describe('stack sampling', () => {
  it('captures the first N of each kind, then 1 in M, under open/close churn', () => {
    const t = tracker({ stackSampleFirst: 3, stackSampleEvery: 10 });
    const sampled: number[] = [];
    for (let i = 0; i < 33; i++) {
      const h = t.track({}, { kind: 'test.sampled' });
      if (t.snapshot().resources[0]?.site) sampled.push(h.id);
      h.release();
    }
    // 3 first, then the 1st, 11th and 21st after them
    expect(sampled).toEqual([1, 2, 3, 4, 14, 24]);
  });

  it('captures every resource that takes the open count of its kind to a new high', () => {
    const t = tracker({ stackSampleFirst: 1, stackSampleEvery: 1_000_000 });
    for (let i = 0; i < 500; i++) t.track({}, { kind: 'test.hw' }).release(); // churn
    const kept = Array.from({ length: 5 }, () => t.track({}, { kind: 'test.hw' })); // MARK:hw
    const open = t.snapshot().resources;
    expect(open.map((r) => r.id)).toEqual(kept.map((h) => h.id));
    // the first one only matches the churn's high (1 open), the next four each set a new one
    expect(open.slice(1).every((r) => r.site?.includes(here))).toBe(true);
  });

  it('takes new-high stacks from a budget: a burst pays 100, a slow pile-up gets every one', () => {
    let now = 1_000;
    const t = tracker({ stackSampleFirst: 0, stackSampleEvery: 1_000_000, now: () => now });
    const sampled = () => t.snapshot().resources.filter((r) => r.site !== null).length;
    // 1000 resources opened in one tick, each a new high: the first 100 get a stack
    for (let i = 0; i < 1000; i++) t.track({}, { kind: 'test.burst' });
    expect(sampled()).toBe(100);
    // a second later the budget is full again
    now += 1_000;
    for (let i = 0; i < 150; i++) t.track({}, { kind: 'test.burst' });
    expect(sampled()).toBe(200);
    // a leak of 50 a second: every leaked resource gets its stack
    const slow = tracker({ stackSampleFirst: 0, stackSampleEvery: 1_000_000, now: () => now });
    for (let i = 0; i < 300; i++) {
      now += 20;
      slow.track({}, { kind: 'test.slow' });
    }
    expect(slow.snapshot().resources.every((r) => r.site !== null)).toBe(true);
  });

  it('takes 1-in-M stacks from a budget of 20 a second per kind under heavy churn', () => {
    let now = 1_000;
    const t = tracker({ stackSampleFirst: 2, stackSampleEvery: 10, now: () => now });
    const churn = (n: number, kind = 'test.churn') => {
      let sampled = 0;
      for (let i = 0; i < n; i++) {
        const h = t.track({}, { kind });
        if (t.snapshot().resources[0]?.site) sampled++;
        h.release();
      }
      return sampled;
    };
    // 3000 in one tick: the first 2, then 20 of the 300 one-in-ten candidates
    expect(churn(3000)).toBe(22);
    // half a second later, 10 more; another kind has its own budget
    now += 500;
    expect(churn(3000)).toBe(10);
    expect(churn(3000, 'test.other')).toBe(22);
    // at 10 a second, under the budget: every tenth one again
    let sampled = 0;
    for (let i = 0; i < 100; i++) {
      now += 100;
      sampled += churn(1);
    }
    expect(sampled).toBe(10);
  });

  it('captures nothing with off, unless asked per resource', () => {
    const t = tracker({ stacks: 'off' });
    t.track({}, { kind: 'test.off' });
    t.track({}, { kind: 'test.off', captureStack: true });
    expect(t.snapshot().resources.map((r) => r.site !== null)).toEqual([false, true]);
  });

  it("names the application's line, not a dependency's, as the site", async () => {
    const { mkdtemp, mkdir, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = join(await mkdtemp(join(tmpdir(), 'tf-site-')), 'node_modules', 'dep');
    await mkdir(dir, { recursive: true });
    const file = join(dir, 'index.mjs');
    await writeFile(
      file,
      'export function open(t) {\n  return t.track({}, { kind: "dep.thing" });\n}\n',
    );
    const dep = (await import(file)) as { open(t: ResourceTracker): unknown };
    const t = tracker({ stacks: 'all' });
    dep.open(t); // MARK:dependency
    const [r] = t.snapshot().resources;
    expect(r?.site).toMatch(new RegExp(`^${here}:${await lineOf('MARK:dependency')}:\\d+$`));
    expect(r?.stack[0]).toContain(`${file}:2:`);
  });

  it('cuts internal frames so the site is user code', () => {
    const t = tracker({ stacks: 'all', internalPaths: ['/definitely/not/used'] });
    t.track({}, { kind: 'test.site' }); // MARK:site
    const [r] = t.snapshot().resources;
    expect(r?.site).toContain(here);
    for (const frame of r?.stack ?? []) expect(frame).not.toMatch(/\(node:|packages\/core\/src/);
  });
});

describe('report', () => {
  it('has the v1 schema and counts by kind', () => {
    const t = tracker();
    const h = t.track({}, { kind: 'test.k', attributes: { 'test.mode': 'a' } });
    t.track({}, { kind: 'test.k', attributes: { 'test.mode': 'b' } });
    h.release();
    const report = t.report({ includeOpen: true });
    expect(report).toMatchObject({
      schema: 'trustflow.report/v1',
      pid: process.pid,
      active: { 'test.k': 1 },
      opened: { 'test.k': 2 },
      closed: { 'test.k': 1 },
      overflow: 0,
    });
    expect(Date.parse(report.generatedAt)).not.toBeNaN();
    expect(report.process.rssBytes).toBeGreaterThan(0);
    expect(report.process.heapUsedBytes).toBeGreaterThan(0);
    if (process.platform === 'linux') expect(report.process.openFds).toBeGreaterThan(2);
    expect(report.leaks).toHaveLength(1);
    expect(report.leaks[0]).toMatchObject({
      kind: 'test.k',
      reason: 'open-at-exit',
      count: 1,
      sample: { attributes: { 'test.mode': 'b' } },
    });
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });

  it('filters by sinceId and kinds, and includes details and inspect in the sample', () => {
    const t = tracker();
    t.track({}, { kind: 'test.before' });
    const mark = t.snapshot().lastId;
    const h = t.track(
      { n: 7 },
      { kind: 'test.after', details: { 'file.path': '/tmp/x' }, inspect: (r) => ({ n: r.n }) },
    );
    h.annotate({ extra: true });
    t.track({}, { kind: 'test.other' });
    const report = t.report({ includeOpen: true, sinceId: mark, kinds: ['test.after'] });
    expect(report.leaks).toHaveLength(1);
    expect(report.leaks[0]?.sample.attributes).toEqual({
      'file.path': '/tmp/x',
      extra: true,
      n: 7,
    });
  });

  it('adds plugin report sections and removes them', () => {
    const t = tracker();
    const remove = t.addReportSection('inventory', () => ({ untracked: 3 }));
    t.addReportSection('broken', () => {
      throw new Error('section');
    });
    expect(t.report().extra).toEqual({ inventory: { untracked: 3 } });
    remove();
    expect(t.report().extra).toEqual({});
  });
});

import { once } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LeakEvent } from '@trustflow/core';
import { collectGarbage } from '@trustflow/test-utils';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Fixture, setup, siteOf } from './helpers.js';

const here = fileURLToPath(import.meta.url);
// Captured before any plugin is enabled: closing through it is an untracked path.
const rawCloseSync = fs.closeSync;

let f: Fixture;
let file: string;
beforeEach(() => {
  f = setup();
  file = join(f.dir, 'data.txt');
  fs.writeFileSync(file, 'hello trustflow\n'.repeat(100));
});
afterEach(async () => {
  await f.cleanup();
});

const active = () => f.tracker.snapshot().active;
const leaksOf = (kind: string) =>
  f.tracker.report({ includeOpen: true }).leaks.filter((l) => l.kind === kind);
const spansOf = (kind: string) => f.tracing.spans().filter((s) => s.name === kind);

describe('each API family is tracked and released on close', () => {
  it('fs.openSync / fs.closeSync', () => {
    const fd = fs.openSync(file, 'r');
    expect(typeof fd).toBe('number');
    expect(active()['fs.fd']).toBe(1);
    fs.closeSync(fd);
    expect(active()['fs.fd']).toBe(0);
    expect(f.tracker.snapshot().closed['fs.fd']).toBe(1);
  });

  it('fs.open / fs.close (callbacks)', async () => {
    const fd = await new Promise<number>((resolve, reject) =>
      fs.open(file, 'r', (err, n) => (err ? reject(err) : resolve(n))),
    );
    expect(active()['fs.fd']).toBe(1);
    await new Promise<void>((resolve, reject) =>
      fs.close(fd, (err) => (err ? reject(err) : resolve())),
    );
    expect(active()['fs.fd']).toBe(0);
  });

  it('fs.promises.open and FileHandle.close', async () => {
    const fh = await fsp.open(file, 'r');
    expect(active()['fs.filehandle']).toBe(1);
    await fh.close();
    // released by close() itself (its span ends), not by a report's check of open descriptors
    expect(spansOf('fs.filehandle').map((s) => s.attributes['trustflow.close.cause'])).toEqual([
      undefined,
    ]);
    expect(active()['fs.filehandle']).toBe(0);
  });

  it('FileHandle with await using', async () => {
    {
      await using fh = await fsp.open(file, 'r');
      await fh.read(Buffer.alloc(4), 0, 4, 0);
      expect(active()['fs.filehandle']).toBe(1);
    }
    expect(active()['fs.filehandle']).toBe(0);
  });

  it('a FileHandle closed by its own stream, and closed twice', async () => {
    const fh = await fsp.open(file, 'r');
    const stream = fh.createReadStream();
    for await (const _ of stream) {
      // drain: the stream closes the FileHandle at its end (autoClose)
    }
    await (stream.closed ? Promise.resolve() : once(stream, 'close'));
    expect(active()['fs.filehandle']).toBe(0);
    await fh.close(); // a second close is Node's no-op, and releases nothing twice
    expect(f.tracker.snapshot().closed['fs.filehandle']).toBe(1);
    expect(fh.close.name).toBe('close');
    expect(spansOf('fs.filehandle').map((s) => s.attributes['trustflow.close.cause'])).toEqual([
      undefined,
    ]);
  });

  it('read and write streams', async () => {
    const reader = fs.createReadStream(file);
    const writer = fs.createWriteStream(join(f.dir, 'copy.txt'));
    expect(active()['fs.stream']).toBe(2);
    reader.pipe(writer);
    await once(writer, 'close');
    await (reader.closed ? Promise.resolve() : once(reader, 'close'));
    expect(active()['fs.stream']).toBe(0);
    // the streams' own descriptors are theirs: not counted as fs.fd
    expect(f.tracker.snapshot().opened['fs.fd'] ?? 0).toBe(0);
    const [read, written] = ['read', 'write'].map(
      (d) => spansOf('fs.stream').find((s) => s.attributes['trustflow.fs.stream.direction'] === d)!,
    );
    expect(read?.attributes['trustflow.fs.bytes_read']).toBe(1600);
    expect(written?.attributes['trustflow.fs.bytes_written']).toBe(1600);
  });

  it('fs.promises.open: a rejection reaches the caller alone; the FileHandle is tracked first', async () => {
    const missing = join(f.dir, 'missing.txt');
    const failing = fsp.open(missing, 'r');
    // (an unhandled rejection of a promise of the plugin's own would fail this test run)
    await expect(failing).rejects.toMatchObject({ code: 'ENOENT' });
    // a FileHandle is tracked before the caller's own reaction runs
    const opened = fsp.open(file, 'r');
    const seen = await opened.then((fh) => [fh, active()['fs.filehandle']] as const);
    expect(seen[1]).toBe(1);
    await seen[0].close();
    expect(f.tracker.snapshot().opened['fs.filehandle']).toBe(1);
  });

  it('a stream that fails to open is released with its error', async () => {
    const reader = fs.createReadStream(join(f.dir, 'missing.txt'));
    const [error] = await once(reader, 'error');
    expect((error as NodeJS.ErrnoException).code).toBe('ENOENT');
    if (!reader.closed) await once(reader, 'close');
    expect(active()['fs.stream']).toBe(0);
    expect(spansOf('fs.stream')[0]?.attributes['error.type']).toBe('Error');
  });

  it('opendirSync / Dir.closeSync, opendir / Dir.close, fs.promises.opendir iterated to the end', async () => {
    const a = fs.opendirSync(f.dir);
    expect(active()['fs.dir']).toBe(1);
    a.closeSync();
    const b = await new Promise<fs.Dir>((resolve, reject) =>
      fs.opendir(f.dir, (err, d) => (err ? reject(err) : resolve(d))),
    );
    expect(active()['fs.dir']).toBe(1);
    await b.close();
    const c = await fsp.opendir(f.dir);
    const names: string[] = [];
    for await (const entry of c) names.push(entry.name); // closes the Dir at the end
    expect(names).toContain('data.txt');
    expect(active()['fs.dir']).toBe(0);
    expect(f.tracker.snapshot().closed['fs.dir']).toBe(3);
  });

  it('fs.watch / FSWatcher.close and fs.watchFile / fs.unwatchFile', () => {
    const watcher = fs.watch(f.dir, () => {});
    const statWatcher = fs.watchFile(file, { interval: 5000 }, () => {});
    expect(active()['fs.watcher']).toBe(2);
    watcher.close();
    fs.unwatchFile(file);
    expect(active()['fs.watcher']).toBe(0);
    expect(statWatcher).toBeDefined();
  });
});

describe('forgotten resources are reported with the line that created them', () => {
  it('fd, FileHandle, stream, Dir and watcher', async () => {
    const fd = fs.openSync(file, 'r'); // MARK:fd-sync
    const fdAsync = await new Promise<number>(
      (resolve, reject) => fs.open(file, 'r', (err, n) => (err ? reject(err) : resolve(n))), // MARK:fd-callback
    );
    const fh = await fsp.open(file, 'r'); // MARK:filehandle
    const stream = fs.createReadStream(file); // MARK:stream
    const dir = fs.opendirSync(f.dir); // MARK:dir
    const dirAsync = await fsp.opendir(f.dir); // MARK:dir-promise
    const watcher = fs.watch(f.dir); // MARK:watcher
    if (stream.pending) await once(stream, 'open');

    const report = f.tracker.report({ includeOpen: true });
    const sites = (kind: string) =>
      report.leaks
        .filter((l) => l.kind === kind)
        .map((l) => l.site)
        .sort();
    const [fdSync, fdCallback] = sites('fs.fd');
    expect([fdSync, fdCallback].some((s) => siteOf(here, 'MARK:fd-sync').test(s ?? ''))).toBe(true);
    expect([fdSync, fdCallback].some((s) => siteOf(here, 'MARK:fd-callback').test(s ?? ''))).toBe(
      true,
    );
    expect(sites('fs.filehandle')).toEqual([
      expect.stringMatching(siteOf(here, 'MARK:filehandle')),
    ]);
    expect(sites('fs.stream')).toEqual([expect.stringMatching(siteOf(here, 'MARK:stream'))]);
    expect(sites('fs.dir')).toEqual(
      [
        expect.stringMatching(siteOf(here, 'MARK:dir')),
        expect.stringMatching(siteOf(here, 'MARK:dir-promise')),
      ].sort(),
    );
    expect(sites('fs.watcher')).toEqual([expect.stringMatching(siteOf(here, 'MARK:watcher'))]);
    for (const leak of report.leaks) expect(leak.reason).toBe('open-at-exit');
    for (const kind of ['fs.fd', 'fs.filehandle']) {
      const leak = report.leaks.find((l) => l.kind === kind);
      expect(leak?.sample.attributes['file.path']).toBe(file);
      expect(leak?.sample.attributes['trustflow.fs.fd']).toEqual(expect.any(Number));
    }

    fs.closeSync(fd);
    fs.closeSync(fdAsync);
    await fh.close();
    const streamClosed = once(stream, 'close');
    stream.destroy();
    await streamClosed;
    dir.closeSync();
    await dirAsync.close();
    watcher.close();
    expect(f.tracker.report({ includeOpen: true }).leaks).toEqual([]);
  });

  it('a FileHandle garbage-collected without close is reported gc-unreleased', async () => {
    const leaks: LeakEvent[] = [];
    f.tracker.onLeak((leak) => leaks.push(leak));
    process.on('warning', ignoreWarning);
    try {
      await (async () => {
        await fsp.open(file, 'r'); // MARK:dropped-filehandle
      })();
      for (let i = 0; i < 20 && leaks.length === 0; i++) await collectGarbage();
    } finally {
      process.off('warning', ignoreWarning);
    }
    expect(leaks.map((l) => [l.kind, l.reason])).toEqual([['fs.filehandle', 'gc-unreleased']]);
    expect(leaks[0]?.site).toMatch(siteOf(here, 'MARK:dropped-filehandle'));
    expect(leaks[0]?.attributes['file.path']).toBe(file);
    expect(active()['fs.filehandle']).toBe(0);
  });

  it('a collected FileHandle whose number is reused before Node warns is reported once', async () => {
    const leaks: LeakEvent[] = [];
    f.tracker.onLeak((leak) => leaks.push(leak));
    process.on('warning', ignoreWarning);
    try {
      let ref: WeakRef<object> | undefined;
      let fd = -1;
      await (async () => {
        const fh = await fsp.open(file, 'r'); // MARK:reused-filehandle
        ref = new WeakRef(fh);
        fd = fh.fd;
      })();
      // Node closes the collected FileHandle's descriptor during the collection and warns on a
      // later turn: an open before that turn gets the same number.
      let reused = -1;
      for (let i = 0; i < 20 && reused !== fd; i++) {
        await collectGarbage(1);
        globalThis.gc!();
        if (ref!.deref() !== undefined) continue;
        reused = fs.openSync(file, 'r');
        if (reused !== fd) fs.closeSync(reused);
      }
      expect(reused).toBe(fd);
      // found at the reuse, before the warning
      expect(leaks.map((l) => [l.kind, l.reason])).toEqual([['fs.filehandle', 'gc-unreleased']]);
      expect(leaks[0]?.site).toMatch(siteOf(here, 'MARK:reused-filehandle'));
      expect(leaks[0]?.attributes).toMatchObject({ 'file.path': file, 'trustflow.fs.fd': fd });
      await collectGarbage();
      expect(leaks).toHaveLength(1);
      // the new descriptor is the one open now
      expect(active()).toMatchObject({ 'fs.fd': 1, 'fs.filehandle': 0 });
      fs.closeSync(reused);
    } finally {
      process.off('warning', ignoreWarning);
    }
  });
});

function ignoreWarning(): void {}

describe('descriptors closed by another path are not false leaks', () => {
  it('a stream given { fd } takes the fd over: one resource at a time, none left after close', async () => {
    const fd = fs.openSync(file, 'r');
    const stream = fs.createReadStream(file, { fd });
    // only the stream is open now: the fd was handed to it
    expect(active()['fs.fd'] ?? 0).toBe(0);
    expect(active()['fs.stream']).toBe(1);
    const leaks = f.tracker.report({ includeOpen: true }).leaks.map((l) => l.kind);
    expect(leaks).toEqual(['fs.stream']);
    stream.resume();
    await once(stream, 'close');
    expect(active()).toMatchObject({ 'fs.fd': 0, 'fs.stream': 0 });
    expect(f.tracker.report({ includeOpen: true }).leaks).toEqual([]);
    const fdSpan = spansOf('fs.fd')[0];
    expect(fdSpan?.attributes['trustflow.close.cause']).toBe('transferred-to-stream');
    expect(spansOf('fs.stream')[0]?.attributes['trustflow.fs.fd']).toBe(fd);
    // the descriptor is really closed
    expect(() => fs.fstatSync(fd)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('a stream given { fd, autoClose: false } leaves the fd to its opener', async () => {
    const fd = fs.openSync(file, 'r');
    const stream = fs.createReadStream(file, { fd, autoClose: false });
    stream.resume();
    await once(stream, 'end');
    expect(active()).toMatchObject({ 'fs.fd': 1, 'fs.stream': 0 });
    fs.closeSync(fd);
    expect(active()['fs.fd']).toBe(0);
  });

  it('a number that comes back from open settles the stale entry for it', () => {
    const first = fs.openSync(file, 'r');
    rawCloseSync(first); // untracked
    const second = fs.openSync(file, 'r');
    expect(second).toBe(first); // the OS hands out the lowest free number
    expect(active()['fs.fd']).toBe(1);
    expect(leaksOf('fs.fd')).toHaveLength(1);
    expect(spansOf('fs.fd')[0]?.attributes['trustflow.close.cause']).toBe('fd-reused');
    fs.closeSync(second);
  });

  it('a descriptor closed by an untracked path is settled when a report is taken', () => {
    const fd = fs.openSync(file, 'r');
    rawCloseSync(fd);
    expect(leaksOf('fs.fd')).toEqual([]);
    expect(spansOf('fs.fd')[0]?.attributes['trustflow.close.cause']).toBe('closed-elsewhere');
  });
});

describe('instrumentation of its own', () => {
  it('is not tracked inside tracker.untracked(), nor an ignored object', async () => {
    const fd = f.tracker.untracked(() => fs.openSync(file, 'r'));
    const stream = fs.createReadStream(file);
    f.tracker.untracked(() => stream.pause());
    const quietStream = f.tracker.untracked(() => fs.createReadStream(file));
    const watcher = f.tracker.untracked(() => fs.watch(f.dir));
    expect(active()['fs.fd'] ?? 0).toBe(0);
    expect(active()['fs.stream']).toBe(1);
    expect(active()['fs.watcher'] ?? 0).toBe(0);
    fs.closeSync(fd);
    watcher.close();
    for (const s of [stream, quietStream]) {
      const done = once(s, 'close');
      s.destroy();
      await done;
    }
    expect(active()['fs.stream']).toBe(0);
    expect(f.tracker.snapshot().opened['fs.fd'] ?? 0).toBe(0);
  });
});

describe('telemetry', () => {
  it('puts the path on spans and never on metrics', async () => {
    const fd = fs.openSync(file, 'r');
    fs.closeSync(fd);
    const [span] = spansOf('fs.fd');
    expect(span?.attributes['file.path']).toBe(file);
    expect(span?.attributes['trustflow.resource.kind']).toBe('fs.fd');
    const all = await f.metrics.collect();
    const opened = all.find((m) => m.descriptor.name === 'trustflow.resource.opened');
    const point = opened?.dataPoints.find(
      (p) => p.attributes['trustflow.resource.kind'] === 'fs.fd',
    );
    expect(point?.value).toBe(1);
    for (const metric of all) {
      for (const p of metric.dataPoints) {
        for (const value of Object.values(p.attributes)) expect(String(value)).not.toContain(f.dir);
      }
    }
  });

  it('an fd is active while its file offset moves, stale once it stops', () => {
    let now = 0;
    const clocked = setup({}, { now: () => now, staleAfterMs: 1000, idleAfterMs: 500 });
    try {
      const stale: LeakEvent[] = [];
      clocked.tracker.onLeak((l) => stale.push(l));
      const fd = fs.openSync(file, 'r');
      now = 2000;
      clocked.tracker.scan(); // first probe: the offset is 0, as at open
      expect(stale).toHaveLength(1);
      fs.readSync(fd, Buffer.alloc(10));
      now = 2100;
      clocked.tracker.scan(); // the offset moved: active again
      expect(stale).toHaveLength(1);
      expect(clocked.tracker.snapshot().resources[0]?.idleMs).toBe(0);
      now = 3000;
      clocked.tracker.scan();
      expect(stale).toHaveLength(2);
      fs.closeSync(fd);
    } finally {
      void clocked.cleanup();
    }
  });

  it('a watcher with listeners is in use; without listeners it goes stale', () => {
    let now = 0;
    const clocked = setup({}, { now: () => now, staleAfterMs: 1000, idleAfterMs: 500 });
    try {
      const stale: LeakEvent[] = [];
      clocked.tracker.onLeak((l) => stale.push(l));
      const listener = () => {};
      const watcher = fs.watch(clocked.dir, listener);
      for (now = 1000; now <= 3000; now += 500) clocked.tracker.scan();
      expect(stale).toHaveLength(0);
      watcher.removeListener('change', listener);
      for (; now <= 5000; now += 500) clocked.tracker.scan();
      expect(stale.map((l) => l.kind)).toEqual(['fs.watcher']);
      watcher.close();
    } finally {
      void clocked.cleanup();
    }
  });
});

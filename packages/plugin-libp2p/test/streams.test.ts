import { createHash } from 'node:crypto';
import type { Connection, Stream } from '@libp2p/interface';
import type { LeakEvent, ResourceTracker } from '@trustflow/core';
import { collectGarbage, createTracingHarness } from '@trustflow/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cleanup,
  closed,
  echo,
  instrumentedNode,
  lineOf,
  plainNode,
  points,
  pointValue,
  randomBytes,
  readAll,
  sendAll,
} from './helpers.js';

const here = new URL(import.meta.url).pathname;

afterEach(cleanup);

function kindPoints(
  all: { attributes: Record<string, unknown>; value: unknown }[],
  kind: string,
): Record<string, unknown>[] {
  return all
    .filter((p) => p.attributes['trustflow.resource.kind'] === kind)
    .map((p) => ({ ...p.attributes, value: p.value }))
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

function nextLeak(tracker: ResourceTracker, reason: LeakEvent['reason']): Promise<LeakEvent> {
  return new Promise((resolve) => {
    const off = tracker.onLeak((leak) => {
      if (leak.reason !== reason || leak.kind !== 'libp2p.stream') return;
      off();
      resolve(leak);
    });
  });
}

describe('streams and connections as tracked resources', () => {
  it('counts streams per protocol and direction, and releases them on close', async () => {
    const a = await instrumentedNode();
    const b = await instrumentedNode();
    const served: Promise<void>[] = [];
    await b.node.handle('/echo/1', (s) => void served.push(echo(s)));
    await b.node.handle('/sink/1', (s) => void served.push(readAll(s).then(() => s.close())));
    await a.node.handle('/echo/1', (s) => void served.push(echo(s)));

    const addrB = b.node.getMultiaddrs()[0]!;
    const opened: Stream[] = [
      await a.node.dialProtocol(addrB, '/echo/1'),
      await a.node.dialProtocol(addrB, '/echo/1'),
      await a.node.dialProtocol(addrB, '/sink/1'),
      await b.node.dialProtocol(a.node.getMultiaddrs()[0]!, '/echo/1'),
    ];
    const active = kindPoints(
      await points(a.trackerMetrics, 'trustflow.resource.active'),
      'libp2p.stream',
    );
    expect(active).toEqual([
      {
        'trustflow.resource.kind': 'libp2p.stream',
        'libp2p.protocol': '/echo/1',
        'libp2p.direction': 'inbound',
        value: 1,
      },
      {
        'trustflow.resource.kind': 'libp2p.stream',
        'libp2p.protocol': '/echo/1',
        'libp2p.direction': 'outbound',
        value: 2,
      },
      {
        'trustflow.resource.kind': 'libp2p.stream',
        'libp2p.protocol': '/sink/1',
        'libp2p.direction': 'outbound',
        value: 1,
      },
    ]);
    // one connection each way is not what libp2p does: it reuses the first one
    expect(a.tracker.snapshot().active['libp2p.connection']).toBe(1);
    expect(b.tracker.snapshot().active).toMatchObject({
      'libp2p.stream': 4,
      'libp2p.connection': 1,
    });

    for (const s of opened) {
      s.send(new Uint8Array([1, 2, 3]));
      await s.close();
    }
    await Promise.all(served);
    await Promise.all(opened.map(closed));
    await Promise.all(b.node.getConnections().flatMap((c) => c.streams.map(closed)));

    for (const side of [a, b]) {
      const snapshot = side.tracker.snapshot();
      expect(snapshot.active['libp2p.stream']).toBe(0);
      expect(snapshot.opened['libp2p.stream']).toBe(4);
      expect(snapshot.closed['libp2p.stream']).toBe(4);
    }
    const lifetimes = kindPoints(
      await points(a.trackerMetrics, 'trustflow.resource.lifetime'),
      'libp2p.stream',
    ).map((p) => ({
      protocol: p['libp2p.protocol'],
      direction: p['libp2p.direction'],
      count: (p.value as { count: number }).count,
    }));
    expect(lifetimes).toEqual([
      { protocol: '/echo/1', direction: 'inbound', count: 1 },
      { protocol: '/echo/1', direction: 'outbound', count: 2 },
      { protocol: '/sink/1', direction: 'outbound', count: 1 },
    ]);
  });

  it('counts the bytes sent and received per protocol, exactly', async () => {
    const a = await instrumentedNode();
    const b = await instrumentedNode();
    const sizes = [1, 1000, 70_000, 300_000];
    const total = sizes.reduce((x, y) => x + y, 0);
    const received: Promise<number>[] = [];
    await b.node.handle('/sink/1', (s) => {
      received.push(
        readAll(s).then(async (data) => {
          await s.close();
          return data.length;
        }),
      );
    });
    const echoed: Promise<void>[] = [];
    await b.node.handle('/echo/1', (s) => void echoed.push(echo(s)));
    const addrB = b.node.getMultiaddrs()[0]!;

    const sink = await a.node.dialProtocol(addrB, '/sink/1');
    for (const size of sizes) await sendAll(sink, randomBytes(size, size));
    await sink.close();
    expect((await Promise.all(received)).reduce((x, y) => x + y, 0)).toBe(total);
    await closed(sink);

    const echoStream = await a.node.dialProtocol(addrB, '/echo/1');
    const [, back] = await Promise.all([
      sendAll(echoStream, randomBytes(50_000)).then(() => echoStream.close()),
      readAll(echoStream),
    ]);
    expect(back.length).toBe(50_000);
    await Promise.all(echoed);

    const io = 'trustflow.libp2p.stream.io';
    const tx = { 'network.io.direction': 'transmit' };
    const rx = { 'network.io.direction': 'receive' };
    expect(await pointValue(a.libp2p, io, { 'libp2p.protocol': '/sink/1', ...tx })).toBe(total);
    expect(await pointValue(a.libp2p, io, { 'libp2p.protocol': '/sink/1', ...rx })).toBe(0);
    expect(await pointValue(b.libp2p, io, { 'libp2p.protocol': '/sink/1', ...rx })).toBe(total);
    expect(await pointValue(b.libp2p, io, { 'libp2p.protocol': '/sink/1', ...tx })).toBe(0);
    for (const side of [a, b]) {
      expect(await pointValue(side.libp2p, io, { 'libp2p.protocol': '/echo/1', ...tx })).toBe(
        50_000,
      );
      expect(await pointValue(side.libp2p, io, { 'libp2p.protocol': '/echo/1', ...rx })).toBe(
        50_000,
      );
    }
    const [io0] = await points(a.libp2p, io);
    expect(io0).toBeDefined();
    expect((await a.libp2p.find(io))?.descriptor.unit).toBe('By');
    // the connection saw at least every payload byte, plus noise and yamux framing
    const connTx = await pointValue(a.libp2p, 'trustflow.libp2p.connection.io', {
      'libp2p.transport': 'tcp',
      ...tx,
    });
    expect(connTx).toBeGreaterThan(total + 50_000);
    // the connection is released when it closes, with the peer learned after the upgrade
    const [connection] = a.node.getConnections();
    expect(a.tracker.snapshot().resources).toContainEqual(
      expect.objectContaining({
        kind: 'libp2p.connection',
        attributes: expect.objectContaining({
          'libp2p.direction': 'outbound',
          'libp2p.transport': 'tcp',
          'libp2p.peer.id': b.node.peerId.toString(),
        }),
      }),
    );
    const connectionClosed = new Promise((resolve) =>
      connection!.addEventListener('close', resolve, { once: true }),
    );
    await connection!.close();
    await connectionClosed;
    expect(a.tracker.snapshot()).toMatchObject({
      active: { 'libp2p.connection': 0 },
      opened: { 'libp2p.connection': 1 },
      closed: { 'libp2p.connection': 1 },
    });
  });

  it('gives each stream a lifetime span with peer, address and byte counts (never on metrics)', async () => {
    const tracing = createTracingHarness();
    const a = await instrumentedNode({ tracker: { tracer: tracing.tracer } });
    const b = await plainNode();
    const done: Promise<void>[] = [];
    await b.handle('/sink/1', (s) => void done.push(readAll(s).then(() => s.close())));
    const stream = await a.node.dialProtocol(b.getMultiaddrs()[0]!, '/sink/1');
    await sendAll(stream, randomBytes(1234));
    await stream.close();
    await Promise.all(done);
    await closed(stream);
    const span = tracing.spans().find((s) => s.name === 'libp2p.stream');
    expect(span?.attributes).toMatchObject({
      'trustflow.resource.kind': 'libp2p.stream',
      'libp2p.protocol': '/sink/1',
      'libp2p.direction': 'outbound',
      'libp2p.peer.id': b.peerId.toString(),
      'libp2p.remote_addr': expect.stringContaining('/ip4/127.0.0.1/tcp/'),
      'libp2p.bytes_sent': 1234,
      'libp2p.bytes_received': 0,
    });
    const connection = tracing.spans().filter((s) => s.name === 'libp2p.connection');
    expect(connection).toHaveLength(0); // still open
    for (const metric of await a.trackerMetrics.collect()) {
      for (const point of metric.dataPoints) {
        expect(Object.keys(point.attributes)).not.toContain('libp2p.peer.id');
        expect(Object.keys(point.attributes)).not.toContain('libp2p.remote_addr');
      }
    }
    await tracing.shutdown();
  });

  it('talks normally to a node without it: a large transfer arrives whole and in order', async () => {
    const ours = await instrumentedNode();
    const plain = await plainNode();
    const data = randomBytes(8 * 1024 * 1024 + 123, 7);
    const digest = createHash('sha256').update(data).digest('hex');
    const echoed: Promise<void>[] = [];
    await plain.handle('/echo/1', (s) => void echoed.push(echo(s)));
    await ours.node.handle('/echo/1', (s) => void echoed.push(echo(s)));

    // ours dials the plain node, and the plain node dials ours
    const pairs: [Stream, string][] = [
      [await ours.node.dialProtocol(plain.getMultiaddrs()[0]!, '/echo/1'), 'ours -> plain'],
      [await plain.dialProtocol(ours.node.getMultiaddrs()[0]!, '/echo/1'), 'plain -> ours'],
    ];
    for (const [stream, label] of pairs) {
      const [, back] = await Promise.all([
        sendAll(stream, data, 100_000).then(() => stream.close()),
        readAll(stream),
      ]);
      expect(back.length, label).toBe(data.length);
      expect(createHash('sha256').update(back).digest('hex'), label).toBe(digest);
    }
    await Promise.all(echoed);
    const io = 'trustflow.libp2p.stream.io';
    // ours sent and received the payload once as dialer, and echoed it once as listener
    for (const dir of ['transmit', 'receive']) {
      expect(
        await pointValue(ours.libp2p, io, {
          'libp2p.protocol': '/echo/1',
          'network.io.direction': dir,
        }),
      ).toBe(2 * data.length);
    }
  });
});

describe('leaks', () => {
  async function openAndDrop(a: Awaited<ReturnType<typeof instrumentedNode>>, addr: unknown) {
    await a.node.dialProtocol(addr as never, '/held/1'); // MARK:dropped-outbound
  }

  it('reports a stream dropped without close as open (and stale) with the line that opened it; GC cannot collect it while its connection lives', async () => {
    let now = 0;
    const a = await instrumentedNode({
      tracker: { now: () => now, staleAfterMs: 60_000, idleAfterMs: 30_000 },
    });
    const b = await plainNode();
    const handled: Stream[] = [];
    await b.handle('/held/1', (s) => void handled.push(s));
    await openAndDrop(a, b.getMultiaddrs()[0]);
    const line = await lineOf(here, 'MARK:dropped-outbound');
    const leaks: LeakEvent[] = [];
    a.tracker.onLeak((l) => leaks.push(l));

    // libp2p's muxer keeps every open stream: a forced GC finds nothing to collect
    await collectGarbage();
    expect(leaks).toEqual([]);
    const [open] = a.tracker.report({ includeOpen: true, kinds: ['libp2p.stream'] }).leaks;
    expect(open).toMatchObject({
      kind: 'libp2p.stream',
      reason: 'open-at-exit',
      count: 1,
      sample: {
        attributes: {
          'libp2p.protocol': '/held/1',
          'libp2p.direction': 'outbound',
          'libp2p.peer.id': b.peerId.toString(),
          'libp2p.status': 'open',
        },
      },
    });
    expect(open?.site).toMatch(new RegExp(`^${here}:${line}:\\d+$`));

    // open and idle past the thresholds: stale, with the same site
    now = 120_000;
    const stale = nextLeak(a.tracker, 'stale');
    a.tracker.scan();
    expect(await stale).toMatchObject({ reason: 'stale', site: open?.site });

    // closing the connection ends the stream: libp2p emits 'close', the stream is released
    const [connection] = a.node.getConnections();
    const [stream] = connection!.streams;
    const ended = closed(stream!);
    await connection!.close();
    await ended;
    expect(a.tracker.snapshot().active['libp2p.stream']).toBe(0);
    await collectGarbage();
    expect(leaks.map((l) => l.reason)).toEqual(['stale']);
  });

  it('reports a stream collected without ever closing as gc-unreleased, with the dialProtocol line or the handler registration line', async () => {
    const a = await instrumentedNode();
    const b = await instrumentedNode();
    await b.node.handle('/held/1', () => {}); // MARK:handler
    const outbound = nextLeak(a.tracker, 'gc-unreleased');
    const inbound = nextLeak(b.tracker, 'gc-unreleased');
    await openAndDrop(a, b.node.getMultiaddrs()[0]);
    // Nothing in libp2p lets go of an open stream, so this simulates the one way a stream can be
    // collected without a 'close' event: a muxer that forgets it.
    for (const side of [a, b]) {
      const [connection] = side.node.getConnections() as Connection[];
      expect(connection!.streams).toHaveLength(1);
      connection!.streams.splice(0);
    }
    await collectGarbage();
    const [out, inc] = await Promise.all([outbound, inbound]);
    expect(out).toMatchObject({
      kind: 'libp2p.stream',
      reason: 'gc-unreleased',
      attributes: { 'libp2p.protocol': '/held/1', 'libp2p.direction': 'outbound' },
    });
    expect(out.site).toMatch(
      new RegExp(`^${here}:${await lineOf(here, 'MARK:dropped-outbound')}:\\d+$`),
    );
    expect(inc).toMatchObject({
      attributes: {
        'libp2p.direction': 'inbound',
        'libp2p.peer.id': a.node.peerId.toString(),
      },
    });
    expect(inc.site).toMatch(new RegExp(`^${here}:${await lineOf(here, 'MARK:handler')}:\\d+$`));
    const leaked = await points(a.trackerMetrics, 'trustflow.resource.leaked');
    expect(leaked).toEqual([
      {
        attributes: {
          'libp2p.protocol': '/held/1',
          'libp2p.direction': 'outbound',
          'trustflow.resource.kind': 'libp2p.stream',
          'trustflow.leak.reason': 'gc-unreleased',
        },
        value: 1,
      },
    ]);
  });

  it('does not call a stream with traffic stale, and closeStale() aborts an idle one', async () => {
    let now = 0;
    const a = await instrumentedNode({
      tracker: { now: () => now, staleAfterMs: 60_000, idleAfterMs: 30_000 },
    });
    const b = await plainNode();
    const inbound: Stream[] = [];
    await b.handle('/held/1', (s) => void inbound.push(s));
    const addr = b.getMultiaddrs()[0]!;
    const busy = await a.node.dialProtocol(addr, '/held/1');
    const idle = await a.node.dialProtocol(addr, '/held/1');
    const leaks: LeakEvent[] = [];
    a.tracker.onLeak((l) => leaks.push(l));
    a.tracker.scan(); // first probe of activity
    for (const t of [40_000, 80_000, 120_000]) {
      now = t;
      busy.send(new Uint8Array(10));
      await busy.onDrain();
      a.tracker.scan();
    }
    expect(leaks).toHaveLength(1);
    expect(leaks[0]).toMatchObject({
      reason: 'stale',
      attributes: { 'libp2p.stream.id': idle.id },
    });
    const idleClosed = closed(idle);
    const result = await a.tracker.closeStale({ kinds: ['libp2p.stream'] });
    expect(result).toEqual({ closed: 1, errors: [] });
    await idleClosed;
    expect(idle.status).toBe('aborted');
    expect(busy.status).toBe('open');
    expect(a.tracker.snapshot().active['libp2p.stream']).toBe(1);
  });
});

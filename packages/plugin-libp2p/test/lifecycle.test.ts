import { identify } from '@libp2p/identify';
import type { Libp2p, Stream } from '@libp2p/interface';
import { ping } from '@libp2p/ping';
import { afterEach, describe, expect, it } from 'vitest';
import { libp2pMetrics } from '../src/index.js';
import {
  cleanup,
  closed,
  instrumentedNode,
  plainNode,
  points,
  pointValue,
  readAll,
} from './helpers.js';

afterEach(cleanup);

interface Registrar {
  handle: (...args: unknown[]) => Promise<void>;
}

function registrarOf(node: Libp2p): Registrar {
  return (node as unknown as { components: { registrar: Registrar } }).components.registrar;
}

describe('lifecycle', () => {
  it('after stop, restores the registrar, stops observing and tracks nothing; start resumes', async () => {
    const a = await instrumentedNode();
    const registrar = registrarOf(a.node);
    const original = Object.getPrototypeOf(registrar).handle;
    expect(registrar.handle).not.toBe(original);
    const gauge = a.metrics.registerMetric('test_gauge');
    gauge.update(1);
    expect((await a.libp2p.find('test_gauge'))?.dataPoints[0]?.value).toBe(1);

    await a.node.stop();
    expect(registrar.handle).toBe(original);
    gauge.update(2);
    // the last value stays exported (cumulative), but nothing observes it any more
    expect((await a.libp2p.find('test_gauge'))?.dataPoints[0]?.value).toBe(1);

    // a stream handed to the stopped metrics is left alone
    const x = await plainNode();
    const y = await plainNode();
    await y.handle('/x/1', (s) => void s.close());
    const foreign = await x.dialProtocol(y.getMultiaddrs()[0]!, '/x/1');
    const opened = a.tracker.snapshot().opened['libp2p.stream'] ?? 0;
    a.metrics.trackProtocolStream(foreign);
    expect(a.tracker.snapshot().opened['libp2p.stream'] ?? 0).toBe(opened);
    expect(Object.hasOwn(foreign, 'onData')).toBe(false);
    await foreign.close();

    await a.node.start();
    expect(registrar.handle).not.toBe(original);
    expect((await a.libp2p.find('test_gauge'))?.dataPoints[0]?.value).toBe(2);
  });

  it('counts bytes through the stream classes, adds nothing to the streams, and puts the classes back after stop', async () => {
    const x = await plainNode();
    const y = await plainNode();
    await y.handle('/x/1', (s) => void s.close());
    const plain = await x.dialProtocol(y.getMultiaddrs()[0]!, '/x/1');
    const proto = Object.getPrototypeOf(plain) as Record<string, unknown>;
    const keys = ['onData', 'sendData', 'dispatchEvent'] as const;
    const originals = keys.map((k) => proto[k]);
    const own = keys.filter((k) => Object.hasOwn(proto, k));

    const a = await instrumentedNode();
    const counted = await a.node.dialProtocol(y.getMultiaddrs()[0]!, '/x/1');
    expect(Object.getPrototypeOf(counted)).toBe(proto);
    expect(keys.map((k) => proto[k] === originals[keys.indexOf(k)])).toEqual([false, false, false]);
    // the tracked stream has exactly the own properties of an untracked one (same hidden class)
    expect(Reflect.ownKeys(counted)).toEqual(Reflect.ownKeys(plain));
    counted.send(new Uint8Array(7));
    await counted.close();
    expect(
      await pointValue(a.libp2p, 'trustflow.libp2p.stream.io', {
        'libp2p.protocol': '/x/1',
        'network.io.direction': 'transmit',
      }),
    ).toBe(7);

    await a.node.stop();
    expect(keys.map((k) => proto[k])).toEqual(originals);
    expect(keys.filter((k) => Object.hasOwn(proto, k))).toEqual(own);
    await plain.close();
  });

  it("works with libp2p's services: identify and ping streams are tracked and all released", async () => {
    const services = { identify: identify(), ping: ping() };
    const a = await instrumentedNode({ libp2p: { services } });
    const b = await instrumentedNode({
      libp2p: { services: { identify: identify(), ping: ping() } },
    });
    const identified = new Promise<void>((resolve) =>
      a.node.addEventListener('peer:identify', () => resolve(), { once: true }),
    );
    const rtt = await (
      a.node.services as { ping: { ping(addr: unknown): Promise<number> } }
    ).ping.ping(b.node.getMultiaddrs()[0]);
    expect(rtt).toBeGreaterThanOrEqual(0);
    await identified;
    for (const side of [a, b]) {
      await Promise.all(side.node.getConnections().flatMap((c) => c.streams.map(closed)));
    }
    for (const side of [a, b]) {
      const snapshot = side.tracker.snapshot();
      expect(snapshot.active['libp2p.stream']).toBe(0);
      expect(snapshot.opened['libp2p.stream']).toBe(snapshot.closed['libp2p.stream']);
      expect(snapshot.opened['libp2p.stream']).toBeGreaterThanOrEqual(2);
    }
    const protocols = (await points(a.trackerMetrics, 'trustflow.resource.opened'))
      .filter((p) => p.attributes['trustflow.resource.kind'] === 'libp2p.stream')
      .map((p) => `${p.attributes['libp2p.direction']} ${p.attributes['libp2p.protocol']}`)
      .sort();
    expect(protocols).toContain('outbound /ipfs/ping/1.0.0');
    expect(protocols).toContain('outbound /ipfs/id/1.0.0');
  });

  it('counts protocols past maxProtocols as other', async () => {
    const a = await instrumentedNode({ init: { maxProtocols: 1 } });
    const b = await plainNode();
    const served: Stream[] = [];
    for (const p of ['/a/1', '/b/1']) await b.handle(p, (s) => void served.push(s));
    for (const p of ['/a/1', '/b/1']) {
      const s = await a.node.dialProtocol(b.getMultiaddrs()[0]!, p);
      s.send(new Uint8Array(5));
      await s.close();
    }
    const io = await points(a.libp2p, 'trustflow.libp2p.stream.io');
    expect(
      io
        .filter((p) => p.attributes['network.io.direction'] === 'transmit')
        .map((p) => [p.attributes['libp2p.protocol'], p.value]),
    ).toEqual([
      ['/a/1', 5],
      ['other', 5],
    ]);
    const streams = a.tracker.snapshot().resources.filter((r) => r.kind === 'libp2p.stream');
    expect(streams.map((r) => r.attributes['libp2p.protocol'])).toEqual(['/a/1', 'other']);
  });
});

describe('bad input and isolation', () => {
  it('names a bad option', () => {
    expect(() => libp2pMetrics({ maxProtocols: 0 })).toThrow(
      'libp2pMetrics: option maxProtocols must be a positive integer, got 0',
    );
    expect(() => libp2pMetrics({ maxGroupKeys: 1.5 })).toThrow(
      'libp2pMetrics: option maxGroupKeys must be a positive integer, got 1.5',
    );
    expect(() => libp2pMetrics({ tracker: 'x' as never })).toThrow(
      'libp2pMetrics: option tracker must be an object, got x',
    );
    expect(() => libp2pMetrics(null as never)).toThrow('libp2pMetrics: options must be an object');
  });

  it('counts a stream whose methods were replaced on the instance, and releases it on close', async () => {
    const a = await instrumentedNode();
    const x = await plainNode();
    const y = await plainNode();
    await y.handle('/own/1', (s) => void readAll(s).then(() => s.close()));
    // a stream of our own first: the stream class is wrapped from now on
    const first = await a.node.dialProtocol(y.getMultiaddrs()[0]!, '/own/1');
    const firstEnded = closed(first);
    await first.close();
    await firstEnded;
    const stream = await x.dialProtocol(y.getMultiaddrs()[0]!, '/own/1');
    // someone else's wrapper, set on the instance (as @libp2p/prometheus-metrics does)
    const target = stream as unknown as { sendData: (data: unknown) => unknown };
    const sendData = target.sendData;
    target.sendData = function (this: unknown, data: unknown) {
      return sendData.call(this, data);
    };
    a.metrics.trackProtocolStream(stream);
    expect(a.tracker.snapshot().active['libp2p.stream']).toBe(1);
    const ended = closed(stream);
    stream.send(new Uint8Array(11));
    await stream.close();
    await ended;
    expect(a.tracker.snapshot().active['libp2p.stream']).toBe(0);
    expect(
      await pointValue(a.libp2p, 'trustflow.libp2p.stream.io', {
        'libp2p.protocol': '/own/1',
        'network.io.direction': 'transmit',
      }),
    ).toBe(11);
  });

  it('never throws into libp2p: a broken stream or connection is counted as an instrumentation error', async () => {
    const a = await instrumentedNode();
    const hostile = {
      get protocol(): string {
        throw new Error('hostile');
      },
      direction: 'outbound',
    };
    expect(() => a.metrics.trackProtocolStream(hostile as never)).not.toThrow();
    expect(() => a.metrics.trackMultiaddrConnection(hostile as never)).not.toThrow();
    const errors = await a.trackerMetrics.find('trustflow.instrumentation.errors');
    expect(errors?.dataPoints[0]?.value).toBe(2);
  });
});

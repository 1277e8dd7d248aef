import { hasSubscribers } from 'node:diagnostics_channel';
import { once } from 'node:events';
import net, { type Server, type Socket } from 'node:net';
import { createResourceTracker, type ResourceTracker } from '@trustflow/core';
import { afterEach, describe, expect, it } from 'vitest';
import { netPlugin } from '../src/index.js';
import { closed, type Fixture, portOf, setup } from './helpers.js';

const CHANNELS = [
  'net.server.socket',
  'tracing:net.server.listen:asyncStart',
  'tracing:net.server.listen:asyncEnd',
  'tracing:net.server.listen:error',
];

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
function fixture(): Fixture {
  const f = setup();
  cleanups.push(() => f.cleanup());
  return f;
}

/** One connection through a fresh server: listen, connect, exchange, close everything. */
async function exercise(): Promise<void> {
  const server = net.createServer((s) => s.end('bye'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = net.connect(portOf(server), '127.0.0.1');
  client.resume();
  const [peer] = await accepted;
  await Promise.all([closed(client), closed(peer)]);
  server.close();
  await once(server, 'close');
}

describe('disable', () => {
  it('restores Server.prototype.close and Socket.prototype.connect, unsubscribes every channel', async () => {
    const close = net.Server.prototype.close;
    const connect = net.Socket.prototype.connect;
    const subscribedBefore = CHANNELS.map((c) => hasSubscribers(c));
    const f = fixture();
    expect(net.Server.prototype.close).not.toBe(close);
    expect(net.Socket.prototype.connect).not.toBe(connect);
    expect(net.Socket.prototype.connect.name).toBe(connect.name);
    for (const channel of CHANNELS) expect(hasSubscribers(channel)).toBe(true);
    f.plugin.disable();
    expect(net.Server.prototype.close).toBe(close);
    expect(net.Socket.prototype.connect).toBe(connect);
    expect(CHANNELS.map((c) => hasSubscribers(c))).toEqual(subscribedBefore);
  });

  it('leaves no telemetry afterwards and releases what was still open', async () => {
    const f = fixture();
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = net.connect(portOf(server), '127.0.0.1');
    await once(client, 'connect');
    await new Promise((resolve) => setImmediate(resolve));
    expect(f.tracker.snapshot().active).toMatchObject({ 'net.server': 1, 'net.socket': 2 });
    f.plugin.disable();
    const snapshot = f.tracker.snapshot();
    expect(snapshot.active).toMatchObject({ 'net.server': 0, 'net.socket': 0 });
    const spans = f.tracing.spans().length;
    expect(
      f.tracing.spans().every((s) => s.attributes['trustflow.close.cause'] === 'plugin-disabled'),
    ).toBe(true);
    client.destroy();
    server.close();
    await exercise();
    expect(f.tracker.snapshot().opened).toEqual(snapshot.opened);
    expect(f.tracker.snapshot().closed).toEqual(snapshot.closed);
    expect(f.tracing.spans()).toHaveLength(spans);
  });

  it('enable is idempotent and works again after disable', async () => {
    const f = fixture();
    f.plugin.enable({ tracker: f.tracker });
    await exercise();
    expect(f.tracker.snapshot().opened).toMatchObject({ 'net.server': 1, 'net.socket': 2 });
    f.plugin.disable();
    f.plugin.enable({ tracker: f.tracker });
    await exercise();
    expect(f.tracker.snapshot().opened).toMatchObject({ 'net.server': 2, 'net.socket': 4 });
    expect(f.tracker.snapshot().active).toMatchObject({ 'net.server': 0, 'net.socket': 0 });
  });

  it('rejects bad options with a one-line error naming the option', () => {
    expect(() => netPlugin({ addresses: 1 as never })).toThrow(
      /^netPlugin: option addresses must be a boolean, got 1$/,
    );
    expect(() => netPlugin('x' as never)).toThrow(/options must be an object/);
  });
});

describe('wrapped calls behave like the originals', () => {
  it('Server.close keeps its return value, `this` and callback arguments', async () => {
    const outcome = async () => {
      const server: Server = net.createServer();
      const results: unknown[] = [];
      // not listening: the callback gets ERR_SERVER_NOT_RUNNING
      const returned = server.close((error) => results.push((error as { code?: string })?.code));
      results.push(returned === server);
      await once(server, 'close').catch(() => {});
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      await new Promise<void>((resolve) =>
        server.close(function (this: unknown, ...args: unknown[]) {
          results.push(this === server, args.length, args[0]);
          resolve();
        }),
      );
      return results;
    };
    const f = fixture();
    const withPlugin = await outcome();
    f.plugin.disable();
    const without = await outcome();
    expect(withPlugin).toEqual(without);
    expect(withPlugin[0]).toBe(true);
  });

  it('Socket.connect keeps its return value and its thrown errors', async () => {
    const outcome = async () => {
      const results: unknown[] = [];
      try {
        new net.Socket().connect({} as never);
      } catch (error) {
        results.push((error as { code?: string }).code, (error as Error).message);
      }
      const server = net.createServer((s) => s.end());
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const socket = new net.Socket();
      results.push(socket.connect(portOf(server), '127.0.0.1') === socket);
      socket.resume();
      await closed(socket);
      server.close();
      return results;
    };
    const f = fixture();
    const withPlugin = await outcome();
    f.plugin.disable();
    expect(withPlugin).toEqual(await outcome());
    expect(withPlugin[0]).toBe('ERR_MISSING_ARGS');
    expect(withPlugin[2]).toBe(true);
  });

  it('never lets an error inside instrumentation reach the application', async () => {
    const real = createResourceTracker({ scanIntervalMs: 0 });
    const broken = Object.create(real) as ResourceTracker;
    const boom = () => {
      throw new Error('instrumentation failure');
    };
    Object.assign(broken, { track: boom, captureSite: boom });
    const plugin = netPlugin();
    plugin.enable({ tracker: broken });
    cleanups.push(() => {
      plugin.disable();
      real.shutdown();
    });
    await exercise();
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    server.close();
  });
});

import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  asyncHooksAvoidPromises,
  createAsyncHooksSource,
  createResourceTracker,
  type ResourceTracker,
} from '../src/index.js';

const supported = asyncHooksAvoidPromises();
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tracker(): ResourceTracker {
  const t = createResourceTracker({ scanIntervalMs: 0, stacks: 'all' });
  cleanups.push(() => t.shutdown());
  return t;
}

/** Destroy hooks run asynchronously after close: this waits for them to be delivered. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('tracker.untracked and tracker.ignore', () => {
  it('untracked(fn) tracks nothing created inside, returns its value and restores on throw', () => {
    const t = tracker();
    const inside = t.untracked(() => t.track({}, { kind: 'test.own' }));
    expect(inside.released).toBe(true);
    expect(() =>
      t.untracked(() => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    const outside = t.track({}, { kind: 'test.app' });
    expect(outside.released).toBe(false);
    expect(t.snapshot().active).toEqual({ 'test.app': 1 });
  });

  it('ignore(object) skips that object only', () => {
    const t = tracker();
    const mine = {};
    t.ignore(mine);
    expect(t.track(mine, { kind: 'test.x' }).released).toBe(true);
    expect(t.track({}, { kind: 'test.x' }).released).toBe(false);
    expect(t.snapshot().active['test.x']).toBe(1);
  });

  it("ignore(server._handle) skips what the server's connection callbacks track", async () => {
    const t = tracker();
    const server = createServer((socket) => {
      const handle = t.track(socket, { kind: 'test.accepted' });
      socket.end();
      handle.annotate({ seen: true });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => closeServer(server));
    t.ignore((server as unknown as { _handle: object })._handle);
    const client = connect((server.address() as { port: number }).port, '127.0.0.1');
    const clientHandle = t.track(client, { kind: 'test.client' });
    await once(client, 'end');
    client.destroy();
    expect(clientHandle.released).toBe(false);
    expect(t.snapshot().active).toEqual({ 'test.client': 1 });
  });

  it.runIf(supported)(
    'with the async-hooks source: a server started inside untracked() and its connections and timers are not tracked',
    async () => {
      const t = tracker();
      const source = createAsyncHooksSource();
      source.enable({ tracker: t });
      cleanups.push(() => source.disable());
      let server!: Server;
      t.untracked(() => {
        server = createServer((socket) => {
          // a timer started from the connection's callback: still instrumentation's
          setTimeout(() => socket.end(), 5);
        });
        server.listen(0, '127.0.0.1');
      });
      await once(server, 'listening');
      cleanups.push(() => closeServer(server));
      const client = connect((server.address() as { port: number }).port, '127.0.0.1');
      await once(client, 'end');
      const snapshot = t.snapshot();
      // only the application's client socket is tracked
      expect(snapshot.resources.map((r) => r.kind).sort()).toEqual(['async.TCPWRAP']);
      expect(snapshot.opened['async.TCPSERVERWRAP'] ?? 0).toBe(0);
      expect(snapshot.opened.timer ?? 0).toBe(0);
      client.destroy();
      await settle();
      // the application's own timers are still tracked
      const timer = setTimeout(() => {}, 60_000);
      cleanups.push(() => clearTimeout(timer));
      expect(t.snapshot().active.timer).toBe(1);
    },
  );
});

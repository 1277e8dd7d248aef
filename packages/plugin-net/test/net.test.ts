import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { LeakEvent, LeakGroup } from '@trustflow/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closed, type Fixture, portOf, setup, siteOf, tlsFiles } from './helpers.js';

const here = fileURLToPath(import.meta.url);

let f: Fixture;
const cleanups: (() => unknown)[] = [];
beforeEach(() => {
  f = setup();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await f.cleanup();
});

/** A server on 127.0.0.1 that echoes, closed after the test. */
async function echoServer(): Promise<{ server: Server; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const server = net.createServer((socket) => {
    accepted.push(socket);
    socket.on('data', (d) => socket.write(d));
  });
  server.listen(0, '127.0.0.1'); // MARK:echo-listen
  await once(server, 'listening');
  cleanups.push(() => {
    for (const s of accepted) s.destroy();
    server.close();
  });
  return { server, accepted };
}

const socketsByRole = (leaks: LeakGroup[], role: string) =>
  leaks.filter(
    (l) => l.kind === 'net.socket' && l.sample.attributes['trustflow.net.role'] === role,
  );
const spans = (kind: string) => f.tracing.spans().filter((s) => s.name === kind);
const spanOfRole = (role: string) =>
  spans('net.socket').find((s) => s.attributes['trustflow.net.role'] === role);

describe('sockets', () => {
  it('reports a socket left open by a client and one left open by a server, with their lines', async () => {
    const { server, accepted } = await echoServer();
    const client = net.connect(portOf(server), '127.0.0.1'); // MARK:client-connect
    client.write('ping');
    await once(client, 'data');

    const { leaks } = f.tracker.report({ includeOpen: true });
    const [clientLeak] = socketsByRole(leaks, 'client');
    const [serverLeak] = socketsByRole(leaks, 'server');
    expect(clientLeak?.site).toMatch(siteOf(here, 'MARK:client-connect'));
    // a socket accepted by a server was created by the line that made the server listen
    expect(serverLeak?.site).toMatch(siteOf(here, 'MARK:echo-listen'));
    expect(clientLeak?.sample.attributes).toMatchObject({
      'network.transport': 'tcp',
      'trustflow.net.tls': false,
      'network.peer.address': '127.0.0.1',
      'network.peer.port': portOf(server),
      'trustflow.net.bytes_read': 4,
      'trustflow.net.bytes_written': 4,
    });
    expect(serverLeak?.sample.attributes).toMatchObject({
      'network.local.port': portOf(server),
      'network.peer.port': client.localPort,
    });

    client.end();
    await Promise.all([closed(client), closed(accepted[0]!)]);
    expect(f.tracker.snapshot().active['net.socket']).toBe(0);
    expect(spanOfRole('client')?.attributes).toMatchObject({
      'trustflow.net.bytes_read': 4,
      'trustflow.net.bytes_written': 4,
      'trustflow.close.cause': 'end',
      'network.peer.port': portOf(server),
      'network.local.address': '127.0.0.1',
    });
    expect(spanOfRole('server')?.attributes).toMatchObject({
      'trustflow.net.bytes_read': 4,
      'trustflow.net.bytes_written': 4,
      'trustflow.close.cause': 'end',
      'network.local.port': portOf(server),
    });
  });

  it('counts bytes of larger transfers exactly', async () => {
    const { server, accepted } = await echoServer();
    const client = net.connect(portOf(server), '127.0.0.1');
    const payload = Buffer.alloc(256 * 1024, 7);
    let received = 0;
    client.on('data', (d: Buffer) => {
      received += d.length;
      if (received === payload.length) client.end();
    });
    client.write(payload);
    await Promise.all([closed(client), once(server, 'connection').catch(() => {})].slice(0, 1));
    await closed(accepted[0]!);
    expect(spanOfRole('client')?.attributes['trustflow.net.bytes_read']).toBe(payload.length);
    expect(spanOfRole('client')?.attributes['trustflow.net.bytes_written']).toBe(payload.length);
    expect(spanOfRole('server')?.attributes['trustflow.net.bytes_read']).toBe(payload.length);
  });

  it('records the close cause: destroy, error, timeout', async () => {
    const { server } = await echoServer();
    const destroyed = net.connect(portOf(server), '127.0.0.1');
    await once(destroyed, 'connect');
    destroyed.destroy();
    await closed(destroyed);

    const probe = net.createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const freePort = portOf(probe);
    probe.close();
    await once(probe, 'close');
    const refused = net.connect(freePort, '127.0.0.1');
    const [error] = await once(refused, 'error');
    expect((error as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    await closed(refused);

    const slow = net.connect(portOf(server), '127.0.0.1');
    slow.setTimeout(20);
    await once(slow, 'timeout');
    slow.destroy();
    await closed(slow);

    const causes = spans('net.socket')
      .filter((s) => s.attributes['trustflow.net.role'] === 'client')
      .map((s) => s.attributes['trustflow.close.cause']);
    expect(causes).toEqual(['destroy', 'error', 'timeout']);
    const refusedSpan = spans('net.socket').find(
      (s) => s.attributes['trustflow.close.cause'] === 'error',
    );
    expect(refusedSpan?.attributes['error.type']).toBe('Error');
  });

  it('releases a socket destroyed before it could connect', async () => {
    const { server } = await echoServer();
    const socket = net.connect(portOf(server), '127.0.0.1');
    socket.destroy();
    await closed(socket);
    expect(f.tracker.snapshot().active['net.socket']).toBe(0);
    expect(spanOfRole('client')?.attributes['trustflow.close.cause']).toBe('destroy');
  });

  it('tracks Unix domain sockets with their transport', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trustflow-net-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 's.sock');
    const server = net.createServer((s) => s.end('bye'));
    server.listen(path);
    await once(server, 'listening');
    cleanups.push(() => server.close());
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const client = net.connect(path);
    client.resume();
    const [peer] = await accepted;
    await Promise.all([closed(client), closed(peer)]);
    expect(spans('net.socket').map((s) => s.attributes['network.transport'])).toEqual([
      'unix',
      'unix',
    ]);
    expect(f.tracker.report({ includeOpen: true }).leaks[0]?.sample.attributes).toMatchObject({
      'network.transport': 'unix',
      'network.local.address': path,
    });
  });

  it('is idle when its byte counts stop moving (no per-I/O hook)', async () => {
    let now = 0;
    const clocked = setup({}, { now: () => now, staleAfterMs: 1000, idleAfterMs: 500 });
    cleanups.push(() => clocked.cleanup());
    const stale: LeakEvent[] = [];
    clocked.tracker.onLeak((l) => stale.push(l));
    const { server } = await echoServer();
    const client = net.connect(portOf(server), '127.0.0.1');
    await once(client, 'connect');
    cleanups.push(() => client.destroy());
    now = 2000;
    clocked.tracker.scan();
    const clientStale = () =>
      stale.filter((l) => l.attributes['trustflow.net.role'] === 'client').length;
    expect(clientStale()).toBe(1);
    client.write('x');
    await once(client, 'data');
    now = 2100;
    clocked.tracker.scan();
    expect(clientStale()).toBe(1); // moved: active again, not reported twice
    now = 3000;
    clocked.tracker.scan();
    expect(clientStale()).toBe(2);
  });
});

describe('servers', () => {
  it('reports a server never closed, with the listen() line, and releases it at close()', async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1'); // MARK:forgotten-server
    await once(server, 'listening');
    const [leak] = f.tracker.report({ includeOpen: true }).leaks;
    expect(leak).toMatchObject({ kind: 'net.server', reason: 'open-at-exit', count: 1 });
    expect(leak?.site).toMatch(siteOf(here, 'MARK:forgotten-server'));
    expect(leak?.sample.attributes).toMatchObject({
      'network.transport': 'tcp',
      'trustflow.net.tls': false,
      'network.local.address': '127.0.0.1',
      'network.local.port': portOf(server),
    });
    expect(server.close()).toBe(server);
    expect(f.tracker.snapshot().active['net.server']).toBe(0);
    expect(spans('net.server')[0]?.attributes['trustflow.close.cause']).toBe('close');
  });

  it('attributes a listen that waits for an address lookup to the listen() call', async () => {
    const server = net.createServer();
    server.listen(0, 'localhost'); // MARK:lookup-listen
    await once(server, 'listening');
    cleanups.push(() => server.close());
    const [leak] = f.tracker.report({ includeOpen: true }).leaks;
    expect(leak?.site).toMatch(siteOf(here, 'MARK:lookup-listen'));
  });

  it('does not track a listen that fails', async () => {
    const first = net.createServer();
    first.listen(0, '127.0.0.1');
    await once(first, 'listening');
    cleanups.push(() => first.close());
    const second = net.createServer();
    second.listen(portOf(first), '127.0.0.1');
    const [error] = await once(second, 'error');
    expect((error as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
    expect(f.tracker.snapshot().active['net.server']).toBe(1);
  });
});

describe('tls and http(s) agents', () => {
  it('tracks tls client and server sockets as tls', async () => {
    const server = tls.createServer(tlsFiles, (s) => s.end('hello'));
    server.listen(0, '127.0.0.1'); // MARK:tls-listen
    await once(server, 'listening');
    cleanups.push(() => server.close());
    const client = tls.connect({ port: portOf(server), host: '127.0.0.1', ca: tlsFiles.cert }); // MARK:tls-connect
    const report = await new Promise<LeakGroup[]>((resolve) =>
      client.once('secureConnect', () => resolve(f.tracker.report({ includeOpen: true }).leaks)),
    );
    const [clientLeak] = socketsByRole(report, 'client');
    const [serverLeak] = socketsByRole(report, 'server');
    expect(clientLeak?.site).toMatch(siteOf(here, 'MARK:tls-connect'));
    expect(serverLeak?.site).toMatch(siteOf(here, 'MARK:tls-listen'));
    for (const leak of [clientLeak, serverLeak]) {
      expect(leak?.sample.attributes).toMatchObject({
        'network.transport': 'tcp',
        'trustflow.net.tls': true,
      });
    }
    const tlsServer = report.find((l) => l.kind === 'net.server');
    expect(tlsServer?.sample.attributes['trustflow.net.tls']).toBe(true);
    client.resume();
    await closed(client);
    expect(spanOfRole('client')?.attributes['trustflow.net.bytes_read']).toBe(5);
  });

  it("tells a keep-alive agent's idle sockets from the ones in use", async () => {
    let inUse: Record<string, unknown> | undefined;
    const server = http.createServer((_req, res) => {
      const snapshot = f.tracker.snapshot();
      inUse = snapshot.resources.find(
        (r) => r.kind === 'net.socket' && r.attributes['trustflow.net.role'] === 'client',
      )?.attributes;
      res.end('ok');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const agent = new http.Agent({ keepAlive: true });
    cleanups.push(() => {
      agent.destroy();
      server.closeAllConnections();
      server.close();
    });
    await new Promise<void>((resolve, reject) => {
      const options = { host: '127.0.0.1', port: portOf(server), agent };
      const onResponse = (res: http.IncomingMessage) => {
        res.resume();
        res.on('end', resolve);
      };
      const request = http.get(options, onResponse); // MARK:agent-request
      request.on('error', reject);
    });
    // the agent puts the socket back in its pool once the response has been read
    await new Promise((resolve) => setImmediate(resolve));
    expect(inUse?.['trustflow.net.pool_state']).toBe('in-use');
    const [idle] = socketsByRole(f.tracker.report({ includeOpen: true }).leaks, 'client');
    expect(idle?.sample.attributes['trustflow.net.pool_state']).toBe('idle');
    expect(idle?.site).toMatch(siteOf(here, 'MARK:agent-request'));
    // server-side sockets are not pool members
    const [accepted] = socketsByRole(f.tracker.report({ includeOpen: true }).leaks, 'server');
    expect(accepted?.sample.attributes['trustflow.net.pool_state']).toBeUndefined();
  });

  it('tracks the sockets of an https agent', async () => {
    const server = https.createServer(tlsFiles, (_req, res) => res.end('ok'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const agent = new https.Agent({ keepAlive: true, ca: tlsFiles.cert });
    cleanups.push(() => {
      agent.destroy();
      server.closeAllConnections();
      server.close();
    });
    await new Promise<void>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port: portOf(server), agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        })
        .on('error', reject);
    });
    expect(f.tracker.snapshot().opened['net.socket']).toBe(2);
    const live = f.tracker.snapshot().resources.filter((r) => r.kind === 'net.socket');
    expect(
      live
        .map((r) => [r.attributes['trustflow.net.role'], r.attributes['trustflow.net.tls']])
        .sort(),
    ).toEqual([
      ['client', true],
      ['server', true],
    ]);
  });
});

describe('instrumentation of its own', () => {
  it('does not track sockets created inside tracker.untracked(), nor those of an ignored server', async () => {
    const { server } = await echoServer();
    const quiet = f.tracker.untracked(() => net.connect(portOf(server), '127.0.0.1'));
    await once(quiet, 'connect');
    const own = net.createServer((s) => s.end());
    f.tracker.ignore(own);
    own.listen(0, '127.0.0.1');
    await once(own, 'listening');
    const toOwn = net.connect(portOf(own), '127.0.0.1');
    toOwn.resume();
    await closed(toOwn);
    own.close();
    const roles = f.tracker
      .snapshot()
      .resources.filter((r) => r.kind === 'net.socket')
      .map((r) => r.attributes['trustflow.net.role']);
    // only the echo server's side of the quiet connection is the application's
    expect(roles).toEqual(['server']);
    expect(f.tracker.snapshot().opened['net.server']).toBe(1);
    quiet.destroy();
  });
});

describe('fd inventory provider', () => {
  it('tells @trustflow/plugin-fs which descriptors its sockets and servers hold', async () => {
    const { server, accepted } = await echoServer();
    const client = net.connect(portOf(server), '127.0.0.1');
    await once(client, 'connect');
    await new Promise((resolve) => setImmediate(resolve));
    const registry = (globalThis as Record<symbol, Set<(add: (fd: number) => void) => void>>)[
      Symbol.for('trustflow.fd-providers')
    ]!;
    const fds = new Set<number>();
    for (const provider of registry) provider((fd) => fds.add(fd));
    const fdOf = (s: object) => (s as { _handle: { fd: number } })._handle.fd;
    for (const resource of [server, client, accepted[0]!]) expect(fds).toContain(fdOf(resource));
    client.destroy();
  });
});

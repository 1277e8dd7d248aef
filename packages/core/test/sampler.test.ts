import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { openFdCount, sampleProcess } from '../src/index.js';

const linux = process.platform === 'linux';

async function listen(host: string): Promise<{ server: Server; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const server = createServer((s) => accepted.push(s));
  server.listen(0, host);
  await once(server, 'listening');
  return { server, accepted };
}

async function openConnections(host: string, count: number) {
  const { server, accepted } = await listen(host);
  const port = (server.address() as { port: number }).port;
  const clients: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const client = connect(port, host);
    await once(client, 'connect');
    clients.push(client);
  }
  while (accepted.length < count) await once(server, 'connection');
  return {
    async close() {
      const closed = [...clients, ...accepted].map((s) => once(s, 'close'));
      for (const s of clients) s.destroy();
      await Promise.all(closed);
      server.close();
      await once(server, 'close');
    },
  };
}

function ipv6Available(): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(0, '::1', () => server.close(() => resolve(true)));
  });
}

describe.runIf(linux)('sampleProcess on Linux', () => {
  it('reads RSS, VSZ, threads and descriptors by type', () => {
    // RSS read just before and just after: the sample's must lie between them (within 20 %: the
    // process allocates while it reads /proc)
    const rssBefore = process.memoryUsage.rss();
    const sample = sampleProcess();
    const rssAfter = process.memoryUsage.rss();
    expect(sample.source).toBe('proc');
    expect(sample.pid).toBe(process.pid);
    expect(sample.threads).toBeGreaterThanOrEqual(1);
    expect(sample.vszBytes).toBeGreaterThan(sample.rssBytes);
    expect(sample.rssBytes).toBeGreaterThanOrEqual(Math.min(rssBefore, rssAfter) * 0.8);
    expect(sample.rssBytes).toBeLessThanOrEqual(Math.max(rssBefore, rssAfter) * 1.2);
    expect(sample.heapUsedBytes).toBeGreaterThan(0);
    const fds = sample.fds!;
    const sum = Object.values(fds.byType).reduce((a, b) => a + b, 0);
    expect(sum).toBe(fds.total);
    expect(Math.abs(fds.total - openFdCount()!)).toBeLessThanOrEqual(2);
  });

  it('counts exactly the TCP connections this test establishes (IPv4), never listeners', async () => {
    const before = sampleProcess();
    const open = await openConnections('127.0.0.1', 3);
    const during = sampleProcess();
    // Both ends live in this process: 3 client sockets and 3 accepted ones.
    expect(during.tcpEstablished! - before.tcpEstablished!).toBe(6);
    expect(during.tcpListening! - before.tcpListening!).toBe(1);
    expect(during.fds!.byType.socket! - (before.fds!.byType.socket ?? 0)).toBe(7);
    await open.close();
    const after = sampleProcess();
    expect(after.tcpEstablished).toBe(before.tcpEstablished);
    expect(after.tcpListening).toBe(before.tcpListening);
  });

  it('counts IPv6 connections from /proc/net/tcp6 too', async () => {
    if (!(await ipv6Available())) return;
    const before = sampleProcess();
    const open = await openConnections('::1', 2);
    expect(sampleProcess().tcpEstablished! - before.tcpEstablished!).toBe(4);
    await open.close();
    expect(sampleProcess().tcpEstablished).toBe(before.tcpEstablished);
  });

  it('does not count connections of other processes in the same network namespace', async () => {
    const { execFile } = await import('node:child_process');
    const { server, accepted } = await listen('127.0.0.1');
    const port = (server.address() as { port: number }).port;
    const before = sampleProcess();
    // A child connects and holds the connection: only our accepted end is ours.
    const child = execFile(process.execPath, [
      '-e',
      `const s = require('node:net').connect(${port}, '127.0.0.1', () => process.stdout.write('up\\n')); process.stdin.on('data', () => {}); process.stdin.on('end', () => s.destroy());`,
    ]);
    await once(child.stdout!, 'data');
    while (accepted.length < 1) await once(server, 'connection');
    expect(sampleProcess().tcpEstablished! - before.tcpEstablished!).toBe(1);
    child.stdin!.end();
    await once(child, 'exit');
    accepted[0]!.destroy();
    server.close();
    await once(server, 'close');
  });
});

describe.skipIf(linux)('sampleProcess elsewhere', () => {
  it('falls back to RSS and heap, with null for the rest', () => {
    const sample = sampleProcess();
    expect(sample.source).toBe('fallback');
    expect(sample.fds).toBeNull();
    expect(sample.tcpEstablished).toBeNull();
  });
});

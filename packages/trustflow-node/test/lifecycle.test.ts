import fs from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createTrustflowNode, encodeChunkLength, MessageType } from '../src/index.js';
import {
  closed,
  header,
  jsonChunks,
  openProtocolStreams,
  openRaw,
  plainNode,
  readAll,
  startNode,
  stopAll,
  waitForReady,
} from './helpers.js';

afterEach(stopAll);

describe('worker pool', () => {
  it('closes a stream that no worker takes within the dispatch timeout', async () => {
    const gate = Promise.withResolvers<void>();
    let entered = 0;
    const allBusy = Promise.withResolvers<void>();
    const server = await startNode({
      handlers: {
        [MessageType.JobRunRequest]: async () => {
          if (++entered === 10) allBusy.resolve();
          await gate.promise;
        },
      },
    });
    const client = await plainNode();
    const id = client.peerId.toString();
    const send = async () => {
      const stream = await openRaw(client, server.address);
      stream.send(header(MessageType.JobRunRequest, id));
      for (const part of jsonChunks({ job: 1 })) stream.send(part);
      await stream.close();
      return stream;
    };
    const busy = await Promise.all(Array.from({ length: 10 }, send));
    await allBusy.promise;
    expect(server.node.stats().workersBusy).toBe(10);

    const from = server.log.lines.length;
    const started = performance.now();
    const extra = await send();
    expect(await closed(extra)).toBeDefined();
    const waited = performance.now() - started;
    const line = await server.log.next((l) => l.fields?.reason === 'dispatch-timeout', from);
    expect(line.message).toContain('no worker free within 50 ms');
    expect(waited).toBeGreaterThanOrEqual(45);
    expect(server.node.stats().endedEarly).toEqual({ 'dispatch-timeout': 1 });

    gate.resolve();
    await Promise.all(busy.map((stream) => readAll(stream)));
    expect(server.node.stats().served.JobRunRequest).toBe(10);
    expect(server.node.stats().workersBusy).toBe(0);
    expect(openProtocolStreams(server.node.libp2p)).toBe(0);
  });
});

describe('shutdown', () => {
  it('drains, aborts what is left, and leaves no tracked resource open within its deadline', async () => {
    const a = await startNode({ deadlines: { drainMs: 300, stopMs: 3_000, idleMs: 20_000 } });
    const b = await startNode({ offers: [{ id: 'o', name: 'service' }] });
    await b.node.dial(a.address);
    expect(await a.node.lookup('service', { timeoutMs: 5_000, peers: 1 })).toHaveLength(1);
    // a stream stalled mid-payload keeps a worker busy until shutdown aborts it
    const client = await plainNode();
    const stalled = await openRaw(client, a.address);
    stalled.send(header(MessageType.ServiceRequest, client.peerId.toString()));
    stalled.send(encodeChunkLength(100));
    stalled.send(new Uint8Array(10));
    await waitForReady(stalled);
    const ended = closed(stalled);

    const result = await a.node.stop();
    expect(result.drained).toBe(false);
    expect(result.aborted).toBe(1);
    expect(result.elapsedMs).toBeLessThan(300 + 3_000 + 1_000);
    expect(await ended).toBeDefined();
    expect(a.node.stats()).toMatchObject({
      activeStreams: 0,
      workersBusy: 0,
      pendingReplies: 0,
      buffersLent: 0,
      connections: 0,
    });
    expect(a.tracker.snapshot().resources).toEqual([]);
    expect(a.tracker.report({ includeOpen: true }).leaks).toEqual([]);
    // stop is idempotent
    expect(await a.node.stop()).toBe(result);
  });

  it('refuses new work once stopping', async () => {
    const a = await startNode();
    const b = await startNode();
    await a.node.stop();
    await expect(b.node.sendMessage(a.address, MessageType.JobRunStatus, {})).rejects.toThrow();
    await expect(a.node.sendMessage(b.address, MessageType.JobRunStatus, {})).rejects.toThrow(
      'node is stopping',
    );
  });
});

describe('deadlines', () => {
  it('gives up a dial to a peer that accepts TCP but never speaks, within dialMs', async () => {
    // a loopback server that takes the connection and then says nothing (no multistream, no noise)
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const a = await startNode({ deadlines: { dialMs: 300 } });
      const someone = (await plainNode()).peerId.toString();
      const target = `/ip4/127.0.0.1/tcp/${port}/p2p/${someone}`;
      const started = performance.now();
      await expect(a.node.sendMessage(target, MessageType.JobRunStatus, {})).rejects.toThrow(
        `dial ${target}: no connection within 300 ms`,
      );
      const took = performance.now() - started;
      expect(took).toBeGreaterThanOrEqual(290);
      expect(took).toBeLessThan(3_000);
      expect(a.node.stats()).toMatchObject({ activeStreams: 0, connections: 0 });
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

describe('a start that fails', () => {
  it('closes what it had opened: the metrics server, the plugins, the pool', async () => {
    const listen = async (port = 0) => {
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
      return server;
    };
    const blocker = await listen();
    const busyPort = (blocker.address() as { port: number }).port;
    const probe = await listen();
    const metricsPort = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
    const openBefore = fs.open;
    try {
      await expect(
        createTrustflowNode({
          port: busyPort,
          metrics: { host: '127.0.0.1', port: metricsPort },
          instrument: true,
          logger: () => {},
        }),
      ).rejects.toThrow(/EADDRINUSE|address already in use/i);
      // the metrics port is free again and fs is no longer patched
      const again = await listen(metricsPort);
      await new Promise((resolve) => again.close(resolve));
      expect(fs.open).toBe(openBefore);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});

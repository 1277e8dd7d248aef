import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeChunkLength, MAX_CHUNK_BYTES, MessageType } from '../src/index.js';
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
  type TestNode,
  waitForReady,
} from './helpers.js';

afterEach(stopAll);

let server: TestNode;
let client: Libp2p;
let clientId: string;

beforeEach(async () => {
  server = await startNode({
    offers: [{ id: 'o1', name: 'thing' }],
    deadlines: { idleMs: 400 },
  });
  client = await plainNode();
  clientId = client.peerId.toString();
});

/** The server ended exactly one stream, for `reason`, and nothing of it is left open. */
async function expectEndedOnly(reason: string, from: number): Promise<void> {
  const line = await server.log.next((l) => l.fields?.reason === reason, from);
  expect(line.level).toBe('warn');
  expect(line.message).toContain(reason);
  // the worker's cleanup runs right after the log line: wait for the worker to go idle
  await new Promise((resolve) => setImmediate(resolve));
  const stats = server.node.stats();
  expect(stats.endedEarly).toEqual({ [reason]: 1 });
  expect(stats.activeStreams).toBe(0);
  expect(stats.workersBusy).toBe(0);
  expect(stats.buffersLent).toBe(0);
  expect(server.tracker.snapshot().active['trustflow_node.exchange'] ?? 0).toBe(0);
  expect(openProtocolStreams(server.node.libp2p)).toBe(0);
}

/** The node keeps serving: a well-formed request on the same connection still works. */
async function expectStillServing(): Promise<void> {
  const stream = await openRaw(client, server.address);
  stream.send(header(MessageType.ServiceOfferList, clientId));
  await waitForReady(stream);
  for (const part of jsonChunks({ offers: [{ id: 'x', name: 'y' }] })) stream.send(part);
  await stream.close();
  await readAll(stream);
  expect(server.node.stats().served.ServiceOfferList).toBe(1);
  expect(client.getConnections()).toHaveLength(1);
}

describe('bad input ends only its own stream', () => {
  it('an unknown message type', async () => {
    const from = server.log.lines.length;
    const stream = await openRaw(client, server.address);
    stream.send(header(99, clientId));
    expect(await closed(stream)).toBeDefined();
    await expectEndedOnly('unknown-type', from);
    await expectStillServing();
  });

  it('the obsolete message type 2', async () => {
    const from = server.log.lines.length;
    const stream = await openRaw(client, server.address);
    stream.send(header(2, clientId));
    expect(await closed(stream)).toBeDefined();
    await expectEndedOnly('obsolete-type', from);
    await expectStillServing();
  });

  it('a truncated header', async () => {
    const from = server.log.lines.length;
    const stream = await openRaw(client, server.address);
    stream.send(header(MessageType.ServiceRequest, clientId).subarray(0, 100));
    await stream.close();
    await closed(stream);
    await expectEndedOnly('truncated-header', from);
    await expectStillServing();
  });

  it('an oversize chunk', async () => {
    const from = server.log.lines.length;
    const stream = await openRaw(client, server.address);
    stream.send(header(MessageType.ServiceRequest, clientId));
    await waitForReady(stream);
    stream.send(encodeChunkLength(MAX_CHUNK_BYTES + 1));
    expect(await closed(stream)).toBeDefined();
    await expectEndedOnly('oversize-chunk', from);
    await expectStillServing();
  });

  it('a payload past the per-stream limit', async () => {
    // the protocol's limit is 100 MiB; this node is started with 64 KiB to keep the test small
    const small = await startNode({}, { maxStreamBytes: 64 * 1024 });
    server = small;
    const from = small.log.lines.length;
    const stream = await openRaw(client, small.address);
    stream.send(header(MessageType.ServiceRequest, clientId));
    await waitForReady(stream);
    for (let i = 0; i < 3; i++) {
      stream.send(encodeChunkLength(30 * 1024));
      stream.send(new Uint8Array(30 * 1024));
    }
    expect(await closed(stream)).toBeDefined();
    await expectEndedOnly('oversize-stream', from);
    await expectStillServing();
  });

  it('a stream that stalls mid-chunk', async () => {
    const from = server.log.lines.length;
    const stream = await openRaw(client, server.address);
    stream.send(header(MessageType.ServiceRequest, clientId));
    await waitForReady(stream);
    stream.send(encodeChunkLength(100));
    stream.send(new Uint8Array(10));
    expect(await closed(stream)).toBeDefined();
    await expectEndedOnly('stalled', from);
    await expectStillServing();
  });

  it('a peer that disconnects mid-transfer', async () => {
    const from = server.log.lines.length;
    const stream = await openRaw(client, server.address);
    stream.send(header(MessageType.File, clientId, { jobId: 9 }));
    await waitForReady(stream);
    stream.send(new Uint8Array(200_000).fill(7));
    await stream.onDrain();
    for (const connection of client.getConnections())
      connection.abort(new Error('pulled the plug'));
    await expectEndedOnly('peer-disconnected', from);
    // the partial file is gone
    const dir = join(server.dataDir, 'received', clientId);
    expect(await readdir(dir)).toEqual([]);
    // a new connection is served
    await expectStillServing();
  });
});

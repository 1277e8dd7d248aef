import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, PROTOCOL, READY } from '../src/index.js';
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
} from './helpers.js';

afterEach(stopAll);

const OFFERS = [
  { id: 'gpu-1', name: 'GPU inference', description: 'llama on an A100', tags: ['gpu', 'ml'] },
  { id: 'store-1', name: 'Cold storage', tags: ['storage'] },
];

describe('trustflow-node over loopback', () => {
  it('finds offers on another node through a gossip lookup', async () => {
    const a = await startNode({ offers: OFFERS });
    const b = await startNode();
    await b.node.dial(a.address);
    const found = await b.node.lookup('gpu', { timeoutMs: 5_000, peers: 1 });
    expect(found).toEqual([{ peerId: a.node.peerId, offer: OFFERS[0] }]);
    expect(b.node.stats().cachedOffers).toBe(1);
    expect(b.node.stats().served.ServiceOfferList).toBe(1);
    // nothing matches: no answer, an empty result once the time is up
    expect(await b.node.lookup('quantum', { timeoutMs: 300 })).toEqual([]);
  });

  it('answers a service request with a response stream', async () => {
    const a = await startNode({
      offers: OFFERS,
      onServiceRequest: (request, peer) => ({
        echo: request,
        from: peer,
        big: 'x'.repeat(200_000),
      }),
      chunkBytes: 16 * 1024,
    });
    const b = await startNode();
    const answer = (await b.node.requestService(a.address, { offerId: 'gpu-1' })) as {
      echo: unknown;
      from: string;
      big: string;
    };
    expect(answer.echo).toEqual({ offerId: 'gpu-1' });
    expect(answer.from).toBe(b.node.peerId);
    expect(answer.big).toHaveLength(200_000);
    expect(b.node.stats().pendingReplies).toBe(0);
    // the default handler answers from the offers
    const c = await startNode({ offers: OFFERS });
    expect(await b.node.requestService(c.address, { offerId: 'store-1' })).toEqual({
      accepted: true,
      offer: OFFERS[1],
    });
  });

  it('transfers a file larger than one chunk and verifies its checksum', async () => {
    const a = await startNode();
    const b = await startNode();
    const content = randomBytes(3 * 1024 * 1024 + 123);
    const path = join(b.dataDir, 'payload.bin');
    await writeFile(path, content);
    const progress: number[] = [];
    const result = await b.node.sendFile(a.address, path, {
      workflowId: 7,
      jobId: 42,
      interfaceId: 3,
      onProgress: (p) => progress.push(p.bytes),
    });
    const expected = createHash('sha256').update(content).digest('hex');
    expect(result).toEqual({
      bytes: content.length,
      sha256: expected,
      remoteSha256: expected,
      verified: true,
    });
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.at(-1)).toBe(content.length);
    const saved = await readFile(join(a.dataDir, 'received', b.node.peerId, '7-42-3'));
    expect(saved.equals(content)).toBe(true);
    expect(a.node.stats()).toMatchObject({ activeStreams: 0, workersBusy: 0, buffersLent: 0 });
  });

  it('interoperates with a plain libp2p node speaking the same bytes', async () => {
    const a = await startNode({ offers: OFFERS });
    const plain = await plainNode();
    const plainId = plain.peerId.toString();

    // plain -> trustflow: a service lookup (type 13) as a stream; the answer comes back as a
    // type 0 stream that the plain node reads byte by byte.
    const answered = Promise.withResolvers<Uint8Array>();
    await plain.handle(PROTOCOL, async (stream) => {
      const headerBytes = await readExactly(stream, 536);
      expect(new DataView(headerBytes.buffer, headerBytes.byteOffset).getUint16(0)).toBe(0);
      stream.send(READY);
      answered.resolve(await readAll(stream));
      await stream.close();
    });
    const out = await openRaw(plain, a.address);
    out.send(header(MessageType.ServiceLookup, plainId));
    const ready = await readExactly(out, 7);
    expect(new TextDecoder().decode(ready)).toBe('TFREADY');
    for (const part of jsonChunks({ query: 'storage', lookupId: 'abc' }, 5)) out.send(part);
    await out.close();
    await closed(out);
    const payload = await answered.promise;
    expect(parseChunks(payload)).toEqual({ lookupId: 'abc', offers: [OFFERS[1]] });

    // trustflow -> plain: sendMessage's bytes as the plain node sees them
    const got = Promise.withResolvers<{ header: Uint8Array; body: unknown }>();
    await plain.unhandle(PROTOCOL);
    await plain.handle(PROTOCOL, async (stream) => {
      const h = await readExactly(stream, 536);
      stream.send(READY);
      const rest = await readAll(stream);
      await stream.close();
      got.resolve({ header: h, body: parseChunks(rest) });
    });
    const plainAddress = `${plain.getMultiaddrs()[0]!.toString()}`;
    await a.node.sendMessage(
      plainAddress,
      MessageType.JobRunStatus,
      { state: 'running' },
      {
        workflowId: 5,
        jobId: 6,
        interfaceId: 7,
      },
    );
    const { header: h, body } = await got.promise;
    const view = new DataView(h.buffer, h.byteOffset);
    expect(view.getUint16(0)).toBe(7);
    expect(new TextDecoder().decode(h.subarray(2, 2 + a.node.peerId.length))).toBe(a.node.peerId);
    expect(h[2 + a.node.peerId.length]).toBe(0);
    expect(view.getBigInt64(512)).toBe(5n);
    expect(view.getBigInt64(520)).toBe(6n);
    expect(view.getBigInt64(528)).toBe(7n);
    expect(body).toEqual({ state: 'running' });
    expect(openProtocolStreams(a.node.libp2p)).toBe(0);
  });
});

async function readExactly(
  stream: import('@libp2p/interface').Stream,
  n: number,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let have = 0;
  const got = Promise.withResolvers<void>();
  const onMessage = (evt: { data: Uint8Array | { subarray(): Uint8Array } }) => {
    const data = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray();
    parts.push(data);
    have += data.length;
    if (have >= n) got.resolve();
  };
  stream.addEventListener('message', onMessage as never);
  await got.promise;
  stream.removeEventListener('message', onMessage as never);
  const all = Buffer.concat(parts);
  if (all.length > n) stream.unshift(all.subarray(n));
  return all.subarray(0, n);
}

function parseChunks(bytes: Uint8Array): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (;;) {
    const length = Number(view.getBigUint64(offset));
    offset += 8;
    if (length === 0) break;
    parts.push(bytes.subarray(offset, offset + length));
    offset += length;
  }
  return JSON.parse(Buffer.concat(parts).toString('utf8'));
}

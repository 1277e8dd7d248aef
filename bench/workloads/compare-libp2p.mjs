// libp2p stream churn: two nodes in this process (TCP on 127.0.0.1, noise, yamux), one
// connection; each operation opens a stream, sends 64 bytes, reads the echo and closes, with 8
// operations in flight. Streams per second.
// The `metrics` given to both nodes comes from the configuration: a bench/configs module loaded
// with --import sets globalThis[Symbol.for('trustflow.bench.libp2pMetrics')] to a factory; without
// one the nodes get none (and the @trustflow/instrument preload may add its own, zero-code).
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { tcp } from '@libp2p/tcp';
import { createLibp2p } from 'libp2p';
import { bench, finish } from './compare-common.mjs';

const metricsFor = globalThis[Symbol.for('trustflow.bench.libp2pMetrics')] ?? (() => undefined);

async function node() {
  const metrics = metricsFor();
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false },
    ...(metrics ? { metrics } : {}),
  });
}

const server = await node();
const client = await node();

async function echo(stream) {
  for await (const chunk of stream) {
    if (!stream.send(chunk)) await stream.onDrain();
  }
  await stream.close();
}
await server.handle('/echo/1', (stream) => void echo(stream).catch(() => {}), {
  maxInboundStreams: 64,
});
const target = server.getMultiaddrs()[0];
await client.dial(target);

const small = new Uint8Array(64).fill(7);
async function oneStream() {
  const stream = await client.dialProtocol(target, '/echo/1');
  stream.send(small);
  await stream.close();
  let got = 0;
  for await (const chunk of stream) got += chunk.byteLength;
  if (got !== small.length) throw new Error(`echoed ${got} bytes`);
  return 1;
}

const result = await bench(oneStream, { concurrency: 8, unit: 'streams/s' });
await client.stop();
await server.stop();
await finish(result);

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
import { echoPair } from './libp2p-common.mjs';

const metricsFor = globalThis[Symbol.for('trustflow.bench.libp2pMetrics')] ?? (() => undefined);
const { client, server, oneStream } = await echoPair(
  { createLibp2p, tcp, noise, yamux },
  metricsFor,
);

const result = await bench(oneStream, { concurrency: 8, unit: 'streams/s' });
await client.stop();
await server.stop();
await finish(result);

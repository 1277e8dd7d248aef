// Two libp2p nodes in this process (TCP on 127.0.0.1, noise, yamux), both configured with the
// metrics given as argv[2]: none | ours | prometheus. argv[3]: `streams` (open, echo 64 bytes,
// close; streams per second with 8 concurrent loops), `bulk` (echo of 1 MiB chunks over one
// stream; MiB per second) or `both`. argv[4]: measuring time in ms per workload.
// `count` runs BENCH_WARM_STREAMS streams, then BENCH_STREAMS more, and exits: for instruction
// counts (valgrind), where time-based loops would not compare. BENCH_STACKS sets the stack mode
// of the `ours` configuration's tracker (valgrind slows the process ~50x, and the stack budget
// is per second: under it, sampled stacks are taken about ten times as often per stream).
import { report } from '../lib.mjs';
import { echoPair, installMeterProvider, load, own } from './libp2p-common.mjs';

const config = process.argv[2] ?? 'none';
const workload = process.argv[3] ?? 'both';
const ms = Number(process.argv[4] ?? 2000);

const { createLibp2p } = await load('libp2p');
const { tcp } = await load('@libp2p/tcp');
const { noise } = await load('@chainsafe/libp2p-noise');
const { yamux } = await load('@chainsafe/libp2p-yamux');

let metricsFor = () => undefined;
if (config === 'ours') {
  // as with the preload: an SDK meter provider (lifetimes through core's lifetimeProducer()),
  // the default tracker (sampled stacks, unless BENCH_STACKS says otherwise)
  await installMeterProvider({ stacks: process.env.BENCH_STACKS });
  const { libp2pMetrics } = await own('plugin-libp2p');
  metricsFor = () => libp2pMetrics();
} else if (config === 'prometheus') {
  const { prometheusMetrics } = await load('@libp2p/prometheus-metrics');
  // the second node in this process shares prom-client's global registry
  let first = true;
  metricsFor = () => {
    const init = first ? {} : { preserveExistingMetrics: true, collectDefaultMetrics: false };
    first = false;
    return prometheusMetrics(init);
  };
} else if (config !== 'none') {
  throw new Error(`unknown config ${config}`);
}

const { client, server, target, oneStream } = await echoPair(
  { createLibp2p, tcp, noise, yamux },
  metricsFor,
);

async function streamsPerSecond(duration) {
  let done = 0;
  const until = performance.now() + duration;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (performance.now() < until) {
        await oneStream();
        done++;
      }
    }),
  );
  return (done * 1000) / (performance.now() - start);
}

const chunk = new Uint8Array(1024 * 1024).fill(3);

/** Resolves once everything queued on the stream has been handed to the muxer. */
function flushed(stream) {
  if (stream.writeBufferLength === 0) return Promise.resolve();
  return new Promise((resolve) => stream.addEventListener('idle', resolve, { once: true }));
}

async function bulkMiBPerSecond(duration) {
  const stream = await client.dialProtocol(target, '/echo/1');
  let sent = 0;
  let received = 0;
  const until = performance.now() + duration;
  const start = performance.now();
  let wake = () => {};
  const reading = (async () => {
    for await (const c of stream) {
      received += c.byteLength;
      wake();
    }
  })();
  while (performance.now() < until) {
    stream.send(chunk);
    sent += chunk.length;
    // keep at most a few MiB in flight: wait for the echo to catch up
    await flushed(stream);
    while (sent - received > 4 * chunk.length) {
      await new Promise((resolve) => {
        wake = resolve;
      });
    }
  }
  await stream.close();
  await reading;
  if (received !== sent) throw new Error(`sent ${sent}, echoed ${received}`);
  return received / 1048576 / ((performance.now() - start) / 1000);
}

/** Runs `measure`, and returns the work per second of CPU time and per second of wall time. */
async function timed(measure) {
  await measure(Number(process.env.BENCH_WARMUP_MS ?? Math.min(300, ms / 2))); // warm-up
  const cpuBefore = process.cpuUsage();
  const wallStart = performance.now();
  const perWallSecond = await measure(ms);
  const wallSeconds = (performance.now() - wallStart) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const work = perWallSecond * wallSeconds;
  return {
    perCpuSecond: work / cpuSeconds,
    perWallSecond,
    cpuShare: cpuSeconds / wallSeconds,
    // for pooling over runs
    work,
    cpuSeconds,
    wallSeconds,
  };
}

/** `count`: a fixed number of streams after a fixed warm-up (8 concurrent, as above). */
async function countStreams() {
  const run = async (n) => {
    let left = n;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (left-- > 0) await oneStream();
      }),
    );
  };
  const streams = Number(process.env.BENCH_STREAMS ?? 3000);
  await run(Number(process.env.BENCH_WARM_STREAMS ?? 600));
  await run(streams);
  return streams;
}

// The machine may be shared: the main figure is work per second of this process's CPU time
// (which is what the metrics cost), wall-clock throughput is reported alongside.
const result = {};
if (workload === 'count') result.count = await countStreams();
if (workload === 'streams' || workload === 'both') result.streams = await timed(streamsPerSecond);
if (workload === 'bulk' || workload === 'both') result.bulk = await timed(bulkMiBPerSecond);
await client.stop();
await server.stop();
report({ value: result.count ?? (result.streams ?? result.bulk).perCpuSecond, ...result });

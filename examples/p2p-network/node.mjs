// One node of the example network, run as a child process of network.mjs. It reports its
// addresses to the parent, dials the peers it is given, then keeps busy until told to stop:
// gossip lookups, service requests and file transfers to random peers, each bounded by the
// node's deadlines. Every loop here is bounded in time and count.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTrustflowNode } from 'trustflow-node';

const index = Number(process.env.TF_NODE_INDEX ?? 0);
const metricsPort = Number(process.env.TF_METRICS_PORT ?? 0);
const maxOperations = Number(process.env.TF_MAX_OPERATIONS ?? 200_000);
const pauseMs = Number(process.env.TF_PAUSE_MS ?? 400);

const WORDS = ['gpu', 'cpu', 'storage', 'inference', 'training', 'render', 'archive', 'batch'];
const offers = [0, 1, 2].map((k) => {
  const a = WORDS[(index + k) % WORDS.length];
  const b = WORDS[(index * 3 + k + 1) % WORDS.length];
  return {
    id: `n${index}-o${k}`,
    name: `${a} ${b} service`,
    tags: [a, b],
    price: `${k + 1} per job`,
  };
});

const dataDir = await mkdtemp(join(tmpdir(), `tf-example-${index}-`));
const node = await createTrustflowNode({
  port: 0,
  dataDir,
  offers,
  instrument: true,
  metrics: { host: '127.0.0.1', port: metricsPort },
  deadlines: { messageMs: 20_000, fileMs: 60_000, replyMs: 20_000, idleMs: 10_000 },
  logger: (level, message, fields) => {
    if (level === 'warn' || level === 'error') {
      process.stderr.write(`[node ${index}] ${level} ${message} ${JSON.stringify(fields ?? {})}\n`);
    }
  },
});

const counts = { lookups: 0, found: 0, requests: 0, files: 0, bytes: 0, failures: 0 };
let peers = [];
let stopping = false;

process.send?.({
  type: 'ready',
  index,
  pid: process.pid,
  address: node.multiaddrs()[0],
  metricsUrl: node.metricsUrl,
});

process.on('message', async (message) => {
  if (message?.type === 'peers') {
    peers = message.peers.filter((p) => p !== node.multiaddrs()[0]);
    for (const peer of peers) await node.dial(peer).catch(() => {});
    void run();
  } else if (message?.type === 'stop') {
    await stop();
  }
});
process.once('SIGTERM', () => void stop());
// the parent went away (killed): stop rather than linger
process.once('disconnect', () => void stop());

const pick = (list) => list[Math.floor(Math.random() * list.length)];

async function operation(n) {
  const roll = Math.random();
  if (roll < 0.3) {
    counts.lookups++;
    const found = await node.lookup(pick(WORDS), { timeoutMs: 1_500 });
    counts.found += found.length;
  } else if (roll < 0.7) {
    counts.requests++;
    await node.requestService(pick(peers), { query: pick(WORDS) });
  } else {
    const size = 10_000 + Math.floor(Math.random() * 500_000);
    const file = join(dataDir, `outgoing-${n % 4}.bin`);
    await writeFile(file, randomBytes(size));
    // job ids cycle, so a receiver keeps at most 20 files from each sender
    const result = await node.sendFile(pick(peers), file, { jobId: n % 20 });
    if (!result.verified) throw new Error('checksum not confirmed');
    counts.files++;
    counts.bytes += result.bytes;
  }
}

async function run() {
  for (let n = 0; n < maxOperations && !stopping; n++) {
    try {
      await operation(n);
    } catch (error) {
      if (!stopping) {
        counts.failures++;
        process.stderr.write(`[node ${index}] operation failed: ${error.message}\n`);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, pauseMs * (0.5 + Math.random())));
  }
}

async function stop() {
  if (stopping) return;
  stopping = true;
  const result = await node.stop();
  await rm(dataDir, { recursive: true, force: true });
  if (process.connected) {
    process.send({ type: 'stopped', index, counts, stats: node.stats(), stop: result });
    process.disconnect();
  }
}

// A small service with four classic slow leaks. Every job (every `--every`, default 250 ms) it
//   - appends to an audit log and, on its early-return path, never closes the file descriptor,
//   - checks its upstream over TCP and never ends the socket,
//   - starts a heartbeat interval it never clears,
//   - asks a libp2p peer something over a new protocol stream it never closes.
// With --clean every job releases what it opened, and shutdown stops everything.
//
//   node --import @trustflow/instrument service.mjs [--clean] [--run-for 3s] [--every 250ms]
//
// After --run-for (0: until SIGINT/SIGTERM) the service shuts down: the clean one closes its
// servers and libp2p nodes and ends on its own; the leaky one ends with process.exit(), as a
// service whose event loop never empties does.
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { tcp } from '@libp2p/tcp';
import { createLibp2p } from 'libp2p';

const PROTOCOL = '/leaky-service/ask/1.0.0';

function duration(text, flag) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(text).trim());
  if (!m) {
    process.stderr.write(
      `leaky-service: ${flag} must be a duration like 250ms, 3s or 1m, got ${text}\n`,
    );
    process.exit(2);
  }
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] ?? 'ms'];
}

const { values } = parseArgs({
  options: {
    clean: { type: 'boolean', default: false },
    'run-for': { type: 'string', default: '3s' },
    every: { type: 'string', default: '250ms' },
  },
});
const clean = values.clean;
const runFor = duration(values['run-for'], '--run-for');
const every = duration(values.every, '--every');
const encoder = new TextEncoder();

const dir = mkdtempSync(join(tmpdir(), 'leaky-service-'));
const auditLog = join(dir, 'audit.log');

// The upstream the jobs check: answers "ok" to every line.
const upstream = net.createServer((socket) => {
  socket.on('data', () => socket.write('ok\n'));
  socket.on('error', () => {});
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');

// Two libp2p nodes on loopback: the service asks its peer over PROTOCOL.
const libp2pOptions = {
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
};
const peer = await createLibp2p({
  ...libp2pOptions,
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
});
await peer.handle(PROTOCOL, (stream) => {
  stream.addEventListener('message', (event) => stream.send(event.data));
  stream.addEventListener('remoteCloseWrite', () => void stream.close().catch(() => {}));
});
const service = await createLibp2p(libp2pOptions);
const connection = await service.dial(peer.getMultiaddrs()[0]);

function writeAudit(line) {
  const fd = openSync(auditLog, 'a'); // LEAK:fd
  writeSync(fd, line);
  if (!clean) return; // the early return that forgets closeSync
  closeSync(fd);
}

async function checkUpstream() {
  const socket = net.connect(upstream.address().port, '127.0.0.1'); // LEAK:socket
  socket.on('error', () => {});
  socket.write('ping\n');
  await once(socket, 'data');
  if (clean) {
    socket.end();
    await once(socket, 'close');
  }
}

async function askPeer(n) {
  const stream = await connection.newStream(PROTOCOL); // LEAK:stream
  const reply = once(stream, 'message');
  stream.send(encoder.encode(`job ${n}`));
  await reply;
  if (clean) await stream.close();
}

let jobs = 0;
async function job() {
  const n = ++jobs;
  const heartbeat = setInterval(() => {}, 60_000); // LEAK:timer
  try {
    writeAudit(`job ${n} started\n`);
    await checkUpstream();
    await askPeer(n);
  } catch (error) {
    process.stderr.write(`leaky-service: job ${n} failed: ${error.message}\n`);
  } finally {
    if (clean) clearInterval(heartbeat);
  }
}

let running = Promise.resolve();
const ticker = setInterval(() => {
  running = running.then(job);
}, every);

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  clearTimeout(deadline);
  process.removeListener('SIGINT', shutdown);
  process.removeListener('SIGTERM', shutdown);
  await running;
  process.stdout.write(`leaky-service: ${jobs} jobs done (${clean ? 'clean' : 'leaking'})\n`);
  if (!clean) {
    // The heartbeats and sockets keep the event loop busy: this service can only end this way.
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  }
  await service.stop();
  await peer.stop();
  upstream.close();
  await once(upstream, 'close');
  rmSync(dir, { recursive: true, force: true });
}

const deadline = runFor > 0 ? setTimeout(shutdown, runFor) : undefined;
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
process.stdout.write(
  `leaky-service: running (${clean ? 'clean' : 'leaking'}), a job every ${every} ms${runFor > 0 ? ` for ${runFor} ms` : ''}\n`,
);

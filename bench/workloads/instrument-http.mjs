// An HTTP keep-alive server under load. This process is the one measured (launched plain or with
// the preload); the load comes from a separate, plain node process (instrument-http-client.mjs),
// so only the server pays for instrumentation. Reports requests per second, wall and per CPU
// second of the server.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { report } from '../lib.mjs';

const quick = process.env.BENCH_QUICK === '1';
// Under the preload, measure the steady state: wait until its SDK is loaded (start-up is measured
// on its own, by instrument-startup.mjs).
await globalThis[Symbol.for('@trustflow/instrument')]?.ready;
const body = Buffer.alloc(1024, 'x');
const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 10_000;
server.listen(0, '127.0.0.1');
await once(server, 'listening');

const env = { ...process.env };
delete env.NODE_OPTIONS;
const client = spawn(
  process.execPath,
  [
    fileURLToPath(new URL('./instrument-http-client.mjs', import.meta.url)),
    String(server.address().port),
    String(quick ? 1200 : 3000),
    '16',
  ],
  { env, stdio: ['ignore', 'pipe', 'inherit'] },
);
const cpuAtStart = process.cpuUsage();
let out = '';
client.stdout.on('data', (d) => {
  out += d;
});
const [code] = await once(client, 'exit');
if (code !== 0) throw new Error(`load generator exited with ${code}`);
const cpu = process.cpuUsage(cpuAtStart);
const { count, elapsed } = JSON.parse(out.trim());
server.close();
server.closeAllConnections();
// requests per wall second, and per CPU second of this (server) process; the CPU figure includes
// the warm-up requests, counted at the measured rate
const total = count * (1 + 300 / elapsed);
report({ value: (count * 1000) / elapsed, cpu: (total * 1e6) / (cpu.user + cpu.system) });

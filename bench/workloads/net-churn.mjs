// TCP connect/close churn over loopback for the fs-net suite: a server on 127.0.0.1 that ends
// each connection, clients connecting with 8 connections in flight. env TF_PLUGIN = off | on | sdk.
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { report } from '../lib.mjs';
import { enablePlugins } from './fs-net-setup.mjs';

const quick = process.env.BENCH_QUICK === '1';
await enablePlugins(process.env.TF_PLUGIN ?? 'off', 'net');

const server = createServer((socket) => socket.end('bye'));
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const { port } = server.address();
const round = () =>
  new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', reject);
    socket.on('close', resolve);
    socket.resume();
  });

async function run(n) {
  let started = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (started < n) {
        started++;
        await round();
      }
    }),
  );
}

await run(500);
const n = quick ? 2000 : 6000;
const cpuStart = process.cpuUsage();
const start = performance.now();
await run(n);
const value = (n * 1000) / (performance.now() - start);
const cpu = process.cpuUsage(cpuStart);
server.close();
// also connections per CPU-second of this process (client and server side both run here): less
// sensitive than wall-clock throughput to other processes competing for the same cores
report({ value, cpu: (n * 1e6) / (cpu.user + cpu.system) });

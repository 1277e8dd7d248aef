// TCP connect/close churn on loopback: a server that ends every connection at once and clients
// keeping 8 connections in flight. Connections per second.
import { once } from 'node:events';
import net from 'node:net';
import { bench, finish } from './compare-common.mjs';

const server = net.createServer((socket) => socket.end('bye'));
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const { port } = server.address();

const round = () =>
  new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', reject);
    socket.on('close', () => resolve(1));
    socket.resume();
  });

const result = await bench(round, { concurrency: 8, unit: 'conn/s' });
server.close();
await finish(result);

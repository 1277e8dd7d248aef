// HTTP/1.1 keep-alive load on loopback: one server, a keep-alive agent with 8 sockets and 8
// requests in flight; each request GETs a 2 KiB body. Requests per second over a bounded count
// (about BENCH_MS worth of requests; the loop is also capped at 200 000 requests).
import { once } from 'node:events';
import http from 'node:http';
import { bench, finish } from './compare-common.mjs';

const body = Buffer.alloc(2048, 'x');
const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const { port } = server.address();
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

let sent = 0;
const request = () =>
  new Promise((resolve, reject) => {
    if (++sent > 200_000) throw new Error('request cap reached');
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => {
        bytes += chunk.length;
      });
      res.on('end', () =>
        bytes === body.length ? resolve(1) : reject(new Error(`got ${bytes} B`)),
      );
    });
    req.on('error', reject);
  });

const result = await bench(request, { concurrency: 8, unit: 'req/s' });
agent.destroy();
server.close();
await finish(result);

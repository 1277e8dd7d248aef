// Load generator for instrument-http.mjs, always plain node: HTTP/1.1 keep-alive, CONNS sockets
// with one request in flight each, for MS milliseconds after a warm-up. Prints the request count.
import http from 'node:http';

const [port, ms, conns] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
let count = 0;
let measuring = false;
const get = () =>
  new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      })
      .on('error', reject);
  });
async function lane(until) {
  while (performance.now() < until) {
    await get();
    if (measuring) count++;
  }
}
const warm = performance.now() + 300;
await Promise.all(Array.from({ length: conns }, () => lane(warm)));
measuring = true;
const start = performance.now();
await Promise.all(Array.from({ length: conns }, () => lane(start + ms)));
const elapsed = performance.now() - start;
agent.destroy();
process.stdout.write(`${JSON.stringify({ count, elapsed })}\n`);

// Per-test cost of @trustflow/leak-test's check, in process: argv[2] = empty | socket | busy,
// env LT_CHECK = on | off. Prints ms per "test" (the body alone, or the body inside expectNoLeaks).
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { report, root } from '../lib.mjs';

const { expectNoLeaks } = await import(
  pathToFileURL(join(root, 'packages', 'leak-test', 'dist', 'index.js')).href
);
const workload = process.argv[2];
const check = process.env.LT_CHECK === 'on';
const quick = process.env.BENCH_QUICK === '1';

const server = createServer((s) => s.on('error', () => {}));
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const { port } = server.address();

// busy: a process that already holds 1000 tracked resources (the check looks at what is new).
const held = [];
if (workload === 'busy') {
  await expectNoLeaks(() => {}); // installs the sources on the default tracker
  for (let i = 0; i < 1000; i++) held.push(setInterval(() => {}, 60_000));
}

const bodies = {
  empty: () => {},
  busy: () => {},
  // A test that opens a socket and destroys it without waiting for its close.
  socket: async () => {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.destroy();
  },
};
const body = bodies[workload];
const test = check ? () => expectNoLeaks(body) : body;
// The check-off run still waits a macrotask per test, as a runner does between tests.
const between = () => new Promise((resolve) => setImmediate(resolve));

for (let i = 0; i < 50; i++) {
  await test();
  await between();
}
const n = quick ? 300 : 1000;
const start = performance.now();
for (let i = 0; i < n; i++) {
  await test();
  await between();
}
const value = (performance.now() - start) / n;
for (const t of held) clearInterval(t);
server.close();
report({ value });

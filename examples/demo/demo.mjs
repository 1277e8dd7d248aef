// Interim demo (until the preload demo lands): a tracker finds a leaked interval, a server left
// listening, and an object dropped without release, each with the line that created it.
import { once } from 'node:events';
import { createServer } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createAsyncHooksSource, createResourceTracker, formatReport } from '@trustflow/core';

const tracker = createResourceTracker({ stacks: 'all' });
const source = createAsyncHooksSource({ forceWithPromiseHooks: true });
source.enable({ tracker });

function startPolling() {
  return setInterval(() => {}, 60_000); // leaked: never cleared
}
function openConnectionPool() {
  tracker.track({ pool: 'db' }, { kind: 'demo.pool' }); // leaked: dropped without release
}

startPolling();
openConnectionPool();
const server = createServer().listen(0, '127.0.0.1'); // leaked: never closed
await once(server, 'listening');

setFlagsFromString('--expose-gc');
runInNewContext('gc')();
await new Promise((resolve) => setImmediate(resolve));

process.stdout.write(formatReport(tracker.report({ includeOpen: true })));
process.exit(0);

// Starts several trustflow-node processes on loopback, connects them, lets them exchange
// lookups, service requests and files for a while, then stops them all and prints what each did.
//
//   node network.mjs [--nodes 4] [--minutes 3] [--metrics-base-port 9464]
//
// Node i serves /metrics, /report and /health on 127.0.0.1:(base + i) (prometheus.yml scrapes
// the four default ports).
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const NODE_SCRIPT = fileURLToPath(new URL('./node.mjs', import.meta.url));

/**
 * Runs the network; `onStarted` gets every node's { index, pid, address, metricsUrl }.
 * Resolves with each node's final counts and stop result.
 */
export async function runNetwork({
  nodes = 4,
  durationMs = 180_000,
  metricsBasePort = 9464,
  onStarted,
} = {}) {
  const children = [];
  const ready = [];
  for (let i = 0; i < nodes; i++) {
    const child = fork(NODE_SCRIPT, [], {
      env: {
        ...process.env,
        TF_NODE_INDEX: String(i),
        TF_METRICS_PORT: String(metricsBasePort === 0 ? 0 : metricsBasePort + i),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    ready.push(
      new Promise((resolve, reject) => {
        child.once('message', resolve);
        child.once('exit', (code) =>
          reject(new Error(`node ${i} exited with ${code} before it was ready`)),
        );
      }),
    );
  }
  const started = await Promise.all(ready);
  const addresses = started.map((s) => s.address);
  for (const child of children) child.send({ type: 'peers', peers: addresses });
  await onStarted?.(started);
  await new Promise((resolve) => setTimeout(resolve, durationMs));
  const results = await Promise.all(
    children.map(async (child) => {
      const stopped = new Promise((resolve) =>
        child.on('message', (m) => m?.type === 'stopped' && resolve(m)),
      );
      child.send({ type: 'stop' });
      const result = await stopped;
      if (child.exitCode === null) await once(child, 'exit');
      return { ...result, exitCode: child.exitCode };
    }),
  );
  return { started, results };
}

function summary({ started, results }) {
  const lines = [];
  for (const r of results) {
    const s = started[r.index];
    lines.push(
      `node ${r.index} (pid ${s.pid}): ${r.counts.lookups} lookups (${r.counts.found} offers found), ` +
        `${r.counts.requests} service requests, ${r.counts.files} files (${(r.counts.bytes / 1048576).toFixed(1)} MiB), ` +
        `${r.counts.failures} failures; streams ended early: ${JSON.stringify(r.stats.endedEarly)}; ` +
        `stopped in ${Math.round(r.stop.elapsedMs)} ms, left open: ${r.stop.leftOpen.length}, exit ${r.exitCode}`,
    );
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '4' },
      minutes: { type: 'string', default: '3' },
      'metrics-base-port': { type: 'string', default: '9464' },
    },
  });
  const nodes = Number(values.nodes);
  const minutes = Number(values.minutes);
  if (!(nodes >= 2 && nodes <= 16) || !(minutes > 0 && minutes <= 24 * 60)) {
    console.error('--nodes must be 2..16 and --minutes in (0, 1440]');
    process.exit(2);
  }
  const result = await runNetwork({
    nodes,
    durationMs: minutes * 60_000,
    metricsBasePort: Number(values['metrics-base-port']),
    onStarted: (started) => {
      for (const s of started)
        console.log(`node ${s.index}: pid ${s.pid} ${s.address} metrics ${s.metricsUrl}/metrics`);
      console.log(`running for ${minutes} min...`);
    },
  });
  console.log(summary(result));
  process.exitCode = result.results.some((r) => r.stop.leftOpen.length > 0 || r.exitCode !== 0)
    ? 1
    : 0;
}

export { summary };

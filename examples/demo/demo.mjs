// pnpm demo: runs examples/leaky-service under the @trustflow/instrument preload for a few
// seconds (with `trustflow run`, so no code change in the service), reads its Prometheus
// endpoint while it runs, then shows the leak report it leaves at exit: every leak, how many,
// and the line of code that created it.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const service = fileURLToPath(new URL('../leaky-service/service.mjs', import.meta.url));
const cli = fileURLToPath(
  new URL('./dist/cli.js', import.meta.resolve('@trustflow/instrument/package.json')),
);
const bold = (s) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});
const seconds = 4;
const metricsUrl = `http://127.0.0.1:${port}/metrics`;

process.stdout.write(
  `${bold('Trustflow demo')}: a service that leaks a file descriptor, a socket, a timer and a libp2p\n` +
    `stream on every job (every 250 ms), run for ${seconds} s under the preload, unchanged:\n\n` +
    `  $ trustflow run --port ${port} -- node examples/leaky-service/service.mjs --run-for ${seconds}s\n` +
    `    (the same as: node --import @trustflow/instrument examples/leaky-service/service.mjs)\n\n`,
);

const child = spawn(
  process.execPath,
  [cli, 'run', '--port', String(port), '--', process.execPath, service, '--run-for', `${seconds}s`],
  { stdio: ['ignore', 'pipe', 'pipe'] },
);
let report = '';
child.stderr.on('data', (d) => {
  report += d;
});
child.stdout.on('data', (d) =>
  process.stdout.write(`  | ${String(d).trimEnd().replaceAll('\n', '\n  | ')}\n`),
);

// While it runs: what Prometheus (or you) would scrape.
const scrape = setTimeout(async () => {
  try {
    const text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(2000) })).text();
    // one line per kind: the series of a kind (client and server sockets...) added up
    const active = new Map();
    for (const line of text.split('\n')) {
      const m = /^trustflow_resource_active\{.*trustflow_resource_kind="([^"]+)".*\} (\S+)$/.exec(
        line,
      );
      if (m) active.set(m[1], (active.get(m[1]) ?? 0) + Number(m[2]));
    }
    const lines = ['fs.fd', 'net.socket', 'timer', 'libp2p.stream'].map(
      (kind) =>
        `  trustflow_resource_active{trustflow_resource_kind="${kind}"}  ${active.get(kind) ?? 0}`,
    );
    process.stdout.write(
      `\n${bold(`While it runs, its metrics are at ${metricsUrl}`)} (Prometheus text; the JSON\n` +
        `leak report is at http://127.0.0.1:${port}/trustflow/report). Open resources so far:\n` +
        `${lines.join('\n')}\n\n`,
    );
  } catch (error) {
    process.stdout.write(`\n(could not read ${metricsUrl}: ${error.message})\n\n`);
  }
}, seconds * 600);

const [code] = await new Promise((resolve) => child.on('exit', (...args) => resolve(args)));
clearTimeout(scrape);
process.stdout.write(
  `${bold('The leak report at exit')} (what was still open, grouped by the line that created it;\n` +
    'the four leaks come first, one per job each):\n\n' +
    `${report.replace(/^/gm, '  ')}\n` +
    `Each "at" line is the site: the first frame of your code in the creation stack.\n` +
    `Run it clean (every job releases what it opened; the report is empty):\n` +
    `  node examples/leaky-service/service.mjs --clean, under trustflow run or the preload\n` +
    `Next: docs/getting-started.md, docs/leak-hunting.md\n`,
);
process.exitCode = code ?? 1;

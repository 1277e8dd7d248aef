// Soak run: the example network for a chosen time, `trustflow monitor` sampling one node into
// CSV, then `trustflow analyze` on the CSV (text and a self-contained HTML report).
//
//   pnpm soak -- --minutes 10 [--nodes 4] [--interval 5s] [--out soak-results]
//
// Not part of CI. Everything runs on 127.0.0.1 and stops by itself after --minutes.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  analyzeCsv,
  formatAnalysis,
  renderHtml,
} from '../../packages/instrument/dist/cli/analyze.js';
import { parseDuration, runMonitor } from '../../packages/instrument/dist/cli/monitor.js';
import { runNetwork, summary } from './network.mjs';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    nodes: { type: 'string', default: '4' },
    interval: { type: 'string', default: '5s' },
    out: { type: 'string', default: 'soak-results' },
  },
});
const minutes = Number(values.minutes);
const nodes = Number(values.nodes);
if (!(minutes > 0 && minutes <= 24 * 60) || !(nodes >= 2 && nodes <= 16)) {
  console.error('--minutes must be in (0, 1440] and --nodes in 2..16');
  process.exit(2);
}
const intervalMs = parseDuration(values.interval, '--interval');
const durationMs = minutes * 60_000;
const out = resolve(values.out);
await mkdir(out, { recursive: true });
const csv = join(out, 'monitor.csv');

let monitoring;
const started = Date.now();
const result = await runNetwork({
  nodes,
  durationMs,
  metricsBasePort: 0,
  onStarted: (nodesStarted) => {
    const target = nodesStarted[0];
    console.log(
      `soak: ${nodes} nodes for ${minutes} min; monitoring node 0 (pid ${target.pid}) every ${values.interval} into ${csv}`,
    );
    const count = Math.max(1, Math.floor(durationMs / intervalMs) - 1);
    monitoring = runMonitor([
      String(target.pid),
      '--interval',
      values.interval,
      '--count',
      String(count),
      '--out',
      csv,
      '--metrics-url',
      `${target.metricsUrl}/metrics`,
    ]);
  },
});
const monitorCode = await monitoring;
console.log(summary(result));
console.log(
  `soak: ran ${((Date.now() - started) / 60_000).toFixed(1)} min; monitor exit ${monitorCode}`,
);

const analysis = analyzeCsv([{ name: csv, text: await readFile(csv, 'utf8') }]);
const text = formatAnalysis(analysis);
await writeFile(join(out, 'analysis.txt'), text);
await writeFile(
  join(out, 'report.html'),
  renderHtml(analysis, `Soak: ${nodes} nodes, ${minutes} min`),
);
await writeFile(join(out, 'summary.txt'), `${summary(result)}\n`);
console.log(text);
console.log(
  `soak: wrote ${join(out, 'analysis.txt')}, ${join(out, 'report.html')}, ${join(out, 'summary.txt')}`,
);
process.exitCode = result.results.some((r) => r.stop.leftOpen.length > 0 || r.exitCode !== 0)
  ? 1
  : 0;

import { join } from 'node:path';
import { median, root, runChild } from '../lib.mjs';

export const title = 'libp2p streams between two real nodes: our metrics vs none vs prometheus';

const script = join(root, 'bench', 'workloads', 'libp2p-streams.mjs');
const LABEL = {
  none: 'no metrics',
  ours: 'libp2pMetrics()',
  prometheus: '@libp2p/prometheus-metrics',
};
const CASES = [
  ['streams', 'stream open + 64 B echo + close, 8 concurrent', 'streams'],
  ['bulk', 'bulk echo on one stream (1 MiB chunks)', 'MiB'],
];

export async function run({ quick }) {
  const reps = quick ? 3 : 7;
  const ms = quick ? '700' : '2500';
  const samples = { none: [], ours: [], prometheus: [] };
  const rss = { none: 0, ours: 0, prometheus: 0 };
  // one process per run, interleaved: none ours prometheus none ours prometheus ...
  for (let i = 0; i < reps; i++) {
    for (const config of Object.keys(samples)) {
      const result = await runChild(script, { args: [config, 'both', ms] });
      samples[config].push(result);
      rss[config] = Math.max(rss[config], result.peakRssBytes ?? 0);
    }
  }
  const rows = [];
  for (const [key, label, unit] of CASES) {
    const cpu = {};
    for (const config of Object.keys(samples)) {
      cpu[config] = median(samples[config].map((r) => r[key].perCpuSecond));
    }
    for (const config of Object.keys(samples)) {
      rows.push({
        case: `${label}, per CPU-second`,
        config: LABEL[config],
        value: cpu[config],
        unit: `${unit}/CPU-s`,
        better: 'higher',
        baseline: config === 'none',
        target:
          config === 'ours'
            ? `>= 0.95x; ${(cpu.ours / cpu.prometheus).toFixed(3)}x prometheus (>= 1x)`
            : '',
        peakRssBytes: rss[config],
      });
    }
    for (const config of Object.keys(samples)) {
      rows.push({
        case: `${label}, wall clock`,
        config: LABEL[config],
        value: median(samples[config].map((r) => r[key].perWallSecond)),
        unit: `${unit}/s`,
        better: 'higher',
        baseline: config === 'none',
      });
    }
  }
  return rows;
}

import { join } from 'node:path';
import { median, root, runChild } from '../lib.mjs';

export const title =
  'trustflow-node: request/response and file transfer, with and without the plugins';

const script = join(root, 'bench', 'workloads', 'trustflow-node-exchange.mjs');
const LABEL = {
  plain: 'node (tracker, libp2p metrics, pool)',
  plugins: 'node + handles source, fs, net plugins',
};
const CASES = [
  ['requests', 'service request + response stream', 'requests'],
  ['files', 'file transfer (4 MiB, checksum receipt)', 'MiB'],
];

export async function run({ quick }) {
  const reps = quick ? 3 : 7;
  const ms = quick ? '600' : '4000';
  const samples = { plain: [], plugins: [] };
  const rss = { plain: 0, plugins: 0 };
  // one process per run, interleaved: plain plugins plain plugins ...
  for (let i = 0; i < reps; i++) {
    for (const config of Object.keys(samples)) {
      const result = await runChild(script, { args: [config, ms] });
      samples[config].push(result);
      rss[config] = Math.max(rss[config], result.peakRssBytes ?? 0);
    }
  }
  const rows = [];
  for (const [key, label, unit] of CASES) {
    for (const measure of ['perCpuSecond', 'perWallSecond']) {
      for (const config of Object.keys(samples)) {
        rows.push({
          case: `${label}, ${measure === 'perCpuSecond' ? 'per CPU-second' : 'wall clock'}`,
          config: LABEL[config],
          value: median(samples[config].map((r) => r[key][measure])),
          unit: measure === 'perCpuSecond' ? `${unit}/CPU-s` : `${unit}/s`,
          better: 'higher',
          baseline: config === 'plain',
          ...(measure === 'perCpuSecond' && config === 'plugins' ? { target: '>= 0.9x' } : {}),
          peakRssBytes: rss[config],
        });
      }
    }
  }
  return rows;
}

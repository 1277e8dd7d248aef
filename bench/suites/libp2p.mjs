import { join } from 'node:path';
import { median, root, runChild } from '../lib.mjs';

export const title = 'libp2p streams between two real nodes: our metrics vs none vs prometheus';

const script = join(root, 'bench', 'workloads', 'libp2p-streams.mjs');
const CONFIGS = ['none', 'ours', 'prometheus'];
const LABEL = {
  none: 'no metrics',
  ours: 'libp2pMetrics()',
  prometheus: '@libp2p/prometheus-metrics',
};
const CASES = [
  ['streams', 'stream open + 64 B echo + close, 8 concurrent', 'streams'],
  ['bulk', 'bulk echo on one stream (1 MiB chunks)', 'MiB'],
];

const x = (v) => `${v.toFixed(3)}x`;

export async function run({ quick }) {
  const reps = quick ? 3 : 9;
  const ms = quick ? '400' : '2500';
  // One process per run. Each round runs the three configurations back to back, in a rotating
  // order; ratios are taken within a round (runs close in time see the same machine load) and
  // their median is reported next to the medians of the raw figures.
  const rounds = [];
  const rss = { none: 0, ours: 0, prometheus: 0 };
  for (let i = 0; i < reps; i++) {
    const round = {};
    for (let k = 0; k < CONFIGS.length; k++) {
      const config = CONFIGS[(i + k) % CONFIGS.length];
      round[config] = await runChild(script, { args: [config, 'both', ms] });
      rss[config] = Math.max(rss[config], round[config].peakRssBytes ?? 0);
    }
    rounds.push(round);
  }
  const rows = [];
  for (const [key, label, unit] of CASES) {
    for (const [measure, suffix, perUnit] of [
      ['perCpuSecond', 'per CPU-second', `${unit}/CPU-s`],
      ['perWallSecond', 'wall clock', `${unit}/s`],
    ]) {
      const paired = (a, b) => median(rounds.map((r) => r[a][key][measure] / r[b][key][measure]));
      for (const config of CONFIGS) {
        rows.push({
          case: `${label}, ${suffix}`,
          config: LABEL[config],
          value: median(rounds.map((r) => r[config][key][measure])),
          unit: perUnit,
          better: 'higher',
          baseline: config === 'none',
          target:
            config === 'ours'
              ? `>= 0.95x none, >= 1x prometheus; paired: ${x(paired('ours', 'none'))} none, ${x(paired('ours', 'prometheus'))} prometheus`
              : config === 'prometheus'
                ? `paired: ${x(paired('prometheus', 'none'))} none`
                : '',
          peakRssBytes: rss[config],
        });
      }
    }
  }
  return rows;
}

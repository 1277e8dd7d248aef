import { join } from 'node:path';
import { describeRatios, repetitions, root, runChild } from '../lib.mjs';

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
  // Stream churn on this machine varies by 10-15% from one half-second to the next and by 5-8%
  // between processes of the same configuration, while the metrics cost a few percent: many runs,
  // each past the optimizing compiler's warm-up (the first second is slower, more so with more
  // code on the path), pooled.
  const reps = repetitions(quick, 3, 13);
  const ms = quick ? '400' : '3000';
  const env = { BENCH_WARMUP_MS: quick ? '300' : '1500' };
  // One process per run. Each round runs the three configurations back to back, in a rotating
  // order (runs close in time see the same machine load).
  const rounds = [];
  const rss = { none: 0, ours: 0, prometheus: 0 };
  for (let i = 0; i < reps; i++) {
    const round = {};
    for (let k = 0; k < CONFIGS.length; k++) {
      const config = CONFIGS[(i + k) % CONFIGS.length];
      round[config] = await runChild(script, { args: [config, 'both', ms], env });
      rss[config] = Math.max(rss[config], round[config].peakRssBytes ?? 0);
    }
    rounds.push(round);
  }
  const rows = [];
  for (const [key, label, unit] of CASES) {
    for (const [time, suffix, perUnit] of [
      ['cpuSeconds', 'per CPU-second', `${unit}/CPU-s`],
      ['wallSeconds', 'wall clock', `${unit}/s`],
    ]) {
      // the work of every run over their time (each run weighs by its length), and the ratios
      // within a round with their confidence interval
      const pooled = (config) => {
        const sum = (field) => rounds.reduce((t, r) => t + r[config][key][field], 0);
        return sum('work') / sum(time);
      };
      const rate = (r, config) => r[config][key].work / r[config][key][time];
      const paired = (a, b) => describeRatios(rounds.map((r) => rate(r, a) / rate(r, b)));
      for (const config of CONFIGS) {
        rows.push({
          case: `${label}, ${suffix}, ${reps} runs pooled`,
          config: LABEL[config],
          value: pooled(config),
          unit: perUnit,
          better: 'higher',
          baseline: config === 'none',
          target:
            config === 'ours'
              ? `>= 0.95x none, >= 1x prometheus (${x(pooled('ours') / pooled('prometheus'))}); against none ${paired('ours', 'none')}; against prometheus ${paired('ours', 'prometheus')}`
              : config === 'prometheus'
                ? `against none ${paired('prometheus', 'none')}`
                : '',
          peakRssBytes: rss[config],
        });
      }
    }
  }
  return rows;
}

// fs open/close churn and TCP connect/close churn with @trustflow/plugin-fs and
// @trustflow/plugin-net on (a default tracker: sampled stacks, the no-op OTel API) against the
// same workload with no plugin, in the same run, interleaved, each run in its own process.
//
// Each workload reports two figures: operations per wall-clock second, and operations per
// CPU-second of its process. On a machine shared with other work the second is the steadier
// measure of what the plugin costs; both are shown, with the target on both.
//
// Full runs add "plugin on + metrics SDK": an in-memory OTel metrics SDK instead of the no-op
// API (what a production process also pays for the lifetime histogram), for information.
import { join } from 'node:path';
import { median, root, runChild } from '../lib.mjs';

export const title = 'fs and net plugins: open/close and connect/close churn';

const w = (name) => join(root, 'bench', 'workloads', name);

const CASES = [
  {
    label: 'fs openSync/closeSync churn',
    script: 'fs-churn.mjs',
    args: ['sync'],
    target: '>= 0.85x',
  },
  {
    label: 'fs.promises open/close churn',
    script: 'fs-churn.mjs',
    args: ['promises'],
    target: '>= 0.85x',
  },
  {
    label: 'TCP connect/close churn (loopback)',
    script: 'net-churn.mjs',
    args: [],
    target: '>= 0.90x',
  },
];

const NAMES = { off: 'baseline (no plugin)', on: 'plugin on', sdk: 'plugin on + metrics SDK' };

export async function run({ quick }) {
  const reps = quick ? 3 : 7;
  const configs = quick ? ['off', 'on'] : ['off', 'on', 'sdk'];
  const rows = [];
  for (const c of CASES) {
    const samples = new Map(configs.map((k) => [k, { wall: [], cpu: [], rss: 0 }]));
    for (let i = 0; i < reps; i++) {
      for (const config of configs) {
        const result = await runChild(w(c.script), {
          args: c.args,
          env: { BENCH_QUICK: quick ? '1' : '0', TF_PLUGIN: config },
        });
        const s = samples.get(config);
        s.wall.push(result.value);
        s.cpu.push(result.cpu);
        s.rss = Math.max(s.rss, result.peakRssBytes ?? 0);
      }
    }
    for (const [measure, suffix, unit] of [
      ['wall', '', 'ops/s'],
      ['cpu', ', per CPU-second', 'ops/CPU-s'],
    ]) {
      for (const config of configs) {
        const s = samples.get(config);
        rows.push({
          case: `${c.label}${suffix}`,
          config: NAMES[config],
          value: median(s[measure]),
          unit,
          better: 'higher',
          baseline: config === 'off',
          peakRssBytes: s.rss,
          target: config === 'on' ? c.target : '',
        });
      }
    }
  }
  return rows;
}
